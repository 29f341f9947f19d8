"""Schedules on SQLite (the Schedules port): a job's pending schedule lives on its row; a firing
is taken once, in one transaction with the execution it adds."""
from __future__ import annotations

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
                      job: Job | None = None) -> tuple[Job, Execution | None] | None:
        with self._db.write() as connection:  # read inside the write: the caller's `job` saves nothing here
            job = rows.load_job(connection, job_id)
            if job is None or job.schedule_version != version:
                return None
            if tick_at is not None and job.last_tick is not None and tick_at <= job.last_tick:
                return None
            if make is not None and tick_at is not None and max_active is not None and len(job.active) >= max_active:
                make, skipped = None, True  # the job is full: the tick is counted, not run
            changed: dict[str, Any]
            if tick_at is None:  # a one-shot: the schedule is over
                changed = {"schedule_version": None, "next_run_at": None}
            else:
                changed = {"last_tick": tick_at, "next_run_at": next_run_at}
            if skipped:
                changed |= {"skipped_ticks": job.skipped_ticks + 1, "last_skipped_at": tick_at}
            connection.execute(f"UPDATE jobs SET {', '.join(f'{name} = ?' for name in changed)} WHERE job_id = ?",
                               [*changed.values(), job_id])
            taken = job.with_changes(**changed)
            added = None
            if make is not None:
                added = rows.add_execution(connection, taken, make(job))
                taken = taken.with_changes(execution_count=added.seq, active=taken.active | {added.execution_id})
        return taken, added

    def end_schedule(self, job_id: str, version: str | None = None) -> None:
        condition, values = "job_id = ?", [job_id]
        if version is not None:
            condition += " AND schedule_version = ?"
            values.append(version)
        with self._db.write() as connection:
            connection.execute(f"UPDATE jobs SET schedule_version = NULL, next_run_at = NULL WHERE {condition}", values)

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
