"""Live logs as plain data: positions in an execution's output, subscribers, and the JSON frames
sent to websocket clients, cut to fit API Gateway's frame limit. No AWS here."""
from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

from .errors import ValidationError

STREAMS = ("stdout", "stderr")
# API Gateway websockets carry frames of at most 32 KB and messages of at most 128 KB; every
# message we send is one frame, with room to spare.
MAX_FRAME_BYTES = 32 * 1024 - 768
CONNECTION_LIFETIME_SECONDS = 2 * 3600  # API Gateway closes a websocket after 2 hours

_POSITION = re.compile(r"^(\d{1,16})-(\d{1,64})$")


@dataclass(frozen=True, order=False)
class Position:
    """Where an event is in one stream: its CloudWatch timestamp (ms) and event id. CloudWatch
    orders a stream by timestamp, and events of one timestamp by ingestion, which is also the
    order of their (numeric) ids."""

    timestamp: int
    event_id: str

    @property
    def key(self) -> tuple[int, str]:
        return self.timestamp, self.event_id.rjust(64, "0")

    def __str__(self) -> str:
        return f"{self.timestamp}-{self.event_id}"

    @classmethod
    def parse(cls, text: str | None) -> Position | None:
        if not text:
            return None
        match = _POSITION.match(text)
        if match is None:
            raise ValueError(text)
        return cls(int(match.group(1)), match.group(2))


def later(a: Position | None, b: Position | None) -> Position | None:
    if a is None:
        return b
    if b is None:
        return a
    return a if a.key >= b.key else b


def is_after(position: Position, mark: Position | None) -> bool:
    return mark is None or position.key > mark.key


@dataclass(frozen=True)
class Cursor:
    """What a client has received of both streams; sent with every output frame as one opaque
    string `<stdout position>,<stderr position>` that the client gives back as `after`."""

    stdout: Position | None = None
    stderr: Position | None = None

    def of(self, stream: str) -> Position | None:
        return self.stdout if stream == "stdout" else self.stderr

    def moved(self, stream: str, position: Position | None) -> Cursor:
        return replace(self, **{stream: later(self.of(stream), position)})

    def merged(self, other: Cursor) -> Cursor:
        return Cursor(later(self.stdout, other.stdout), later(self.stderr, other.stderr))

    def ahead_of(self, other: Cursor) -> bool:
        """Whether this cursor is past `other` on either stream."""
        return any(mine is not None and is_after(mine, other.of(stream))
                   for stream in STREAMS for mine in (self.of(stream),))

    def __str__(self) -> str:
        return f"{self.stdout or ''},{self.stderr or ''}"

    def start_of(self, streams: Iterable[str] = STREAMS) -> int | None:
        """Where a read that serves these streams must start: None (the beginning) unless each
        stream has a position, else the oldest one's timestamp."""
        marks = [self.of(stream) for stream in streams]
        return min(mark.timestamp for mark in marks if mark is not None) if None not in marks else None

    @classmethod
    def parse(cls, text: str | None) -> Cursor:
        if not text:
            return cls()
        parts = text.split(",")
        try:
            if len(parts) != 2:
                raise ValueError(text)
            return cls(Position.parse(parts[0]), Position.parse(parts[1]))
        except ValueError:
            raise ValidationError("after is not a position this service gave out.", field="after") from None


@dataclass(frozen=True)
class LogEvent:
    stream: str  # stdout or stderr
    timestamp: int
    event_id: str
    message: str

    @property
    def position(self) -> Position:
        return Position(self.timestamp, self.event_id)

    def to_list(self) -> list[Any]:
        return [self.stream, self.timestamp, self.event_id, self.message]

    @classmethod
    def from_list(cls, item: list[Any]) -> LogEvent:
        return cls(str(item[0]), int(item[1]), str(item[2]), str(item[3]))


def log_stream_of(name: str) -> tuple[str, str] | None:
    """`<ECS task id>/stdout` -> (task id, 'stdout'); None for a stream that is not job output."""
    prefix, _, stream = name.rpartition("/")
    return (prefix, stream) if prefix and stream in STREAMS else None


class Connection(NamedTuple):
    """A websocket connection, and the management API that reaches it."""

    connection_id: str
    endpoint: str


class LogChunk(NamedTuple):
    """One delivery of the log subscription: new events of one stream of one ECS task, in order."""

    ecs_task_id: str
    stream: str
    events: tuple[LogEvent, ...]


class SubscribeRequest(NamedTuple):
    """A subscription as a client sent it (the query string of $connect, or a subscribe message),
    not checked yet: Subscription.parse checks it, so that what is wrong reaches the client."""

    task_id: Any = None
    job_id: Any = None
    execution_id: Any = None
    after: Any = None

    @classmethod
    def of(cls, values: Mapping[str, Any]) -> SubscribeRequest:
        return cls(values.get("taskId"), values.get("jobId"), values.get("executionId"), values.get("after"))

    def to_dict(self) -> dict[str, Any]:
        return {"taskId": self.task_id, "jobId": self.job_id, "executionId": self.execution_id, "after": self.after}


class DeferredSubscription(NamedTuple):
    """A subscription made on $connect, which cannot send: $connect starts the logs function with
    it (an asynchronous Invoke), which runs it once the socket is open."""

    connection: Connection
    request: SubscribeRequest

    def to_payload(self) -> dict[str, Any]:
        return {"liveLogs": "subscribe", "connectionId": self.connection.connection_id,
                "endpoint": self.connection.endpoint, "request": self.request.to_dict()}

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> DeferredSubscription:
        return cls(Connection(payload["connectionId"], payload["endpoint"]),
                   SubscribeRequest.of(payload.get("request") or {}))


@dataclass(frozen=True)
class Subscription:
    """What a client asked to watch. `after` resumes after a cursor it received."""

    task_id: str
    job_id: str
    execution_id: str | None = None
    after: Cursor = field(default_factory=Cursor)

    @property
    def follow(self) -> str:
        return "execution" if self.execution_id else "job"

    @classmethod
    def parse(cls, request: SubscribeRequest) -> Subscription:
        def text(name: str, value: Any, required: bool) -> str | None:
            if value in (None, "") and not required:
                return None
            if not isinstance(value, str) or not value or len(value) > 255:
                raise ValidationError(f"{name} must be given as a string of 1 to 255 characters.", field=name)
            return value

        task_id = text("taskId", request.task_id, True)
        job_id = text("jobId", request.job_id, True)
        if request.after is not None and not isinstance(request.after, str):
            raise ValidationError("after is not a position this service gave out.", field="after")
        return cls(task_id or "", job_id or "", text("executionId", request.execution_id, False),
                   Cursor.parse(request.after))


@dataclass(frozen=True)
class Subscriber:
    """One websocket connection watching one execution (an item of the connections table)."""

    connection_id: str
    endpoint: str  # the management API that reaches the connection
    execution_id: str
    task_id: str
    job_id: str
    follow: str  # job or execution
    ecs_task_id: str
    connected_at: float
    expires_at: float
    live: bool = False  # False while its catch-up is being sent
    cursor: Cursor = field(default_factory=Cursor)  # what it was sent, up to when it went live
    pending: tuple[str, ...] = ()  # live chunks that arrived during its catch-up
    overflow: bool = False  # pending could not hold them all
    end: dict[str, Any] | None = None  # the execution ended during its catch-up

    @property
    def connection(self) -> Connection:
        return Connection(self.connection_id, self.endpoint)


@dataclass(frozen=True)
class StreamRecord:
    """Per execution output being watched: what the live fan-out has delivered, and whether the
    execution's end was sent."""

    ecs_task_id: str
    execution_id: str
    delivered: Cursor = field(default_factory=Cursor)
    ended: bool = False


# frames ----------------------------------------------------------------------------------------


def encode(frame: dict[str, Any]) -> str:
    return json.dumps(frame, ensure_ascii=False, separators=(",", ":"))


def _size(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False).encode("utf-8"))


def subscribed_frame(task_id: str, job_id: str, execution_id: str | None, status: str | None, follow: str) -> str:
    return encode({"type": "subscribed", "taskId": task_id, "jobId": job_id, "executionId": execution_id,
                   "status": status, "follow": follow})


def end_frame(execution_id: str, status: str, exit_code: int | None, error: str | None,
              timeline: Sequence[dict[str, Any]] = ()) -> str:
    """The last frame: how the execution ended, with its timeline (bounded: domain/timeline.py)."""
    return encode({"type": "end", "executionId": execution_id, "status": status, "exitCode": exit_code,
                   "error": (error or None) and error[:2000], "timeline": list(timeline)})


def close_frame(reason: str, retry_after: float | None = None) -> str:
    frame: dict[str, Any] = {"type": "close", "reason": reason}
    if retry_after is not None:
        frame["retryAfter"] = retry_after
    return encode(frame)


def error_frame(message: str, field_name: str | None = None) -> str:
    frame: dict[str, Any] = {"type": "error", "error": message}
    if field_name:
        frame["field"] = field_name
    return encode(frame)


def pong_frame() -> str:
    return encode({"type": "pong"})


def token_frame(token: str, expires_at: int) -> str:
    """A stream page's renewed live-log token (the answer to {"action": "renew"})."""
    return encode({"type": "token", "token": token, "expiresAt": expires_at})


def _pieces(line: str, budget: int) -> list[str]:
    """Cut a line whose JSON does not fit a frame into pieces that do."""
    pieces = []
    while _size(line) > budget:
        n = min(len(line), budget)
        while n > 1 and _size(line[:n]) > budget:
            n = max(1, n * budget // _size(line[:n]) - 1)
        pieces.append(line[:n])
        line = line[n:]
    pieces.append(line)
    return pieces


class FrameWriter:
    """Turns a run of log events into output frames of at most MAX_FRAME_BYTES, for one client.
    Consecutive lines of one stream share a frame; a line too long for one frame is sent in
    pieces, each but the last marked `partial`. Every frame carries the cursor after its last
    complete line."""

    def __init__(self, send: Callable[[str], bool], cursor: Cursor, max_bytes: int = MAX_FRAME_BYTES) -> None:
        self._send = send
        self.cursor = cursor
        self._max = max_bytes
        self._stream: str | None = None
        self._lines: list[str] = []
        self._last: Position | None = None
        self._used = 0
        self.gone = False
        self.sent_frames = 0

    def _overhead(self, stream: str) -> int:
        # The frame without lines, with the longest cursor it could carry.
        longest = Cursor(Position(10 ** 15, "9" * 64), Position(10 ** 15, "9" * 64))
        return _size({"type": "output", "stream": stream, "lines": [], "position": str(longest), "partial": True})

    def _emit(self, stream: str, lines: list[str], partial: bool) -> None:
        if self.gone:
            return
        frame: dict[str, Any] = {"type": "output", "stream": stream, "lines": lines, "position": str(self.cursor)}
        if partial:
            frame["partial"] = True
        if not self._send(encode(frame)):
            self.gone = True
        self.sent_frames += 1

    def add(self, event: LogEvent) -> None:
        if self.gone or not is_after(event.position, self.cursor.of(event.stream)):
            return
        if self._stream != event.stream:
            self.flush()
            self._stream = event.stream
        budget = max(64, self._max - self._overhead(event.stream))
        size = _size(event.message) + 1
        if size > budget:
            pieces = _pieces(event.message, budget - 1)
            self.flush()
            for piece in pieces[:-1]:
                self._emit(event.stream, [piece], partial=True)
            self._lines, self._used = [pieces[-1]], _size(pieces[-1]) + 1
        else:
            if self._used + size > budget:
                self.flush()
                self._stream = event.stream
            self._lines.append(event.message)
            self._used += size
        self.cursor = self.cursor.moved(event.stream, event.position)

    def add_all(self, events: Iterable[LogEvent]) -> None:
        for event in events:
            self.add(event)

    def flush(self) -> None:
        if self._lines and self._stream is not None:
            self._emit(self._stream, self._lines, partial=False)
        self._lines, self._used = [], 0
