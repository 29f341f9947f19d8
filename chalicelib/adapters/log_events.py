"""CloudWatch Logs, read for live logs: the events of an execution's stdout and stderr streams
with their event ids (FilterLogEvents; GetLogEvents gives no ids), which are also the ids that a
log subscription delivers, so a catch-up and the live chunks after it can be told apart."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from botocore.exceptions import ClientError

from ..domain.live import STREAMS, LogEvent, log_stream_of


class CloudWatchLogEvents:
    def __init__(self, client: Any, log_group: str) -> None:
        self._logs = client
        self._group = log_group

    def read(self, ecs_task_id: str, streams: tuple[str, ...] = STREAMS,
             start_ms: int | None = None) -> Iterator[list[LogEvent]]:
        """Pages of events of the task's streams from `start_ms` (or the beginning), oldest
        first (stdout and stderr interleaved by time). One FilterLogEvents call a page."""
        request: dict[str, Any] = {"logGroupName": self._group,
                                   "logStreamNames": [f"{ecs_task_id}/{stream}" for stream in streams]}
        if start_ms is not None:
            request["startTime"] = max(0, start_ms)
        while True:
            try:
                response = self._logs.filter_log_events(**request)
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                    return  # nothing written yet
                raise
            page = []
            for event in response.get("events", []):
                named = log_stream_of(event.get("logStreamName", ""))
                if named is not None:
                    page.append(LogEvent(named[1], int(event["timestamp"]), str(event["eventId"]),
                                         event.get("message", "")))
            page.sort(key=lambda e: (e.timestamp, e.position.key[1]))
            if page:
                yield page
            token = response.get("nextToken")
            if not token or token == request.get("nextToken"):
                return
            request["nextToken"] = token
