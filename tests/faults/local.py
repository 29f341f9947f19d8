"""A schedule on the local backend: the local runtime's own backend on one SQLite file, with what
the schedule simulates replaced (ECS, websockets, webhooks, secrets).

The driver asks the database when the next message or schedule is due only when something may
have changed."""
from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from chalicelib.config import Settings
from chalicelib.ports import Backend
from infra.local.sqlite.backend import handles_of, open_local_backend
from infra.local.sqlite.queues import EVENTS, LocalQueues
from infra.local.sqlite.scheduler import SqliteScheduler
from tests.contract.support import FakeClock

from .deployments import MAX_RECEIVE_COUNT, QUEUES, SCHEDULER, VISIBILITY_TIMEOUT, Unserved


class _Changes:
    """Whether the queues' contents may have changed since the driver last looked."""

    changed = True


def _watch(queues: LocalQueues, changes: _Changes) -> None:
    """The backend's queues, telling the driver when their contents may have changed, so it asks
    the database when the next message is due only then (the methods every queue change goes
    through, wrapped on this instance)."""
    for name in ("send_in", "receive", "change_visibility"):
        method = getattr(queues, name)

        def marked(*args: Any, _method: Callable[..., Any] = method, **kwargs: Any) -> Any:
            changes.changed = True
            return _method(*args, **kwargs)

        setattr(queues, name, marked)


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
        # The schedule's settings, read now: the process's cached ones may be another test's.
        local = open_local_backend(self._path, Settings.from_environment(), exclusive=False,
                                   visibility_timeout=VISIBILITY_TIMEOUT,
                                   max_receive_count=MAX_RECEIVE_COUNT, clock=self._clock)
        handles = handles_of(local)
        self.db, self.queues, self.scheduler = handles.db, handles.queues, handles.scheduler
        self.changes = _Changes()
        _watch(self.queues, self.changes)
        try:
            yield dataclasses.replace(
                local, scheduler=_Watched(self.scheduler, self._stale), runner=Unserved("runner"),
                sockets=Unserved("sockets"), starter=Unserved("starter"), webhooks=Unserved("webhooks"),
                read_secret=Unserved("secrets"), extras={})
        finally:
            handles.close()
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(self._path + suffix):
                    os.remove(self._path + suffix)

    def _stale(self) -> None:
        self.changes.changed = True

    def moments(self) -> dict[str, float]:
        if not self.changes.changed:
            return self._moments
        self.changes.changed = False
        with self.db.read() as connection:
            rows = connection.execute("SELECT queue, MIN(visible_at) FROM queue_messages WHERE queue IN (?, ?, ?)"
                                      " GROUP BY queue", QUEUES).fetchall()
            fire = connection.execute("SELECT MIN(next_fire) FROM scheduler_schedules WHERE enabled").fetchone()
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
