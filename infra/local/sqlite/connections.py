"""Live logs' websocket subscribers and watched streams on SQLite (the Connections port): who
watches which execution, what each was sent, and what the live fan-out delivered."""
from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from typing import Any

from chalicelib.domain.live import Cursor, Position, StreamRecord, Subscriber

from .db import Database, Expiry

SCHEMA = """
CREATE TABLE IF NOT EXISTS subscribers (
    connection_id TEXT PRIMARY KEY,
    execution_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    job_id TEXT NOT NULL,
    follow TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    ecs_task_id TEXT NOT NULL,
    connected_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    live INTEGER NOT NULL,
    stdout_at TEXT,
    stderr_at TEXT,
    pending TEXT NOT NULL,
    pending_bytes INTEGER NOT NULL,
    overflow INTEGER NOT NULL,
    end_frame TEXT
) STRICT;

CREATE INDEX IF NOT EXISTS subscribers_by_execution ON subscribers (execution_id);
CREATE INDEX IF NOT EXISTS subscribers_by_expiry ON subscribers (expires_at);

CREATE TABLE IF NOT EXISTS streams (
    ecs_task_id TEXT PRIMARY KEY,
    execution_id TEXT NOT NULL,
    stdout_at TEXT,
    stderr_at TEXT,
    ended INTEGER NOT NULL,
    expires_at REAL NOT NULL
) STRICT;

CREATE INDEX IF NOT EXISTS streams_by_expiry ON streams (expires_at);
"""

# What a subscriber catching up may hold of live chunks before it must re-read the output
# instead; the DynamoDB item holding them stops at 400 KB.
MAX_PENDING_BYTES = 350 * 1024
STREAM_RECORD_SECONDS = 24 * 3600  # a day after its last subscriber came
PURGE_EVERY_SECONDS = 60.0
# What append_pending answers; the live fan-out (services/live_logs.py) reads these words.
KEPT, FULL, REFUSED = "kept", "full", "refused"


def _position(value: Position | None) -> str | None:
    return str(value) if value is not None else None


def _cursor(row: sqlite3.Row) -> Cursor:
    return Cursor(Position.parse(row["stdout_at"]), Position.parse(row["stderr_at"]))


def _subscriber(row: sqlite3.Row) -> Subscriber:
    return Subscriber(
        connection_id=row["connection_id"], endpoint=row["endpoint"], execution_id=row["execution_id"],
        task_id=row["task_id"], job_id=row["job_id"], follow=row["follow"], ecs_task_id=row["ecs_task_id"],
        connected_at=row["connected_at"], expires_at=row["expires_at"], live=bool(row["live"]), cursor=_cursor(row),
        pending=tuple(json.loads(row["pending"])), overflow=bool(row["overflow"]),
        end=json.loads(row["end_frame"]) if row["end_frame"] else None,
    )


def _stream(row: sqlite3.Row) -> StreamRecord:
    return StreamRecord(ecs_task_id=row["ecs_task_id"], execution_id=row["execution_id"], delivered=_cursor(row),
                        ended=bool(row["ended"]))


class SqliteConnections:
    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._clock = clock
        self._expiry = Expiry(("subscribers", "streams"), PURGE_EVERY_SECONDS)

    # subscribers ----------------------------------------------------------------------------------

    def put_subscriber(self, subscriber: Subscriber) -> None:
        with self._db.write() as connection:
            self._expiry.purge(connection, self._clock())
            connection.execute(
                "INSERT OR REPLACE INTO subscribers (connection_id, execution_id, task_id, job_id, follow, endpoint, "
                "ecs_task_id, connected_at, expires_at, live, stdout_at, stderr_at, pending, pending_bytes, overflow, "
                "end_frame) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '[]', 0, 0, NULL)",
                (subscriber.connection_id, subscriber.execution_id, subscriber.task_id, subscriber.job_id,
                 subscriber.follow, subscriber.endpoint, subscriber.ecs_task_id, subscriber.connected_at,
                 subscriber.expires_at, int(subscriber.live), _position(subscriber.cursor.stdout),
                 _position(subscriber.cursor.stderr)))

    def get_subscriber(self, connection_id: str) -> Subscriber | None:
        with self._db.read() as connection:
            row = connection.execute("SELECT * FROM subscribers WHERE connection_id = ?", (connection_id,)).fetchone()
        return _subscriber(row) if row is not None else None

    def subscribers(self, execution_id: str) -> list[Subscriber]:
        """Those whose connection can still be open."""
        with self._db.read() as connection:
            found = connection.execute("SELECT * FROM subscribers WHERE execution_id = ? AND expires_at > ? "
                                       "ORDER BY connected_at", (execution_id, self._clock())).fetchall()
        return [_subscriber(row) for row in found]

    def delete(self, connection_id: str) -> None:
        with self._db.write() as connection:
            connection.execute("DELETE FROM subscribers WHERE connection_id = ?", (connection_id,))

    def append_pending(self, connection_id: str, chunk: str) -> str:
        """`kept`; `full` when the subscriber holds too much already (it re-reads the output);
        `refused` when it is live (or gone): the caller sends the chunk itself."""
        size = len(chunk.encode("utf-8"))
        with self._db.write() as connection:
            row = connection.execute("SELECT live, pending_bytes FROM subscribers WHERE connection_id = ?",
                                     (connection_id,)).fetchone()
            if row is None or row["live"]:
                return REFUSED
            if row["pending_bytes"] + size > MAX_PENDING_BYTES:
                connection.execute("UPDATE subscribers SET overflow = 1 WHERE connection_id = ?", (connection_id,))
                return FULL
            connection.execute("UPDATE subscribers SET pending = json_insert(pending, '$[#]', ?), "
                               "pending_bytes = pending_bytes + ? WHERE connection_id = ?", (chunk, size, connection_id))
        return KEPT

    def go_live(self, connection_id: str, cursor: Cursor, pending_seen: int) -> bool:
        """Live with `cursor` if nothing arrived since the caller read the subscriber: no more
        pending chunks than it saw, no overflow, no end."""
        with self._db.write() as connection:
            changed = connection.execute(
                "UPDATE subscribers SET live = 1, pending = '[]', pending_bytes = 0, "
                "stdout_at = coalesce(?, stdout_at), stderr_at = coalesce(?, stderr_at) "
                "WHERE connection_id = ? AND json_array_length(pending) = ? AND overflow = 0 AND end_frame IS NULL",
                (_position(cursor.stdout), _position(cursor.stderr), connection_id, pending_seen))
            return changed.rowcount == 1

    def clear_overflow(self, connection_id: str) -> None:
        with self._db.write() as connection:
            connection.execute("UPDATE subscribers SET overflow = 0, pending = '[]', pending_bytes = 0 "
                               "WHERE connection_id = ?", (connection_id,))

    def mark_end(self, connection_id: str, end: dict[str, Any]) -> bool:
        """Tell a subscriber still catching up that the execution ended; False if it is live."""
        with self._db.write() as connection:
            changed = connection.execute("UPDATE subscribers SET end_frame = ? WHERE connection_id = ? AND live = 0",
                                         (json.dumps(end), connection_id))
            return changed.rowcount == 1

    # streams --------------------------------------------------------------------------------------

    def open_stream(self, ecs_task_id: str, execution_id: str) -> StreamRecord:
        """Create the execution's stream record, or keep the one there (with what it delivered)."""
        at = self._clock()
        with self._db.write() as connection:
            self._expiry.purge(connection, at)
            row = connection.execute(
                "INSERT INTO streams (ecs_task_id, execution_id, ended, expires_at) VALUES (?, ?, 0, ?) "
                "ON CONFLICT (ecs_task_id) DO UPDATE SET execution_id = excluded.execution_id, "
                "expires_at = excluded.expires_at RETURNING *",
                (ecs_task_id, execution_id, at + STREAM_RECORD_SECONDS)).fetchall()[0]
            return _stream(row)

    def get_stream(self, ecs_task_id: str) -> StreamRecord | None:
        with self._db.read() as connection:
            row = connection.execute("SELECT * FROM streams WHERE ecs_task_id = ?", (ecs_task_id,)).fetchone()
        return _stream(row) if row is not None else None

    def claim(self, ecs_task_id: str, stream: str, expected: Position | None, new: Position) -> bool:
        """Record that the fan-out delivers `stream` up to `new`, if nothing moved it since it
        read `expected` and the execution's end was not sent."""
        column = {"stdout": "stdout_at", "stderr": "stderr_at"}[stream]
        with self._db.write() as connection:
            changed = connection.execute(f"UPDATE streams SET {column} = ? WHERE ecs_task_id = ? AND ended = 0 "
                                         f"AND {column} IS ?", (str(new), ecs_task_id, _position(expected)))
            return changed.rowcount == 1

    def end_stream(self, ecs_task_id: str) -> StreamRecord | None:
        """Mark the execution's end as sent; None if nobody ever watched it."""
        with self._db.write() as connection:
            found = connection.execute("UPDATE streams SET ended = 1 WHERE ecs_task_id = ? RETURNING *",
                                       (ecs_task_id,)).fetchall()
            return _stream(found[0]) if found else None

    def ping(self) -> None:
        with self._db.read() as connection:
            connection.execute("SELECT 1 FROM subscribers LIMIT 1").fetchall()

