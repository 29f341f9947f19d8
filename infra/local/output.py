"""A job's stdout and stderr as log events, shipped in batches as they are written (into CloudWatch streams on the aws backend)."""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

# CloudWatch Logs takes events of at most 256 KB and calls of at most 1 MB / 10,000 events;
# these stay well inside, as the awslogs driver does (the local log store keeps the same).
MAX_LINE_BYTES = 200_000
MAX_BATCH_EVENTS = 1_000
MAX_BATCH_BYTES = 800 * 1024
EVENT_OVERHEAD_BYTES = 26  # what CloudWatch counts per event on top of the message
STREAMS = ("stdout", "stderr")


def utf8_cut(data: bytes, limit: int) -> int:
    """Where to cut `data` at most `limit` bytes in without splitting a UTF-8 character."""
    cut = limit
    while cut > limit - 4 and cut > 0 and 0x80 <= data[cut] <= 0xBF:
        cut -= 1
    return cut if cut > limit - 4 and cut > 0 else limit


# Puts a batch of events ({"timestamp": ms, "message": text}, oldest first) into a log stream.
PutEvents = Callable[[str, list[dict[str, Any]]], None]


class OutputShipper:
    """Turns one task's output bytes into log events, one per line, and puts them in batches
    at most `flush_seconds` after they were read (0: at once). Used by one thread only."""

    def __init__(self, put: PutEvents, names: dict[str, str], flush_seconds: float = 0.0) -> None:
        self.put = put
        self.names = names  # stdout/stderr -> the log stream's name
        self.flush_seconds = flush_seconds
        self.partial = {stream: b"" for stream in STREAMS}
        self.pending: dict[str, list[dict[str, Any]]] = {stream: [] for stream in STREAMS}
        self.last_timestamp = {stream: 0 for stream in STREAMS}
        self.pending_events = 0
        self.pending_bytes = 0
        self.oldest_pending: float | None = None

    def feed(self, stream: str, data: bytes) -> None:
        buffer = self.partial[stream] + data
        *lines, rest = buffer.split(b"\n")
        for line in lines:
            self._add(stream, line)
        # A line that never ends is shipped in pieces rather than held in memory.
        while len(rest) > MAX_LINE_BYTES:
            cut = utf8_cut(rest, MAX_LINE_BYTES)
            self._add(stream, rest[:cut])
            rest = rest[cut:]
        self.partial[stream] = rest

    def end(self, stream: str) -> None:
        """The stream reached EOF: its last line may have had no newline."""
        rest, self.partial[stream] = self.partial[stream], b""
        self._add(stream, rest)

    def _add(self, stream: str, line: bytes) -> None:
        # CloudWatch rejects empty messages, so blank lines are not shipped (as with awslogs).
        if not line:
            return
        # Decoding first: a replaced byte takes three, so the size limit applies after it.
        text = line.decode("utf-8", errors="replace").encode("utf-8")
        now = time.time()
        timestamp = max(int(now * 1000), self.last_timestamp[stream])
        self.last_timestamp[stream] = timestamp
        while text:
            cut = utf8_cut(text, MAX_LINE_BYTES) if len(text) > MAX_LINE_BYTES else len(text)
            piece, text = text[:cut], text[cut:]
            self.pending[stream].append({"timestamp": timestamp, "message": piece.decode("utf-8")})
            self.pending_events += 1
            self.pending_bytes += len(piece) + EVENT_OVERHEAD_BYTES
        if self.oldest_pending is None:
            self.oldest_pending = now

    def seconds_to_flush(self) -> float | None:
        if self.oldest_pending is None:
            return None
        return max(0.0, self.oldest_pending + self.flush_seconds - time.time())

    def due(self) -> bool:
        if self.oldest_pending is None:
            return False
        return (self.pending_events >= MAX_BATCH_EVENTS or self.pending_bytes >= MAX_BATCH_BYTES
                or time.time() >= self.oldest_pending + self.flush_seconds)

    def flush(self) -> None:
        for stream in STREAMS:
            events, self.pending[stream] = self.pending[stream], []
            start = 0
            while start < len(events):
                end, size = start, 0
                while end < len(events) and end - start < MAX_BATCH_EVENTS:
                    event_size = len(events[end]["message"].encode("utf-8")) + EVENT_OVERHEAD_BYTES
                    if end > start and size + event_size > MAX_BATCH_BYTES:
                        break
                    size += event_size
                    end += 1
                self._put(self.names[stream], events[start:end])
                start = end
        self.pending_events = self.pending_bytes = 0
        self.oldest_pending = None

    def _put(self, name: str, events: list[dict[str, Any]]) -> None:
        # Losing a batch is better than stopping the task, or the rest of its output.
        try:
            self.put(name, events)
        except Exception:  # noqa: BLE001 - logged; the task runs on
            log.exception("cannot put %d log events into %s", len(events), name)


class CloudWatchStreams:
    """Where one task's output goes: its two streams in the job log group, as awslogs names them."""

    def __init__(self, client: Any, group: str, task_id: str) -> None:
        self.client = client
        self.group = group
        self.names = {stream: f"{task_id}/{stream}" for stream in ("stdout", "stderr")}

    def create_streams(self) -> None:
        for name in self.names.values():
            try:
                self._create_stream(name)
            except Exception:
                log.exception("cannot create log stream %s in %s", name, self.group)

    def _create_stream(self, name: str) -> None:
        errors = self.client.exceptions
        try:
            self.client.create_log_stream(logGroupName=self.group, logStreamName=name)
        except errors.ResourceAlreadyExistsException:
            pass
        except errors.ResourceNotFoundException:
            # The group was deleted under us: make it again, as the awslogs driver can.
            try:
                self.client.create_log_group(logGroupName=self.group)
            except errors.ResourceAlreadyExistsException:
                pass
            self.client.create_log_stream(logGroupName=self.group, logStreamName=name)

    def put(self, name: str, events: list[dict[str, Any]]) -> None:
        try:
            self.client.put_log_events(logGroupName=self.group, logStreamName=name, logEvents=events)
        except self.client.exceptions.ResourceNotFoundException:
            self._create_stream(name)
            self.client.put_log_events(logGroupName=self.group, logStreamName=name, logEvents=events)
