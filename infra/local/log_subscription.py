"""Local stand-ins for a CloudWatch Logs subscription filter with a Lambda destination: every
new event of the job log group is delivered to the app's logs function, in the event format
CloudWatch Logs uses ({"awslogs": {"data": base64(gzip(json))}}), one delivery per log stream
and batch.

One LogSubscription delivers from either source of new events. On the local backend,
StoreFollower follows the local log streams: it wakes when the runner writes events, so a line
reaches the logs function milliseconds after it was written.

On the aws backend (moto has no subscription delivery to Lambda without Docker),
FilterLogEventsPoller reads with FilterLogEvents over a sliding window (events written with a
timestamp older than WINDOW_MS are not seen; the local Fargate ships lines within 0.2 s of
their timestamp), and remembers the event ids it delivered, so each event is delivered once.
"""
from __future__ import annotations

import base64
import gzip
import json
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from chalice.local import LambdaContext

from chalicelib.observability import logger

from .sqlite.logs import LocalLogStore

INTERVAL_SECONDS = 0.1
WINDOW_MS = 15_000
MAX_EVENTS_PER_DELIVERY = 1_000
MAX_BYTES_PER_DELIVERY = 256 * 1024
FILTER_NAME = "fastlane-live-logs"


def subscription_event(group: str, stream: str, events: list[dict[str, Any]], owner: str = "123456789012") -> dict[str, Any]:
    payload = {
        "messageType": "DATA_MESSAGE", "owner": owner, "logGroup": group, "logStream": stream,
        "subscriptionFilters": [FILTER_NAME],
        "logEvents": [{"id": e["eventId"], "timestamp": e["timestamp"], "message": e["message"]} for e in events],
    }
    return {"awslogs": {"data": base64.b64encode(gzip.compress(json.dumps(payload).encode())).decode()}}


def _order(event: dict[str, Any]) -> tuple[int, str]:
    return int(event["timestamp"]), str(event["eventId"]).rjust(64, "0")


def batches(events: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Deliveries of at most MAX_EVENTS_PER_DELIVERY events and MAX_BYTES_PER_DELIVERY bytes."""
    cut: list[list[dict[str, Any]]] = [[]]
    size = 0
    for event in events:
        event_size = len(event["message"].encode("utf-8")) + 26
        if cut[-1] and (len(cut[-1]) >= MAX_EVENTS_PER_DELIVERY or size + event_size > MAX_BYTES_PER_DELIVERY):
            cut.append([])
            size = 0
        cut[-1].append(event)
        size += event_size
    return [b for b in cut if b]


def deliver(handler: Callable[[dict[str, Any], Any], Any], group: str, stream: str, events: list[dict[str, Any]]) -> None:
    context = LambdaContext(function_name="fastlane-local-logs", memory_size=512, max_runtime_ms=60_000)
    try:
        handler(subscription_event(group, stream, events), context)
    except Exception:  # noqa: BLE001 - as Lambda's asynchronous invoke: logged, the subscription goes on
        logger.exception("local log subscription: the logs function failed", extra={"stream": stream})


Events = dict[str, list[dict[str, Any]]]  # stream -> its new events, oldest first


class StoreFollower:
    """The local log store, followed from the moment the subscription starts: woken by each write."""

    IDLE_SECONDS = 0.5  # events written by another process are seen this late at most
    ERROR_PAUSE = 0.5

    def __init__(self, store: LocalLogStore) -> None:
        self._store = store
        self._after = store.last_seq()
        self.reads = 0  # reads of the store: one reader, whoever watches

    def fresh(self) -> Events:
        self.reads += 1
        events = self._store.events_after(self._after)
        if events:
            self._after = events[-1].seq
        by_stream: Events = {}
        for event in events:
            by_stream.setdefault(event.stream, []).append(
                {"eventId": str(event.seq), "timestamp": event.timestamp, "message": event.message})
        return by_stream

    def wait(self, delivered: int, until: threading.Event) -> None:
        if not delivered:
            self._store.wait_after(self._after, self.IDLE_SECONDS, until=until)

    def wake(self) -> None:
        self._store.wake()


class FilterLogEventsPoller:
    """A CloudWatch log group, read with FilterLogEvents over a sliding window every `interval`
    seconds; the event ids delivered are remembered, so each event is delivered once."""

    ERROR_PAUSE = 1.0

    def __init__(self, logs: Any, group: str, interval: float = INTERVAL_SECONDS, window_ms: int = WINDOW_MS) -> None:
        self._logs, self._group, self._interval, self._window = logs, group, interval, window_ms
        self._seen: dict[tuple[str, str], int] = {}  # (stream, event id) -> timestamp
        self.reads = 0  # FilterLogEvents calls: one reader for the group, whoever watches

    def fresh(self) -> Events:
        since = int(time.time() * 1000) - self._window
        request: dict[str, Any] = {"logGroupName": self._group, "startTime": since}
        fresh: Events = {}
        while True:
            self.reads += 1
            response = self._logs.filter_log_events(**request)
            for event in response.get("events", []):
                key = (event["logStreamName"], str(event["eventId"]))
                if key not in self._seen:
                    self._seen[key] = int(event["timestamp"])
                    fresh.setdefault(event["logStreamName"], []).append(event)
            token = response.get("nextToken")
            if not token:
                break
            request["nextToken"] = token
        self._seen = {key: at for key, at in self._seen.items() if at >= since}
        for events in fresh.values():
            events.sort(key=_order)
        return fresh

    def wait(self, delivered: int, until: threading.Event) -> None:
        until.wait(self._interval)

    def wake(self) -> None:
        pass  # the wait is on the subscription's own stop


class Source(Protocol):
    ERROR_PAUSE: float
    reads: int

    def fresh(self) -> Events: ...
    def wait(self, delivered: int, until: threading.Event) -> None: ...
    def wake(self) -> None: ...


class LogSubscription:
    """Delivers what is written to the log group, one delivery per stream and batch, from one
    source of new events (the local store, or FilterLogEvents)."""

    def __init__(self, source: Source, group: str, handler: Callable[[dict[str, Any], Any], Any]) -> None:
        self._source, self._group, self._handler = source, group, handler
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="log-subscription", daemon=True)

    @property
    def reads(self) -> int:
        return self._source.reads

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._source.wake()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                delivered = self.deliver_new()
            except Exception:  # noqa: BLE001 - the subscription must outlive a passing error
                if not self._stop.is_set():
                    logger.exception("local log subscription: a round failed")
                    self._stop.wait(self._source.ERROR_PAUSE)
                continue
            self._source.wait(delivered, self._stop)

    def deliver_new(self) -> int:
        """Deliver the events written since the last delivery; returns how many."""
        count = 0
        for stream, events in self._source.fresh().items():
            for batch in batches(events):
                deliver(self._handler, self._group, stream, batch)
                count += len(batch)
        return count
