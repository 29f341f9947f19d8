"""The Scheduler port on a table of the local database, and the loop that fires it: each
schedule puts its message on the jobs queue at its second, in its time zone, as EventBridge
Scheduler would (one-time schedules delete themselves after firing; a cron tick's message gets
the time it was due where Scheduler's placeholder stands). Firing, advancing or deleting the
schedule and sending the message are one transaction, so a firing is sent exactly once, and
schedules survive a restart: one whose time passed while the runtime was down fires on start.

A cron schedule that missed ticks while the runtime was down fires once, for the latest tick
missed (Scheduler itself would have fired them all; the engine runs a missed tick at most once
anyway)."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable

from chalicelib.domain.messages import CronTick, ScheduleFiring, encode

from ..scheduler import first_fire, from_scheduler_cron, with_scheduled_time
from .db import Database
from .queues import JOBS, LocalQueues

SCHEMA = """
CREATE TABLE IF NOT EXISTS scheduler_schedules (
    name TEXT PRIMARY KEY,
    expression TEXT NOT NULL,
    zone TEXT NOT NULL,
    body TEXT NOT NULL,
    next_fire REAL,
    enabled INTEGER NOT NULL DEFAULT 1,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS scheduler_schedules_due ON scheduler_schedules (next_fire);
"""

AT = "at"  # the expression of a one-time schedule; its moment is next_fire
IDLE_SECONDS = 1.0  # a loop with nothing due looks again this often (schedules put by another process)
MAX_CATCH_UP_TICKS = 100_000


class SqliteScheduler:
    """The Scheduler port on the local database. `cron_tick_seconds` (LOCAL_CRON_TICK_SECONDS, for tests and demos)
    fires cron schedules every N seconds instead of on their expression's ticks."""

    def __init__(self, db: Database, queues: LocalQueues, *, queue: str = JOBS,
                 cron_tick_seconds: float | None = None, clock: Callable[[], float] = time.time,
                 announce: Callable[[], None] | None = None) -> None:
        self._db = db
        self._announce = announce  # tells the firing loop of another process (the runtime's engine)
        self._queues = queues
        self._queue = queue
        self._cron_tick = cron_tick_seconds
        self._clock = clock
        self._db.ensure_schema(SCHEMA)
        self._changed = threading.Condition()
        self._generation = 0  # counts puts, so a put during a round is not slept through
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # the port -----------------------------------------------------------------------------------

    def put_one_time(self, name: str, moment: float, message: ScheduleFiring | CronTick) -> str:
        return self._put(name, AT, "UTC", encode(message), moment)

    def put_cron(self, name: str, expression: str, zone: str | None, message: CronTick, *, enabled: bool = True) -> str:
        from_scheduler_cron(expression)  # refuses what Scheduler (or this stand-in) cannot fire
        at = self._clock()
        due = at + self._cron_tick if self._cron_tick else first_fire(expression, zone or "UTC", at)
        return self._put(name, expression, zone or "UTC", encode(message), due, enabled)

    def is_enabled(self, name: str) -> bool | None:
        with self._db.read() as connection:
            row = connection.execute("SELECT enabled FROM scheduler_schedules WHERE name = ?", (name,)).fetchone()
        return None if row is None else bool(row[0])

    def delete(self, name: str) -> None:
        with self._db.write() as connection:
            connection.execute("DELETE FROM scheduler_schedules WHERE name = ?", (name,))

    def _put(self, name: str, expression: str, zone: str, body: str, due: float | None, enabled: bool = True) -> str:
        with self._db.write() as connection:
            connection.execute(
                "INSERT INTO scheduler_schedules (name, expression, zone, body, next_fire, enabled, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET expression = excluded.expression,"
                " zone = excluded.zone, body = excluded.body, next_fire = excluded.next_fire,"
                " enabled = excluded.enabled, updated_at = excluded.updated_at",
                (name, expression, zone, body, due, int(enabled), self._clock()))
        self.changed()
        if self._announce is not None:
            self._announce()
        return f"local:schedule/{name}"

    def changed(self) -> None:
        """Have the firing loop look at the schedules again (one was put)."""
        with self._changed:
            self._generation += 1
            self._changed.notify_all()

    def next_fire(self, name: str) -> float | None:
        """When the schedule fires next; None when there is no such schedule (or it never fires again)."""
        with self._db.read() as connection:
            row = connection.execute("SELECT next_fire FROM scheduler_schedules WHERE name = ?", (name,)).fetchone()
        return None if row is None else row[0]

    # firing -------------------------------------------------------------------------------------

    def fire_due(self) -> int:
        """Fire every schedule due now; returns how many fired."""
        at = self._clock()
        fired = 0
        with self._db.write() as connection:
            rows = connection.execute("SELECT name, expression, zone, body, next_fire FROM scheduler_schedules"
                                      " WHERE enabled AND next_fire IS NOT NULL AND next_fire <= ? ORDER BY next_fire",
                                      (at,)).fetchall()
            for name, expression, zone, body, due in rows:
                if expression == AT:
                    connection.execute("DELETE FROM scheduler_schedules WHERE name = ?", (name,))
                    tick = due
                else:
                    tick = self._latest_tick(expression, zone, due, at)
                    following = tick + self._cron_tick if self._cron_tick else first_fire(expression, zone, tick)
                    connection.execute("UPDATE scheduler_schedules SET next_fire = ? WHERE name = ?", (following, name))
                self._queues.send_in(connection, self._queue, with_scheduled_time(body, tick))
                fired += 1
        if fired:
            self._queues.wake(self._queue, fired)
        return fired

    def _latest_tick(self, expression: str, zone: str, due: float, at: float) -> float:
        """The latest tick of a cron schedule at or before `at`, from its due one."""
        if self._cron_tick:
            return due + self._cron_tick * int((at - due) // self._cron_tick)
        tick = due
        for _ in range(MAX_CATCH_UP_TICKS):
            following = first_fire(expression, zone, tick)
            if following is None or following > at:
                break
            tick = following
        return tick

    def _earliest(self) -> float | None:
        with self._db.read() as connection:
            row = connection.execute("SELECT MIN(next_fire) FROM scheduler_schedules WHERE enabled").fetchone()
        return None if row is None else row[0]

    def _run(self) -> None:
        from chalicelib.observability import logger

        while not self._stop.is_set():
            with self._changed:
                generation = self._generation
            try:
                self.fire_due()
                earliest = self._earliest()
            except Exception:  # noqa: BLE001 - the loop must outlive a passing error
                logger.exception("local scheduler: a round failed")
                earliest = None
            wait = IDLE_SECONDS if earliest is None else min(IDLE_SECONDS, max(0.0, earliest - self._clock()))
            with self._changed:
                if not self._stop.is_set() and self._generation == generation:
                    self._changed.wait(wait)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="local-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._changed:
            self._changed.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)
