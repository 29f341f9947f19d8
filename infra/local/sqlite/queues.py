"""Named queues in the local database with the SQS semantics the handlers rely on, and the
queue ports (JobQueue, NotifyQueue, QueueDepths) on top of them.

What is kept of SQS: delays in whole seconds (at most 15 minutes), a visibility timeout per
queue (or per receive), ApproximateReceiveCount, delete and change of visibility by receipt
handle (the latest receive's only), and redrive: a message received more often than its
queue's max receive count is moved to the dead-letter queue instead of being delivered again.
Ordering is by visibility time then sending order (SQS standard queues promise none).

A receiver that finds nothing waits on its queue's condition variable, which a send, a change
of visibility or a move to the queue notifies (one waiter per message: a burst of sends does
not wake every poller of every queue), bounded by the earliest moment a delayed or invisible
message becomes visible, so it wakes as soon as a message can be received rather than on a
poll. Looking is a read; only a receive that finds a visible message takes the write lock."""
from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from chalicelib.domain.limits import SQS_MAX_BATCH, SQS_MAX_DELAY_SECONDS
from chalicelib.domain.messages import JobMessage, Notification, encode
from chalicelib.ports import QueueDepth

from .db import Database

SCHEMA = """
CREATE TABLE IF NOT EXISTS queues (
    name TEXT PRIMARY KEY,
    visibility_timeout REAL NOT NULL,
    dead_letter TEXT,
    max_receive_count INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS queue_messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    queue TEXT NOT NULL,
    body TEXT NOT NULL,
    sent_at REAL NOT NULL,
    visible_at REAL NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    first_received_at REAL,
    receipt TEXT
);
CREATE INDEX IF NOT EXISTS queue_messages_ready ON queue_messages (queue, visible_at, seq);
"""

# Without a notification (a message sent by another process on the same file) a waiting
# receiver still looks again this often.
MAX_IDLE_SECONDS = 1.0


class _Waiters:
    """The receivers waiting on one queue."""

    def __init__(self) -> None:
        self.condition = threading.Condition()
        self.generation = 0  # counts signals, so one that came while a receiver looked is not slept through
        self.waiting = 0


class QueueNotFound(KeyError):
    """No queue of that name was created in this database."""


@dataclass(frozen=True)
class ReceivedMessage:
    message_id: str
    receipt_handle: str
    body: str
    receive_count: int
    sent_at: float
    first_received_at: float

    def to_sqs(self) -> dict[str, Any]:
        """The message as SQS's ReceiveMessage answers it (with AttributeNames=All)."""
        return {
            "MessageId": self.message_id,
            "ReceiptHandle": self.receipt_handle,
            "Body": self.body,
            "MD5OfBody": hashlib.md5(self.body.encode("utf-8")).hexdigest(),
            "Attributes": {
                "ApproximateReceiveCount": str(self.receive_count),
                "SentTimestamp": str(int(self.sent_at * 1000)),
                "ApproximateFirstReceiveTimestamp": str(int(self.first_received_at * 1000)),
                "SenderId": "local",
            },
        }


def whole_delay(seconds: float) -> int:
    """SQS delays are whole seconds between 0 and 15 minutes; longer ones are clipped."""
    return max(0, min(SQS_MAX_DELAY_SECONDS, int(round(seconds))))


class LocalQueues:
    """Every queue of one database. Thread-safe; receivers in this process are woken by sends
    made in this process, or by `wake` when another process announces its sends (they look again
    at least every MAX_IDLE_SECONDS for sends nobody announced)."""

    def __init__(self, db: Database, clock: Any = time.time,
                 announce: Callable[[str, int], None] | None = None) -> None:
        self._db = db
        self._clock = clock
        self._announce = announce  # tells the receivers of another process (the runtime's engine)
        self._db.ensure_schema(SCHEMA)
        self._waiters: dict[str, _Waiters] = {}
        self._waiters_lock = threading.Lock()
        self._closed = False
        self._config: dict[str, tuple[float, str | None, int]] = {}

    # administration -----------------------------------------------------------------------------

    def create(self, name: str, visibility_timeout: float = 30.0, dead_letter: str | None = None,
               max_receive_count: int = 0) -> None:
        """Create the queue, or update its settings (create is idempotent, as in SQS)."""
        with self._db.write() as connection:
            connection.execute(
                "INSERT INTO queues (name, visibility_timeout, dead_letter, max_receive_count) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET visibility_timeout = excluded.visibility_timeout,"
                " dead_letter = excluded.dead_letter, max_receive_count = excluded.max_receive_count",
                (name, visibility_timeout, dead_letter, max_receive_count))
        self._config[name] = (visibility_timeout, dead_letter, max_receive_count)

    def _settings(self, connection: sqlite3.Connection, name: str) -> tuple[float, str | None, int]:
        known = self._config.get(name)
        if known is not None:
            return known
        row = connection.execute("SELECT visibility_timeout, dead_letter, max_receive_count FROM queues"
                                 " WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise QueueNotFound(name)
        self._config[name] = (float(row[0]), row[1], int(row[2]))
        return self._config[name]

    def _of(self, name: str) -> _Waiters:
        waiters = self._waiters.get(name)
        if waiters is None:
            with self._waiters_lock:
                waiters = self._waiters.setdefault(name, _Waiters())
        return waiters

    def waiting(self, name: str) -> int:
        """How many receivers wait for a message of the queue right now."""
        waiters = self._of(name)
        with waiters.condition:
            return waiters.waiting

    def close(self) -> None:
        """Wake every waiting receiver for good (they return empty-handed)."""
        self._closed = True
        with self._waiters_lock:
            every = list(self._waiters.values())
        for waiters in every:
            with waiters.condition:
                waiters.generation += 1
                waiters.condition.notify_all()

    def _notify(self, name: str, count: int = 1) -> None:
        waiters = self._of(name)
        with waiters.condition:
            waiters.generation += 1
            waiters.condition.notify(count)
        if self._announce is not None:
            self._announce(name, count)

    # sending ------------------------------------------------------------------------------------

    def send(self, name: str, body: str, delay_seconds: float = 0) -> str:
        with self._db.write() as connection:
            message_id = self.send_in(connection, name, body, delay_seconds)
        self._notify(name)
        return message_id

    def send_batch(self, name: str, bodies: Sequence[tuple[str, float]]) -> list[str]:
        """Send (body, delay) pairs in one transaction: all of them or none."""
        with self._db.write() as connection:
            ids = [self.send_in(connection, name, body, delay) for body, delay in bodies]
        self._notify(name, len(ids))
        return ids

    def send_in(self, connection: sqlite3.Connection, name: str, body: str, delay_seconds: float = 0) -> str:
        """Send inside the caller's write transaction (the caller then calls `wake`)."""
        self._settings(connection, name)
        message_id = str(uuid.uuid4())
        at = self._clock()
        connection.execute("INSERT INTO queue_messages (id, queue, body, sent_at, visible_at) VALUES (?, ?, ?, ?, ?)",
                           (message_id, name, body, at, at + whole_delay(delay_seconds)))
        return message_id

    def wake(self, name: str, count: int = 1) -> None:
        """Tell waiting receivers that a transaction the caller committed sent `count` messages
        to the queue."""
        self._notify(name, count)

    # receiving ----------------------------------------------------------------------------------

    def receive(self, name: str, max_messages: int = 1, visibility_timeout: float | None = None,
                wait_seconds: float = 0.0) -> list[ReceivedMessage]:
        """Up to `max_messages` (at most 10) visible messages, hidden for the visibility timeout.
        With `wait_seconds`, waits for one to become visible (long polling)."""
        deadline = time.monotonic() + max(0.0, wait_seconds)
        waiters = self._of(name)
        while True:
            with waiters.condition:
                generation = waiters.generation
            received, next_visible = self._take(name, max(1, min(SQS_MAX_BATCH, max_messages)), visibility_timeout)
            if received:
                return received
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._closed:
                return []
            wait = min(remaining, MAX_IDLE_SECONDS)
            if next_visible is not None:
                wait = min(wait, max(0.0, next_visible - self._clock()))
            with waiters.condition:
                if waiters.generation == generation and not self._closed:
                    waiters.waiting += 1
                    try:
                        waiters.condition.wait(wait)
                    finally:
                        waiters.waiting -= 1

    def _take(self, name: str, limit: int, visibility_timeout: float | None) -> tuple[list[ReceivedMessage], float | None]:
        with self._db.read() as connection:
            row = connection.execute("SELECT MIN(visible_at) FROM queue_messages WHERE queue = ?", (name,)).fetchone()
        if row[0] is None or row[0] > self._clock():
            return [], row[0]  # nothing to receive: no write lock taken
        with self._db.write() as connection:
            timeout, dead_letter, max_receives = self._settings(connection, name)
            hidden_for = timeout if visibility_timeout is None else max(0.0, visibility_timeout)
            at = self._clock()
            rows = connection.execute(
                "SELECT seq, id, body, sent_at, receive_count, first_received_at FROM queue_messages"
                " WHERE queue = ? AND visible_at <= ? ORDER BY visible_at, seq LIMIT ?",
                (name, at, limit)).fetchall()
            received: list[ReceivedMessage] = []
            moved = 0
            for seq, message_id, body, sent_at, count, first in rows:
                if dead_letter and max_receives and count >= max_receives:
                    # Received too often: it goes to the dead-letter queue, visible there at once.
                    connection.execute("UPDATE queue_messages SET queue = ?, visible_at = ?, receipt = NULL"
                                       " WHERE seq = ?", (dead_letter, at, seq))
                    moved += 1
                    continue
                receipt = f"{message_id}#{uuid.uuid4().hex}"
                first = first if first is not None else at
                connection.execute("UPDATE queue_messages SET receive_count = ?, visible_at = ?, receipt = ?,"
                                   " first_received_at = ? WHERE seq = ?",
                                   (count + 1, at + hidden_for, receipt, first, seq))
                received.append(ReceivedMessage(message_id, receipt, body, count + 1, sent_at, first))
            next_visible = None
            if not received:
                row = connection.execute("SELECT MIN(visible_at) FROM queue_messages WHERE queue = ?",
                                         (name,)).fetchone()
                next_visible = row[0]
        if moved and dead_letter:
            self._notify(dead_letter, moved)
        return received, next_visible

    def delete(self, name: str, receipt_handle: str) -> bool:
        """Delete a received message; False when the handle is not its latest receive's."""
        return self.delete_batch(name, [receipt_handle]) == 1

    def delete_batch(self, name: str, receipt_handles: Sequence[str]) -> int:
        if not receipt_handles:
            return 0
        with self._db.write() as connection:
            deleted = 0
            for handle in receipt_handles:
                deleted += connection.execute("DELETE FROM queue_messages WHERE queue = ? AND receipt = ?",
                                              (name, handle)).rowcount
        return deleted

    def change_visibility(self, name: str, receipt_handle: str, timeout: float) -> bool:
        """Hide the message `timeout` seconds from now (0: visible at once)."""
        with self._db.write() as connection:
            changed = connection.execute("UPDATE queue_messages SET visible_at = ? WHERE queue = ? AND receipt = ?",
                                         (self._clock() + max(0.0, timeout), name, receipt_handle)).rowcount
        if changed:
            self._notify(name)
        return changed == 1

    # depth --------------------------------------------------------------------------------------

    def depth(self, name: str) -> QueueDepth:
        at = self._clock()
        with self._db.read() as connection:
            self._settings(connection, name)
            row = connection.execute(
                "SELECT COALESCE(SUM(visible_at <= ?), 0),"
                " COALESCE(SUM(visible_at > ? AND receive_count > 0), 0),"
                " COALESCE(SUM(visible_at > ? AND receive_count = 0), 0)"
                " FROM queue_messages WHERE queue = ?", (at, at, at, name)).fetchone()
        return QueueDepth(visible=int(row[0]), inFlight=int(row[1]), delayed=int(row[2]))

    def ping(self) -> None:
        self._db.ping()


# The deployment's queues, by role, as in AWS: each with its dead-letter queue.
JOBS, EVENTS, NOTIFY = "fastlane-jobs", "fastlane-events", "fastlane-notify"
DEAD_LETTER_SUFFIX = "-dlq"
ROLES = {"jobs": JOBS, "events": EVENTS, "notify": NOTIFY}
# At 360 s of visibility in AWS, ten receives are an hour of AWS failing (docs/notifications.md).
NOTIFY_MAX_RECEIVE_COUNT = 10


def max_receives(role: str, max_receive_count: int) -> int:
    """Deliveries of a message of the `role` queue (jobs, events, notify) before its dead-letter
    queue, in both backends: `max_receive_count`, and at least NOTIFY_MAX_RECEIVE_COUNT for the
    notify queue (the template's NotifyMaxReceiveCount): a lost launch or task event is made
    good by the reconciler, a notification message only by its redeliveries."""
    return max(max_receive_count, NOTIFY_MAX_RECEIVE_COUNT) if role == "notify" else max_receive_count


def create_queues(queues: LocalQueues, visibility_timeout: float = 30.0, max_receive_count: int = 5) -> None:
    """The jobs, events and notify queues and their dead-letter queues."""
    for role, name in ROLES.items():
        queues.create(name + DEAD_LETTER_SUFFIX, visibility_timeout)
        queues.create(name, visibility_timeout, name + DEAD_LETTER_SUFFIX, max_receives(role, max_receive_count))


class LocalJobQueue:
    """The JobQueue port on the local jobs queue."""

    def __init__(self, queues: LocalQueues, name: str = JOBS) -> None:
        self._queues = queues
        self._name = name

    def send(self, message: JobMessage, delay_seconds: float = 0) -> str:
        return self._queues.send(self._name, encode(message), delay_seconds)

    def pending(self) -> int:
        depth = self._queues.depth(self._name)
        return depth.visible + depth.inFlight + depth.delayed

    def ping(self) -> None:
        self._queues.ping()


class LocalNotifyQueue:
    """The NotifyQueue port on the local notify queue."""

    def __init__(self, queues: LocalQueues, name: str = NOTIFY) -> None:
        self._queues = queues
        self._name = name

    def send(self, message: Notification, delay_seconds: float = 0) -> str:
        return self._queues.send(self._name, encode(message), delay_seconds)

    def send_all(self, messages: Sequence[Notification]) -> None:
        if messages:
            self._queues.send_batch(self._name, [(encode(message), 0) for message in messages])


class LocalQueueDepths:
    """The QueueDepths port: each queue and dead-letter queue by role."""

    def __init__(self, queues: LocalQueues) -> None:
        self._queues = queues

    def depths(self) -> dict[str, QueueDepth]:
        answer: dict[str, QueueDepth] = {}
        for role, name in ROLES.items():
            answer[role] = self._queues.depth(name)
            answer[role + "DeadLetter"] = self._queues.depth(name + DEAD_LETTER_SUFFIX)
        return answer
