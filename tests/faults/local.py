"""A schedule on the local backend: one SQLite file for the stores, the queues and the scheduler.

The driver asks the database when the next message or schedule is due only when something may
have changed."""
from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from chalicelib.ports import Backend
from infra.local.sqlite.db import Database
from infra.local.sqlite.logs import LocalLogEvents, LocalLogReader, LocalLogStore
from infra.local.sqlite.mail import LocalMailer
from infra.local.sqlite.queues import (
    EVENTS,
    LocalJobQueue,
    LocalNotifyQueue,
    LocalQueueDepths,
    LocalQueues,
    ReceivedMessage,
    create_queues,
)
from infra.local.sqlite.scheduler import SqliteScheduler
from infra.local.sqlite.stores import open_stores
from tests.contract.support import FakeClock

from .deployments import MAIL_SENDER, MAX_RECEIVE_COUNT, QUEUES, SCHEDULER, VISIBILITY_TIMEOUT, Unserved


class _WatchedQueues(LocalQueues):
    """The local queues, telling the driver when their contents may have changed, so it asks
    the database when the next message is due only then."""

    changed = True

    def send_in(self, connection: Any, name: str, body: str, delay_seconds: float = 0) -> str:
        self.changed = True
        return super().send_in(connection, name, body, delay_seconds)

    def receive(self, name: str, max_messages: int = 1, visibility_timeout: float | None = None,
                wait_seconds: float = 0.0) -> list[ReceivedMessage]:
        self.changed = True
        return super().receive(name, max_messages, visibility_timeout, wait_seconds)

    def change_visibility(self, name: str, receipt_handle: str, timeout: float) -> bool:
        self.changed = True
        return super().change_visibility(name, receipt_handle, timeout)


class _Watched:
    """The scheduler port, marking the moments stale after every call that took effect."""

    def __init__(self, target: SqliteScheduler, changed: Callable[[], None]) -> None:
        self._target, self._changed = target, changed

    def __getattr__(self, method: str) -> Any:
        attribute = getattr(self._target, method)
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            result = attribute(*args, **kwargs)
            self._changed()
            return result

        return call


class LocalDeployment:
    name = "local"
    batched = False

    def __init__(self, path: str, clock: FakeClock) -> None:
        self._path = path
        self._clock = clock
        self._moments: dict[str, float] = {}

    @contextmanager
    def opened(self) -> Iterator[Backend]:
        clock = self._clock
        self.db = Database(self._path)
        try:
            stores = open_stores(self.db, clock)
            self.queues = _WatchedQueues(self.db, clock)
            create_queues(self.queues, VISIBILITY_TIMEOUT, MAX_RECEIVE_COUNT)
            self.scheduler = SqliteScheduler(self.db, self.queues, clock=clock)
            log_store = LocalLogStore(self.db)
            yield Backend(
                name="local", jobs=stores.jobs, executions=stores.executions, pools=stores.pools,
                schedules=stores.schedules, statistics=stores.statistics, deliveries=stores.deliveries,
                connections=stores.connections, job_queue=LocalJobQueue(self.queues),
                notify_queue=LocalNotifyQueue(self.queues), queue_depths=LocalQueueDepths(self.queues),
                scheduler=_Watched(self.scheduler, self._stale), runner=Unserved("runner"),
                logs=LocalLogReader(log_store), log_events=LocalLogEvents(log_store), sockets=Unserved("sockets"),
                starter=Unserved("starter"), mailer=LocalMailer(self.db, MAIL_SENDER, clock),
                webhooks=Unserved("webhooks"), read_secret=Unserved("secrets"))
        finally:
            self.db.close()
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(self._path + suffix):
                    os.remove(self._path + suffix)

    def _stale(self) -> None:
        self.queues.changed = True

    def moments(self) -> dict[str, float]:
        if not self.queues.changed:
            return self._moments
        self.queues.changed = False
        with self.db.read() as connection:
            rows = connection.execute("SELECT queue, MIN(visible_at) FROM queue_messages WHERE queue IN (?, ?, ?)"
                                      " GROUP BY queue", QUEUES).fetchall()
            fire = connection.execute("SELECT MIN(next_fire) FROM scheduler_schedules").fetchone()
        moments = {str(row[0]): float(row[1]) for row in rows}
        if fire[0] is not None:
            moments[SCHEDULER] = float(fire[0])
        self._moments = moments
        return moments

    def fire_schedules(self) -> None:
        self.scheduler.fire_due()
        self._stale()

    def receive(self, queue: str) -> list[dict[str, Any]]:
        return [message.to_sqs() for message in self.queues.receive(queue, max_messages=10)]

    def delete(self, queue: str, receipt_handles: list[str]) -> None:
        self.queues.delete_batch(queue, receipt_handles)

    def send_event(self, body: str, delay_seconds: float) -> None:
        self.queues.send(EVENTS, body, delay_seconds)

    def holds_messages(self, queue: str) -> bool:
        return self.queues.depth(queue) != {"visible": 0, "inFlight": 0, "delayed": 0}

    def dead_letters(self) -> dict[str, int]:
        return {name: self.queues.depth(name + "-dlq")["visible"] for name in QUEUES}

    def acting_as(self, function: str) -> AbstractContextManager[None]:
        return contextlib.nullcontext()  # no roles on a laptop

    def refusals(self) -> list[str]:
        return []
