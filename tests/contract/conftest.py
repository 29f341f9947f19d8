"""Every contract test runs once per backend: `local` (the SQLite adapters on a fresh file) and
`aws` (the DynamoDB adapters of chalicelib.wiring.build_aws_backend on moto, in process)."""
from __future__ import annotations

import functools
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.contract.support import FakeClock, Ports


def _local(tmp_path: Path, clock: FakeClock) -> Iterator[Ports]:
    from infra.local.sqlite.db import Database
    from infra.local.sqlite.stores import Stores, open_stores

    def ports(stores: Stores) -> Ports:
        return Ports(name="local", jobs=stores.jobs, executions=stores.executions, pools=stores.pools,
                     schedules=stores.schedules, statistics=stores.statistics, deliveries=stores.deliveries,
                     connections=stores.connections, idempotency_keys=stores.idempotency_keys, clock=clock,
                     unreachable=unreachable)

    def unreachable() -> Ports:
        # A database whose folder went away after it was opened: no connection can be made again.
        folder = tmp_path / "unreachable"
        folder.mkdir(exist_ok=True)
        broken = Database(str(folder / "fastlane.db"))
        stores = open_stores(broken, clock)
        broken.close()
        shutil.rmtree(folder)
        return ports(stores)

    db = Database(str(tmp_path / "fastlane.db"))
    try:
        yield ports(open_stores(db, clock))
    finally:
        db.close()


def _serialise_moto(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto's in-process backends are not thread-safe (its DynamoDB transactions iterate dicts that
    other threads change). One request at a time keeps the adapters' own races, which happen
    between requests, while moto answers each request whole."""
    from moto.core.botocore_stubber import BotocoreStubber

    lock = threading.RLock()
    answer = BotocoreStubber.process_request

    def one_at_a_time(self: Any, request: Any) -> Any:
        with lock:
            return answer(self, request)

    monkeypatch.setattr(BotocoreStubber, "process_request", one_at_a_time)


REGION = "us-east-1"


@functools.cache
def _aws_built(absent: bool) -> tuple[Any, Any, Any]:
    """The aws backend's settings, ports and a DynamoDB client, built once per process: building
    them costs about a second of botocore clients and models, while the tables they are bound to
    are made again, empty, in each test's own moto account. `absent` names tables never made."""
    import boto3

    from chalicelib.config import Settings
    from chalicelib.wiring import build_aws_backend

    prefix = "absent" if absent else "contract"
    settings = Settings(region=REGION, tasks_table=f"{prefix}-tasks", jobs_table=f"{prefix}-jobs",
                        executions_table=f"{prefix}-executions", jobs_queue_url="",
                        deliveries_table=f"{prefix}-deliveries", connections_table=f"{prefix}-connections",
                        idempotency_table=f"{prefix}-idempotency")
    return settings, build_aws_backend(settings), boto3.client("dynamodb", region_name=REGION)


def _aws(monkeypatch: pytest.MonkeyPatch, clock: FakeClock) -> Iterator[Ports]:
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in (("AWS_DEFAULT_REGION", REGION), ("AWS_REGION", REGION), ("AWS_ACCESS_KEY_ID", "testing"),
                        ("AWS_SECRET_ACCESS_KEY", "testing")):
        monkeypatch.setenv(name, value)
    _serialise_moto(monkeypatch)
    from moto import mock_aws

    from chalicelib.adapters.deliveries import DeliveryLog, create_deliveries_table
    from chalicelib.adapters.idempotency import create_idempotency_table
    from tests.powertools_clock import follow_clock

    def ports(absent: bool) -> Ports:
        settings, backend, dynamodb = _aws_built(absent)
        # The backend's delivery log, measuring leases on the test's clock.
        deliveries = DeliveryLog(dynamodb, settings.deliveries_table, clock=clock)
        return Ports(name="aws", jobs=backend.jobs, executions=backend.executions, pools=backend.pools,
                     schedules=backend.schedules, statistics=backend.statistics, deliveries=deliveries,
                     connections=backend.connections, idempotency_keys=backend.idempotency_keys, clock=clock,
                     unreachable=lambda: ports(True))

    follow_clock(monkeypatch, clock)  # the idempotency keys' leases and expiry, read by powertools
    with mock_aws():
        settings, backend, dynamodb = _aws_built(False)
        backend.extras["tables"].create()  # as infra/local/provision.py does
        backend.connections.create_table()
        create_deliveries_table(dynamodb, settings.deliveries_table)
        create_idempotency_table(dynamodb, settings.idempotency_table)
        yield ports(False)


@pytest.fixture(params=["local", "aws"])
def backend(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Ports]:
    clock = FakeClock(time.time())
    if request.param == "local":
        yield from _local(tmp_path, clock)
    else:
        yield from _aws(monkeypatch, clock)
