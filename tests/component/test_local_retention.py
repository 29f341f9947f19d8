"""The local backend keeps job output as long as the deployment's job log group does
(LOG_RETENTION_DAYS, 30 days unless said): older events are forgotten, and what is kept reads
as before, tokens included."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from infra.local.runtime import DEFAULT_RETENTION_DAYS, expire_output, retention_days
from infra.local.sqlite.db import Database
from infra.local.sqlite.logs import LocalLogReader, LocalLogStore

DAY_MS = 86_400_000


def lines(reader: LocalLogReader, stream: str, token: str | None = None) -> list[str]:
    return reader.read(stream, token).lines


def test_events_older_than_the_retention_are_forgotten_oldest_first(tmp_path: Path) -> None:
    store = LocalLogStore(Database(str(tmp_path / "local.db")))
    now = 40 * DAY_MS
    store.put("old/stdout", [(now - 31 * DAY_MS + i, f"old-{i}") for i in range(6)])
    store.put("new/stdout", [(now - DAY_MS + i, f"recent-{i}") for i in range(3)])
    store.put("old/stderr", [(now - 35 * DAY_MS, "older still")])  # written later, with an older time
    reader = LocalLogReader(store)
    before = reader.read("new/stdout", None)

    assert store.expire(now - 30 * DAY_MS, batch=3) == 6  # two batches of old-*, then one of kept events
    assert lines(reader, "old/stdout") == [] and lines(reader, "new/stdout") == [f"recent-{i}" for i in range(3)]
    assert lines(reader, "old/stderr") == ["older still"]  # behind kept events: waits for them to go
    assert reader.read("new/stdout", before.next_token).lines == []  # a token of before still reads on
    store.put("new/stdout", [(now, "later")])
    assert reader.read("new/stdout", before.next_token).lines == ["later"]
    assert store.last_seq() == 11  # numbers are never reused

    assert store.expire(now + DAY_MS) == 5 and lines(reader, "new/stdout") == []


def test_expiring_nothing_or_keeping_for_ever_removes_nothing(tmp_path: Path) -> None:
    store = LocalLogStore(Database(str(tmp_path / "local.db")))
    assert store.expire(10**15) == 0
    store.put("s/stdout", [(1, "from 1970")])
    assert expire_output(store, None) == 0 and lines(LocalLogReader(store), "s/stdout") == ["from 1970"]
    assert expire_output(store, 30.0) == 1


@pytest.mark.parametrize(("raw", "days"), [("", DEFAULT_RETENTION_DAYS), ("7", 7.0), ("0.5", 0.5), ("0", None)])
def test_the_retention_is_read_in_days_and_zero_keeps_for_ever(monkeypatch: pytest.MonkeyPatch, raw: str,
                                                               days: float | None) -> None:
    monkeypatch.setenv("LOG_RETENTION_DAYS", raw)
    assert retention_days() == days


@pytest.mark.parametrize("raw", ["-1", "thirty", "nan", "inf"])
def test_a_retention_that_is_not_a_number_of_days_is_refused_by_name(monkeypatch: pytest.MonkeyPatch,
                                                                     raw: str) -> None:
    monkeypatch.setenv("LOG_RETENTION_DAYS", raw)
    with pytest.raises(ValueError, match="LOG_RETENTION_DAYS must be a number of days"):
        retention_days()
    assert os.environ["LOG_RETENTION_DAYS"] == raw
