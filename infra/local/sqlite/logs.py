"""Log streams in the local database: each ECS task's `<ecs task id>/stdout` and `/stderr`, one
row per event (timestamp in ms, event id, message), as CloudWatch Logs keeps them. The
LogReader port (pages with tokens, for output reads) and the LogEvents port (events with ids,
both streams interleaved by time, for live logs) read them; the runner writes them; the log
subscription stand-in waits on `wait_after` to hand new events to the logs function.

Event ids are the rows' sequence numbers: they increase with ingestion, as CloudWatch's do
within one timestamp, so positions built from them order the same way."""
from __future__ import annotations

import heapq
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from chalicelib.domain.errors import ValidationError
from chalicelib.domain.live import STREAMS, LogEvent, log_stream_of
from chalicelib.ports import LogChunk

from .db import Database

SCHEMA = """
CREATE TABLE IF NOT EXISTS log_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    stream TEXT NOT NULL,
    timestamp INTEGER NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS log_events_by_stream ON log_events (stream, seq);
CREATE INDEX IF NOT EXISTS log_events_by_time ON log_events (stream, timestamp, seq);
"""

# Rows one transaction of `expire` deletes at most.
EXPIRY_BATCH = 5_000
# What one GetLogEvents or FilterLogEvents call answers at most, as in CloudWatch.
PAGE_BYTES = 1024 * 1024
PAGE_EVENTS = 10_000
EVENT_OVERHEAD_BYTES = 26  # what CloudWatch counts per event on top of its message
# One FilterLogEvents-like page of live-log events; each stream is read in pieces this size.
EVENTS_PAGE = 1_000
TOKEN_PREFIX = "f/"
BACK_TOKEN_PREFIX = "b/"


@dataclass(frozen=True)
class StoredEvent:
    seq: int
    stream: str  # the log stream's name: `<ecs task id>/stdout`
    timestamp: int
    message: str


class LocalLogStore:
    """Every log stream of one database: written by the runner, read by the ports below."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._db.ensure_schema(SCHEMA)
        self._written = threading.Condition()
        self._last_seq = self.last_seq()

    def put(self, stream: str, events: Sequence[tuple[int, str]]) -> None:
        """Append (timestamp ms, message) events to a stream, in order."""
        if not events:
            return
        with self._db.write() as connection:
            connection.executemany("INSERT INTO log_events (stream, timestamp, message) VALUES (?, ?, ?)",
                                   [(stream, int(timestamp), message) for timestamp, message in events])
            last = connection.execute("SELECT last_insert_rowid()").fetchone()[0]
        with self._written:
            self._last_seq = max(self._last_seq, int(last))
            self._written.notify_all()

    def last_seq(self) -> int:
        with self._db.read() as connection:
            row = connection.execute("SELECT COALESCE(MAX(seq), 0) FROM log_events").fetchone()
        return int(row[0])

    def wait_after(self, seq: int, timeout: float, until: threading.Event | None = None) -> bool:
        """Wait until an event later than `seq` was written in this process, or `timeout`, or
        `until` is set (and the store woken)."""
        with self._written:
            return self._written.wait_for(
                lambda: self._last_seq > seq or (until is not None and until.is_set()), timeout)

    def expire(self, before_ms: int, batch: int = EXPIRY_BATCH) -> int:
        """Forget the events older than `before_ms` (ms since the epoch), as a log group's retention
        does; returns how many. The oldest written go first, `batch` rows a transaction (writers
        wait for one batch at most), until a batch holds an event to keep: events are stored as
        they are produced, so one with an older timestamp than an event written before it (by
        seconds at most) can outlive its retention by as much. Sequence numbers are never reused
        (AUTOINCREMENT), so tokens and live-log positions stay valid."""
        removed = 0
        while True:
            with self._db.write() as connection:
                gone = connection.execute(
                    "DELETE FROM log_events WHERE seq IN (SELECT seq FROM log_events ORDER BY seq LIMIT ?) "
                    "AND timestamp < ?", (batch, before_ms)).rowcount
            removed += gone
            if gone < batch:
                return removed

    def wake(self) -> None:
        """Wake waiters (at shutdown), to look at what they wait until."""
        with self._written:
            self._written.notify_all()

    def events_after(self, seq: int, limit: int = PAGE_EVENTS) -> list[StoredEvent]:
        """Events of every stream written after `seq`, in the order they were written."""
        with self._db.read() as connection:
            rows = connection.execute("SELECT seq, stream, timestamp, message FROM log_events WHERE seq > ?"
                                      " ORDER BY seq LIMIT ?", (seq, limit)).fetchall()
        return [StoredEvent(int(r[0]), r[1], int(r[2]), r[3]) for r in rows]

    def page(self, stream: str, after_seq: int, limit_events: int = PAGE_EVENTS,
             limit_bytes: int = PAGE_BYTES) -> tuple[list[tuple[int, str]], bool]:
        """(seq, message) of one stream after `after_seq`, at most one page; and whether the
        page reaches the end of what is stored."""
        with self._db.read() as connection:
            rows = connection.execute("SELECT seq, message FROM log_events WHERE stream = ? AND seq > ?"
                                      " ORDER BY seq LIMIT ?", (stream, after_seq, limit_events + 1)).fetchall()
        return _fill(rows, limit_events, limit_bytes)

    def page_back(self, stream: str, before_seq: int | None, limit_events: int = PAGE_EVENTS,
                  limit_bytes: int = PAGE_BYTES) -> tuple[list[tuple[int, str]], bool]:
        """(seq, message) of one stream before `before_seq` (from its newest with None), at most
        one page, oldest first; and whether the page reaches the stream's first event."""
        bound = before_seq if before_seq is not None else 2 ** 62
        with self._db.read() as connection:
            rows = connection.execute("SELECT seq, message FROM log_events WHERE stream = ? AND seq < ?"
                                      " ORDER BY seq DESC LIMIT ?", (stream, bound, limit_events + 1)).fetchall()
        page, whole = _fill(rows, limit_events, limit_bytes)
        page.reverse()
        return page, whole

    def by_time(self, stream: str, start_ms: int, after: tuple[int, int] | None,
                limit: int) -> list[tuple[int, int, str]]:
        """(timestamp, seq, message) of one stream from `start_ms`, after the key `after`."""
        with self._db.read() as connection:
            return self._by_time(connection, stream, start_ms, after, limit)

    @staticmethod
    def _by_time(connection: sqlite3.Connection, stream: str, start_ms: int, after: tuple[int, int] | None,
                 limit: int) -> list[tuple[int, int, str]]:
        if after is None:
            rows = connection.execute("SELECT timestamp, seq, message FROM log_events WHERE stream = ?"
                                      " AND timestamp >= ? ORDER BY timestamp, seq LIMIT ?",
                                      (stream, start_ms, limit)).fetchall()
        else:
            rows = connection.execute("SELECT timestamp, seq, message FROM log_events WHERE stream = ?"
                                      " AND (timestamp > ? OR (timestamp = ? AND seq > ?))"
                                      " ORDER BY timestamp, seq LIMIT ?",
                                      (stream, after[0], after[0], after[1], limit)).fetchall()
        return [(int(r[0]), int(r[1]), r[2]) for r in rows]


def _fill(rows: list[sqlite3.Row], limit_events: int, limit_bytes: int) -> tuple[list[tuple[int, str]], bool]:
    """The rows (in reading order, one more than a page asked for) that fit one page as
    GetLogEvents counts it; and whether they were all of them (the reading reached its end)."""
    page: list[tuple[int, str]] = []
    size = 0
    for seq, message in rows[:limit_events]:
        size += len(message.encode("utf-8")) + EVENT_OVERHEAD_BYTES
        if page and size > limit_bytes:
            return page, False
        page.append((int(seq), message))
    return page, len(rows) <= limit_events


class LocalLogReader:
    """The LogReader port: one stream page by page. The token says the last event read, so a
    reader that reached the end and comes back later gets what was written since."""

    def __init__(self, store: LocalLogStore) -> None:
        self._store = store

    def read(self, stream: str, token: str | None) -> LogChunk:
        after = _parse_token(token)
        page, at_end = self._store.page(stream, after)
        last = page[-1][0] if page else after
        return LogChunk(lines=[message for _, message in page], next_token=f"{TOKEN_PREFIX}{last}", at_end=at_end)

    def read_back(self, stream: str, token: str | None) -> LogChunk:
        before = _parse_token(token, BACK_TOKEN_PREFIX) if token else None
        page, at_start = self._store.page_back(stream, before)
        first = page[0][0] if page else (before if before is not None else 0)
        return LogChunk(lines=[message for _, message in page], next_token=f"{BACK_TOKEN_PREFIX}{first}",
                        at_end=at_start)


def _parse_token(token: str | None, prefix: str = TOKEN_PREFIX) -> int:
    if not token:
        return 0
    digits = token[len(prefix):] if token.startswith(prefix) else ""
    if not digits.isascii() or not digits.isdigit() or len(digits) > 18:
        raise ValidationError("token is not a page token this service gave out.", field="token")
    return int(digits)


class LocalLogEvents:
    """The LogEvents port: the events of an ECS task's streams from a time, oldest first, both
    streams merged by (timestamp, event id) in pages of at most EVENTS_PAGE events."""

    def __init__(self, store: LocalLogStore, page_events: int = EVENTS_PAGE) -> None:
        self._store = store
        self._page = page_events
        self.reads = 0  # read() calls, for the runtime's counters of log reads

    def read(self, ecs_task_id: str, streams: tuple[str, ...] = STREAMS,
             start_ms: int | None = None) -> Iterator[list[LogEvent]]:
        self.reads += 1
        names = [f"{ecs_task_id}/{stream}" for stream in streams]
        merged = heapq.merge(*(self._stream(name, max(0, start_ms or 0)) for name in names))
        page: list[LogEvent] = []
        for timestamp, seq, name, message in merged:
            named = log_stream_of(name)
            if named is None:
                continue
            page.append(LogEvent(named[1], timestamp, str(seq), message))
            if len(page) >= self._page:
                yield page
                page = []
        if page:
            yield page

    def _stream(self, name: str, start_ms: int) -> Iterator[tuple[int, int, str, str]]:
        after: tuple[int, int] | None = None
        while True:
            rows = self._store.by_time(name, start_ms, after, self._page)
            for timestamp, seq, message in rows:
                yield timestamp, seq, name, message
            if len(rows) < self._page:
                return
            after = (rows[-1][0], rows[-1][1])
