"""Schedules on DynamoDB: the job's pending schedule version and next run, firings taken at
most once in a conditional write, and the sparse index of scheduled jobs by next run."""
from __future__ import annotations

from typing import Any

from ...domain.errors import all_readable, read_each
from ...domain.model import Execution, Job
from ...ports import MakeExecution
from .mapping import execution_to_item, job_from_item
from .statistics import DynamoStatistics
from .tables import SCHEDULE_BUCKET, Tables, get_or_none
from .transactions import retry_on_contention, update_if


class DynamoSchedules:
    def __init__(self, tables: Tables, statistics: DynamoStatistics) -> None:
        self._t = tables
        self._statistics = statistics

    def take_schedule(self, job_id: str, version: str, make: MakeExecution | None, *, tick_at: float | None,
                      next_run_at: float | None, skipped: bool = False, max_active: int | None = None,
                      job: Job | None = None) -> tuple[Job, Execution | None] | None:
        JobM = self._t.Job
        snapshot = job if job is not None and job.job_id == job_id else None  # serves the first attempt only

        def attempt() -> tuple[Job, Execution | None] | None:
            nonlocal snapshot
            job, snapshot = snapshot, None
            if job is None:
                item = get_or_none(JobM, job_id)
                job = job_from_item(item) if item is not None else None
            if job is None or job.schedule_version != version:
                return None
            if tick_at is not None and job.last_tick is not None and tick_at <= job.last_tick:
                return None
            # Decided on the job as read: the write conditions on its execution count, so its
            # active set may have shrunk since, never grown.
            full = tick_at is not None and max_active is not None and len(job.active) >= max_active
            adding = None if full else make
            count = job.execution_count
            condition = (JobM.schedule_version == version) & (JobM.execution_count == count)
            actions: list[Any] = []
            if tick_at is None:
                actions += [JobM.schedule_version.remove(), JobM.schedule_bucket.remove(), JobM.next_run_at.remove()]
            else:
                condition = condition & (JobM.last_tick.does_not_exist() | (JobM.last_tick < tick_at))
                actions.append(JobM.last_tick.set(tick_at))
                if next_run_at is None:
                    actions += [JobM.schedule_bucket.remove(), JobM.next_run_at.remove()]
                else:
                    actions += [JobM.next_run_at.set(next_run_at), JobM.schedule_bucket.set(SCHEDULE_BUCKET)]
            if skipped or (full and make is not None):
                actions += [JobM.skipped_ticks.add(1), JobM.last_skipped_at.set(tick_at)]
            added = None
            with self._t.transact() as tx:
                if adding is not None:
                    added = adding(job).with_changes(seq=count + 1)
                    actions += [JobM.execution_count.set(count + 1), JobM.active.add({added.execution_id})]
                    tx.save(execution_to_item(self._t.Execution, added, count + 1))
                tx.update(JobM(job_id=job_id), actions=actions, condition=condition)
                if added is not None:
                    self._statistics.count(tx, {added.status.value: 1})
            return job, added

        return self._t.guard(lambda: retry_on_contention(attempt))

    def end_schedule(self, job_id: str, version: str | None = None) -> None:
        JobM = self._t.Job
        condition = JobM.job_id.exists() if version is None else (JobM.schedule_version == version)

        self._t.guard(lambda: update_if(
            JobM(job_id=job_id), [JobM.schedule_version.remove(), JobM.schedule_bucket.remove(),
                                  JobM.next_run_at.remove()], condition))

    def scheduled_jobs(self, limit: int = 50, due_before: float | None = None) -> list[Job]:
        JobM = self._t.Job
        condition = JobM.next_run_at < due_before if due_before is not None else None
        return self._t.guard(lambda: all_readable(*read_each(
            JobM.by_next_run.query(SCHEDULE_BUCKET, condition, limit=limit), job_from_item,
            lambda item: str(getattr(item, "job_id", "?")))))
