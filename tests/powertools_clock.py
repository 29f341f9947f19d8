"""The aws backend's idempotency keys are kept by the powertools idempotency utility, which reads
the wall clock in its own modules (`datetime.now()` for expiry, in-progress leases and its
conditional put). A test that moves a fake clock moves the utility's time with it, so expiry is
tested by moving time, never by waiting."""
from __future__ import annotations

import datetime
import importlib
import types
from collections.abc import Callable

import pytest

# Every module of the utility that asks for the time, each through its `dt` (import datetime as dt).
MODULES = (
    "aws_lambda_powertools.utilities.idempotency.base",
    "aws_lambda_powertools.utilities.idempotency.persistence.base",
    "aws_lambda_powertools.utilities.idempotency.persistence.datarecord",
    "aws_lambda_powertools.utilities.idempotency.persistence.dynamodb",
)


def follow_clock(monkeypatch: pytest.MonkeyPatch, clock: Callable[[], float]) -> None:
    """Until the test ends, the utility's `datetime.now()` is `clock()`."""

    class Now(datetime.datetime):
        @classmethod
        def now(cls, tz: datetime.tzinfo | None = None) -> datetime.datetime:  # type: ignore[override]
            return datetime.datetime.fromtimestamp(clock(), tz)

    shim = types.SimpleNamespace(**{name: getattr(datetime, name) for name in dir(datetime) if not name.startswith("_")})
    shim.datetime = Now
    for name in MODULES:
        module = importlib.import_module(name)
        assert module.dt is datetime, f"{name} no longer reads the time through `dt`: update {__name__}"
        monkeypatch.setattr(module, "dt", shim)
