"""The log ports (LogReader for output pages, LogEvents for live logs) and the log subscription
that feeds the logs function, pinned once and run against both backends: the local log streams
on a temporary SQLite file, and CloudWatch Logs on moto in process. Writing is not a port (the
runner, or the log router in AWS, writes): each backend has a small probe here that writes as
those do."""
from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any, Protocol

import pytest

from chalicelib.domain.live import Position
from chalicelib.live_handlers import subscription_payload

GROUP = "/contract/jobs"


class Probe(Protocol):
    name: str
    reader: Any  # LogReader
    events: Any  # LogEvents

    def write(self, stream: str, events: list[tuple[int, str]]) -> None: ...

    def subscription(self, handler: Any) -> Any:
        """A started log subscription that hands new events to `handler`; stopped with .stop()."""
        ...


class LocalProbe:
    name = "local"

    def __init__(self, path: str) -> None:
        from infra.local.sqlite.db import Database
        from infra.local.sqlite.logs import LocalLogEvents, LocalLogReader, LocalLogStore

        self.db = Database(path)
        self.store = LocalLogStore(self.db)
        self.reader = LocalLogReader(self.store)
        self.events = LocalLogEvents(self.store)

    def write(self, stream: str, events: list[tuple[int, str]]) -> None:
        self.store.put(stream, events)

    def subscription(self, handler: Any) -> Any:
        from infra.local.log_subscription import LogSubscription, StoreFollower

        subscription = LogSubscription(StoreFollower(self.store), GROUP, handler)
        subscription.start()
        return subscription


class CloudWatchProbe:
    name = "aws"

    def __init__(self) -> None:
        import boto3

        from chalicelib.adapters.log_events import CloudWatchLogEvents
        from chalicelib.adapters.logs import CloudWatchLogReader

        self.logs = boto3.client("logs", region_name="us-east-1")
        self.logs.create_log_group(logGroupName=GROUP)
        self.streams: set[str] = set()
        self.reader = CloudWatchLogReader(self.logs, GROUP)
        self.events = CloudWatchLogEvents(self.logs, GROUP)

    def write(self, stream: str, events: list[tuple[int, str]]) -> None:
        if stream not in self.streams:
            self.logs.create_log_stream(logGroupName=GROUP, logStreamName=stream)
            self.streams.add(stream)
        for start in range(0, len(events), 1000):  # CloudWatch's batch limits, as the log router keeps them
            self.logs.put_log_events(logGroupName=GROUP, logStreamName=stream, logEvents=[
                {"timestamp": timestamp, "message": message} for timestamp, message in events[start:start + 1000]])

    def subscription(self, handler: Any) -> Any:
        from infra.local.log_subscription import FilterLogEventsPoller, LogSubscription

        poller = LogSubscription(FilterLogEventsPoller(self.logs, GROUP, interval=0.05), GROUP, handler)
        poller.start()
        return poller


@pytest.fixture(params=["local", "aws"])
def probe(request: pytest.FixtureRequest, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Probe]:
    if request.param == "local":
        local = LocalProbe(str(tmp_path / "state.db"))
        try:
            yield local
        finally:
            local.db.close()
        return
    from moto import mock_aws

    for name, value in (("AWS_DEFAULT_REGION", "us-east-1"), ("AWS_ACCESS_KEY_ID", "testing"),
                        ("AWS_SECRET_ACCESS_KEY", "testing")):
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("LOG_GROUP", GROUP)  # the deployment's job log group: the IAM check resolves grants on it
    with mock_aws():
        yield CloudWatchProbe()


def now_ms() -> int:
    return int(time.time() * 1000)


def task_id() -> str:
    return uuid.uuid4().hex


def read_all(probe: Probe, stream: str, token: str | None = None) -> tuple[list[list[str]], str | None]:
    """Every page from `token` until the end, and the token to go on from."""
    pages = []
    for _ in range(100):
        chunk = probe.reader.read(stream, token)
        pages.append(chunk.lines)
        token = chunk.next_token
        if chunk.at_end:
            return pages, token
    raise AssertionError("the end of the stream was never reached")


def test_a_stream_is_read_oldest_first_to_its_end(probe: Probe) -> None:
    stream = f"{task_id()}/stdout"
    at = now_ms()
    probe.write(stream, [(at + i, f"line {i}") for i in range(5)])
    pages, _ = read_all(probe, stream)
    assert [line for page in pages for line in page] == [f"line {i}" for i in range(5)]


def test_a_stream_never_written_is_empty_and_at_its_end(probe: Probe) -> None:
    chunk = probe.reader.read(f"{task_id()}/stderr", None)
    assert chunk.lines == [] and chunk.at_end


def test_reading_on_from_the_last_token_gives_only_what_was_written_since(probe: Probe) -> None:
    stream = f"{task_id()}/stdout"
    probe.write(stream, [(now_ms(), "first")])
    _, token = read_all(probe, stream)
    probe.write(stream, [(now_ms() + 1, "second"), (now_ms() + 2, "third")])
    pages, _ = read_all(probe, stream, token)
    assert [line for page in pages for line in page] == ["second", "third"]


def write_large(probe: Probe, stream: str) -> None:
    line = "x" * 10_000
    at = now_ms()
    probe.write(stream, [(at, f"{i:05d}{line}") for i in range(300)])  # 3 MB


def test_a_large_stream_is_read_with_nothing_lost(probe: Probe) -> None:
    stream = f"{task_id()}/stdout"
    write_large(probe, stream)
    pages, _ = read_all(probe, stream)
    assert [text[:5] for page in pages for text in page] == [f"{i:05d}" for i in range(300)]


def read_all_back(probe: Probe, stream: str) -> list[list[str]]:
    """Every page read back from the stream's end to its start, newest page first."""
    pages, token = [], None
    for _ in range(100):
        chunk = probe.reader.read_back(stream, token)
        pages.append(chunk.lines)
        token = chunk.next_token
        if chunk.at_end:
            return pages
    raise AssertionError("the start of the stream was never reached")


def test_a_stream_read_back_gives_its_newest_lines_first_each_page_oldest_first(probe: Probe) -> None:
    stream = f"{task_id()}/stdout"
    at = now_ms()
    probe.write(stream, [(at + i, f"line {i}") for i in range(5)])
    first = probe.reader.read_back(stream, None)
    assert first.lines == [f"line {i}" for i in range(5)]  # all of it fits one page
    pages = read_all_back(probe, stream)
    assert [line for page in reversed(pages) for line in page] == [f"line {i}" for i in range(5)]


def test_a_stream_never_written_read_back_is_empty_and_at_its_start(probe: Probe) -> None:
    chunk = probe.reader.read_back(f"{task_id()}/stderr", None)
    assert chunk.lines == [] and chunk.at_end


def test_a_large_stream_read_back_loses_nothing_and_starts_with_its_end(probe: Probe) -> None:
    stream = f"{task_id()}/stdout"
    write_large(probe, stream)
    newest = probe.reader.read_back(stream, None).lines
    assert newest and newest[-1][:5] == "00299"
    pages = read_all_back(probe, stream)
    assert [text[:5] for page in reversed(pages) for text in page] == [f"{i:05d}" for i in range(300)]


def test_a_large_local_stream_comes_in_pages_of_at_most_a_megabyte(tmp_path: Any) -> None:
    """As GetLogEvents answers (moto answers everything at once, so this is the local one only)."""
    local = LocalProbe(str(tmp_path / "state.db"))
    try:
        stream = f"{task_id()}/stdout"
        write_large(local, stream)
        pages, _ = read_all(local, stream)
        back = read_all_back(local, stream)
    finally:
        local.db.close()
    for read in (pages, back):
        assert len([p for p in read if p]) >= 3
        assert all(sum(len(text) + 26 for text in page) <= 1024 * 1024 for page in read)


def test_events_of_both_streams_come_interleaved_by_time_with_ordered_ids(probe: Probe) -> None:
    ecs_task = task_id()
    at = now_ms()
    probe.write(f"{ecs_task}/stdout", [(at, "out 1"), (at + 2, "out 2"), (at + 2, "out 3")])
    probe.write(f"{ecs_task}/stderr", [(at + 1, "err 1"), (at + 3, "err 2")])
    events = [event for page in probe.events.read(ecs_task) for event in page]
    assert [(e.stream, e.message) for e in events] == [("stdout", "out 1"), ("stderr", "err 1"), ("stdout", "out 2"),
                                                        ("stdout", "out 3"), ("stderr", "err 2")]
    out = [e.position for e in events if e.stream == "stdout"]
    assert [p.key for p in out] == sorted(p.key for p in out) and len({p.event_id for p in out}) == 3
    assert all(Position.parse(str(p)) == p for p in out)  # ids fit the positions clients give back


def test_events_are_read_from_a_start_time_and_for_one_stream(probe: Probe) -> None:
    ecs_task = task_id()
    at = now_ms()
    probe.write(f"{ecs_task}/stdout", [(at, "old"), (at + 10, "new")])
    probe.write(f"{ecs_task}/stderr", [(at + 20, "err")])
    assert [e.message for p in probe.events.read(ecs_task, start_ms=at + 10) for e in p] == ["new", "err"]
    assert [e.message for p in probe.events.read(ecs_task, ("stderr",)) for e in p] == ["err"]
    assert list(probe.events.read(task_id())) == []


def test_many_events_come_in_several_pages_in_order(probe: Probe) -> None:
    ecs_task = task_id()
    at = now_ms()
    probe.write(f"{ecs_task}/stdout", [(at + i, f"{i}") for i in range(2500)])
    pages = list(probe.events.read(ecs_task))
    assert [int(e.message) for page in pages for e in page] == list(range(2500))


def test_the_subscription_delivers_new_events_once_in_the_shape_cloudwatch_sends(probe: Probe) -> None:
    ecs_task = task_id()
    # The local subscription starts from what is written after it; CloudWatch's poller stand-in
    # from a window back in time.
    probe.write(f"{ecs_task}/stdout", [(now_ms(), "written before the subscription")])
    delivered: list[dict[str, Any]] = []
    arrived = threading.Event()
    marker = ["line 3"]

    def handler(event: dict[str, Any], context: Any) -> None:
        data = subscription_payload(event)
        delivered.append(data)
        if any(e["message"] == marker[0] for e in data["logEvents"]):
            arrived.set()

    subscription = probe.subscription(handler)
    try:
        at = now_ms()
        probe.write(f"{ecs_task}/stdout", [(at, "line 1"), (at + 1, "line 2")])
        probe.write(f"{ecs_task}/stderr", [(at + 2, "line 3")])
        assert arrived.wait(5), f"{probe.name}: nothing delivered"
        # Once a later line arrived too, the subscription has looked again: nothing came twice.
        arrived.clear()
        marker[0] = "later"
        probe.write(f"{task_id()}/stdout", [(now_ms() + 5, "later")])
        assert arrived.wait(5), f"{probe.name}: the later line was not delivered"
    finally:
        subscription.stop()
    mine = [d for d in delivered if d["logStream"].startswith(ecs_task)]
    assert all(d["messageType"] == "DATA_MESSAGE" and d["logGroup"] == GROUP for d in mine)
    lines = [(d["logStream"], e["message"]) for d in mine for e in d["logEvents"]
             if not (probe.name == "aws" and e["message"] == "written before the subscription")]
    assert sorted(lines) == [(f"{ecs_task}/stderr", "line 3"), (f"{ecs_task}/stdout", "line 1"),
                             (f"{ecs_task}/stdout", "line 2")]
    assert all({"id", "timestamp", "message"} <= set(e) for d in mine for e in d["logEvents"])


# the local subscription only: how soon a written line reaches the logs function ------------------


def test_the_local_subscription_delivers_a_line_within_milliseconds(tmp_path: Any) -> None:
    from infra.local.log_subscription import LogSubscription, StoreFollower

    local = LocalProbe(str(tmp_path / "state.db"))
    ecs_task = task_id()
    arrivals: dict[str, float] = {}
    got = threading.Condition()

    def handler(event: dict[str, Any], context: Any) -> None:
        with got:
            for e in subscription_payload(event)["logEvents"]:
                arrivals[e["message"]] = time.perf_counter()
            got.notify_all()

    subscription = LogSubscription(StoreFollower(local.store), GROUP, handler)
    subscription.start()
    latencies = []
    try:
        for i in range(20):
            written = time.perf_counter()
            local.write(f"{ecs_task}/stdout", [(now_ms(), f"line {i}")])
            with got:
                assert got.wait_for(lambda i=i: f"line {i}" in arrivals, 5)
            latencies.append(arrivals[f"line {i}"] - written)
    finally:
        subscription.stop()
        local.db.close()
    latencies.sort()
    assert latencies[len(latencies) // 2] < 0.02, latencies


def test_a_local_token_that_was_not_given_out_is_refused_as_a_client_error(tmp_path: Any) -> None:
    from chalicelib.domain.errors import ValidationError

    local = LocalProbe(str(tmp_path / "state.db"))
    try:
        for token in ("not a token", "f/-1", "f/" + "9" * 40, "f/\u0661"):
            with pytest.raises(ValidationError):
                local.reader.read(f"{task_id()}/stdout", token)
    finally:
        local.db.close()
