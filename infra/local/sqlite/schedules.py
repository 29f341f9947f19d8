"""Schedules on SQLite (the Schedules port): a job's pending schedule lives on its row; a firing
is taken once, in one transaction with the execution it adds."""
from __future__ import annotations

import sqlite3
from typing import Any

from chalicelib.domain.errors import all_readable, read_each
from chalicelib.domain.model import Execution, Job
from chalicelib.ports import MakeExecution

from . import rows
from .db import Database

# A job has a pending schedule while it holds a version and a next run: the reconciler's and
# /status's list, soonest first.
PENDING = "schedule_version IS NOT NULL AND next_run_at IS NOT NULL"

SCHEMA = f"""
CREATE INDEX IF NOT EXISTS jobs_by_next_run ON jobs (next_run_at) WHERE {PENDING};
"""


class SqliteSchedules:
    def __init__(self, db: Database) -> None:
        self._db = db

    def take_schedule(self, job_id: str, version: str, make: MakeExecution | None, *, tick_at: float | None,
                      next_run_at: float | None, skipped: bool = False, max_active: int | None = None,
                      job: Job | None = None, skip_reason: str | None = None, missed: int = 0,
                      buffer_at: float | None = None) -> tuple[Job, Execution | None] | None:
        with self._db.write() as connection:  # read inside the write: the caller's `job` saves nothing here
            job = rows.load_job(connection, job_id)
            if job is None or job.schedule_version != version:
                return None
            if tick_at is None and job.paused:
                return None  # a paused one-shot stays pending
            if tick_at is not None and job.last_tick is not None and tick_at <= job.last_tick:
                return None
            changed: dict[str, Any]
            if tick_at is None:  # a one-shot: the schedule is over
                changed = {"schedule_version": None, "next_run_at": None}
            else:
                changed = {"last_tick": tick_at, "next_run_at": next_run_at}
            skips = missed
            if missed:
                changed |= {"last_skipped_at": tick_at, "last_skip_reason": "missed"}
            if make is not None and tick_at is not None and job.paused:
                make, skipped, skip_reason = None, True, "paused"
                changed["next_run_at"] = job.next_run_at
            elif make is not None and tick_at is not None and max_active is not None and len(job.active) >= max_active:
                if buffer_at is not None and job.buffered_tick is None:
                    make = None  # overlap buffer: the tick waits for the job's execution to end
                    changed |= {"buffered_tick": tick_at, "buffered_at": buffer_at}
                else:
                    make, skipped = None, True  # the job is full: the tick is counted, not run
            if make is not None and job.buffered_tick is not None:
                changed |= {"buffered_tick": None, "buffered_at": None}  # replaced by this later tick
                skips += 1
                changed |= {"last_skipped_at": job.buffered_tick, "last_skip_reason": "a later tick ran first"}
            if skipped:
                skips += 1
                changed |= {"last_skipped_at": tick_at if tick_at is not None else job.next_run_at,
                            "last_skip_reason": skip_reason or "busy"}
            if skips:
                changed["skipped_ticks"] = job.skipped_ticks + skips
            return _took(connection, job, changed, make)

    def take_buffered(self, job_id: str, version: str, tick_at: float, make: MakeExecution | None,
                      skip_reason: str | None = None) -> tuple[Job, Execution | None] | None:
        with self._db.write() as connection:
            job = rows.load_job(connection, job_id)
            if job is None or job.schedule_version != version or job.buffered_tick != tick_at:
                return None
            if job.paused:
                make, skip_reason = None, "paused"
            if make is not None and job.active:
                return None  # still running: the tick waits on
            changed: dict[str, Any] = {"buffered_tick": None, "buffered_at": None}
            if make is None:
                changed |= {"skipped_ticks": job.skipped_ticks + 1, "last_skipped_at": tick_at,
                            "last_skip_reason": skip_reason or "dropped"}
            return _took(connection, job, changed, make)

    def pause_schedule(self, job_id: str, at: float) -> Job | None:
        with self._db.write() as connection:
            connection.execute(f"UPDATE jobs SET paused_at = ? WHERE job_id = ? AND paused_at IS NULL AND {PENDING}",
                               (at, job_id))
            job = rows.load_job(connection, job_id)
        return job if job is not None and job.paused and job.schedule_version is not None else None

    def skip_ticks(self, job_id: str, version: str, *, paused: bool, last_tick: float | None, count: int,
                   skipped_at: float | None, reason: str, next_run_at: float | None, through: float | None = None,
                   resume: bool = False) -> Job | None:
        with self._db.write() as connection:
            job = rows.load_job(connection, job_id)
            if job is None or job.schedule_version != version or job.paused != paused or job.last_tick != last_tick:
                return None
            changed: dict[str, Any] = {"next_run_at": next_run_at}
            if next_run_at is None:
                changed |= {"schedule_version": None, "buffered_tick": None, "buffered_at": None}
            if count:
                changed |= {"skipped_ticks": job.skipped_ticks + count, "last_skipped_at": skipped_at,
                            "last_skip_reason": reason}
            if through is not None:
                changed["last_tick"] = through
            if resume:
                changed["paused_at"] = None
            connection.execute(f"UPDATE jobs SET {', '.join(f'{name} = ?' for name in changed)} WHERE job_id = ?",
                               [*changed.values(), job_id])
        return job.with_changes(**changed)

    def end_schedule(self, job_id: str, version: str | None = None) -> None:
        condition, values = "job_id = ?", [job_id]
        if version is not None:
            condition += " AND schedule_version = ?"
            values.append(version)
        with self._db.write() as connection:
            connection.execute("UPDATE jobs SET schedule_version = NULL, next_run_at = NULL, buffered_tick = NULL, "
                               f"buffered_at = NULL WHERE {condition}", values)

    def scheduled_jobs(self, limit: int = 50, due_before: float | None = None) -> list[Job]:
        condition, values = PENDING, []
        if due_before is not None:
            condition += " AND next_run_at < ?"
            values.append(due_before)
        with self._db.read() as connection:
            found = connection.execute(f"SELECT * FROM jobs WHERE {condition} ORDER BY next_run_at LIMIT ?",
                                       [*values, limit]).fetchall()
            active = rows.active_of(connection, [row["job_id"] for row in found])
        return all_readable(*read_each(found, lambda row: rows.job_of(row, active[row["job_id"]]),
                                       lambda row: str(row["job_id"])))


def _took(connection: sqlite3.Connection, job: Job, changed: dict[str, Any],
          make: MakeExecution | None) -> tuple[Job, Execution | None]:
    """Write what taking a tick changed on the job and, with `make`, add the execution it starts."""
    connection.execute(f"UPDATE jobs SET {', '.join(f'{name} = ?' for name in changed)} WHERE job_id = ?",
                       [*changed.values(), job.job_id])
    taken = job.with_changes(**changed)
    if make is None:
        return taken, None
    added = rows.add_execution(connection, taken, make(job))
    return taken.with_changes(execution_count=added.seq, active=taken.active | {added.execution_id}), added
