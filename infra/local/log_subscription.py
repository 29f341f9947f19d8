"""The local stand-in for a CloudWatch Logs subscription filter with a Lambda destination: one
poller for the whole job log group delivers every new event to the app's logs function, in the
event format CloudWatch Logs uses ({"awslogs": {"data": base64(gzip(json))}}), one delivery per
log stream and batch. moto has no subscription delivery to Lambda without Docker.

It reads with FilterLogEvents over a sliding window (events written with a timestamp older than
WINDOW_MS are not seen; the local Fargate ships lines within 0.2 s of their timestamp), and
remembers the event ids it delivered, so each event is delivered once.
"""
from __future__ import annotations

import base64
import gzip
import json
import time
from collections.abc import Callable
from typing import Any

from chalice.local import LambdaContext

from chalicelib.observability import logger

from .event_sources import Periodic

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


class LogSubscriptionPoller:
    def __init__(self, logs: Any, group: str, handler: Callable[[dict[str, Any], Any], Any], *,
                 interval: float = INTERVAL_SECONDS, window_ms: int = WINDOW_MS) -> None:
        self._logs, self._group, self._handler = logs, group, handler
        self._window = window_ms
        self._seen: dict[tuple[str, str], int] = {}  # (stream, event id) -> timestamp
        self._loop = Periodic(self.poll_once, interval, "log-subscription", pause=1.0)
        self.reads = 0  # FilterLogEvents calls: one reader for the group, whoever watches

    def start(self) -> None:
        self._loop.start()

    def stop(self) -> None:
        self._loop.stop()

    def poll_once(self) -> int:
        """Deliver the events not delivered yet; returns how many."""
        since = int(time.time() * 1000) - self._window
        request: dict[str, Any] = {"logGroupName": self._group, "startTime": since}
        fresh: dict[str, list[dict[str, Any]]] = {}
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
        count = 0
        for stream, events in fresh.items():
            events.sort(key=_order)
            for batch in self._batches(events):
                self._deliver(stream, batch)
                count += len(batch)
        return count

    def _batches(self, events: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
        batches: list[list[dict[str, Any]]] = [[]]
        size = 0
        for event in events:
            event_size = len(event["message"].encode("utf-8")) + 26
            if batches[-1] and (len(batches[-1]) >= MAX_EVENTS_PER_DELIVERY or size + event_size > MAX_BYTES_PER_DELIVERY):
                batches.append([])
                size = 0
            batches[-1].append(event)
            size += event_size
        return [b for b in batches if b]

    def _deliver(self, stream: str, events: list[dict[str, Any]]) -> None:
        context = LambdaContext(function_name="fastlane-local-logs", memory_size=512, max_runtime_ms=60_000)
        try:
            self._handler(subscription_event(self._group, stream, events), context)
        except Exception:  # noqa: BLE001 - as Lambda's asynchronous invoke: logged, the poller goes on
            logger.exception("local log subscription: the logs function failed", extra={"stream": stream})
