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


def _is(attribute: Any, value: Any) -> Any:
    """Condition: the attribute holds `value` (None: it does not exist)."""
    return attribute.does_not_exist() if value is None else (attribute == value)


def _set(attribute: Any, value: Any) -> Any:
    """Set the attribute, or remove it for None."""
    return attribute.remove() if value is None else attribute.set(value)


class DynamoSchedules:
    def __init__(self, tables: Tables, statistics: DynamoStatistics) -> None:
        self._t = tables
        self._statistics = statistics

    def take_schedule(self, job_id: str, version: str, make: MakeExecution | None, *, tick_at: float | None,
                      next_run_at: float | None, skipped: bool = False, max_active: int | None = None,
                      job: Job | None = None, skip_reason: str | None = None, missed: int = 0,
                      buffer_at: float | None = None) -> tuple[Job, Execution | None] | None:
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
            if tick_at is None and job.paused:
                return None  # a paused one-shot stays pending
            if tick_at is not None and job.last_tick is not None and tick_at <= job.last_tick:
                return None
            # Decided on the job as read: the write conditions on its execution count, its pause
            # and its waiting tick, so its active set may have shrunk since, never grown.
            adding, skipping, reason = make, skipped, skip_reason
            changed: dict[str, Any] = {}
            if make is not None and tick_at is not None and job.paused:
                adding, skipping, reason = None, True, "paused"
            elif make is not None and tick_at is not None and max_active is not None and len(job.active) >= max_active:
                adding = None
                if buffer_at is not None and job.buffered_tick is None:
                    changed.update(buffered_tick=tick_at, buffered_at=buffer_at)  # waits for the execution to end
                else:
                    skipping = True  # the job is full: the tick is counted, not run
            skips, skipped_at, reason_now = missed, tick_at, "missed"
            if adding is not None and job.buffered_tick is not None:
                changed.update(buffered_tick=None, buffered_at=None)  # replaced by this later tick
                skips, skipped_at, reason_now = skips + 1, job.buffered_tick, "a later tick ran first"
            if skipping:
                skips, skipped_at = skips + 1, tick_at if tick_at is not None else job.next_run_at
                reason_now = reason or "busy"
            count = job.execution_count
            condition = ((JobM.schedule_version == version) & (JobM.execution_count == count)
                         & _is(JobM.paused_at, job.paused_at) & _is(JobM.buffered_tick, job.buffered_tick))
            actions: list[Any] = [_set(getattr(JobM, name), value) for name, value in changed.items()]
            if tick_at is None:
                actions += [JobM.schedule_version.remove(), JobM.schedule_bucket.remove(), JobM.next_run_at.remove()]
            else:
                condition = condition & (JobM.last_tick.does_not_exist() | (JobM.last_tick < tick_at))
                actions.append(JobM.last_tick.set(tick_at))
                following = job.next_run_at if job.paused else next_run_at
                if following is None:
                    actions += [JobM.schedule_bucket.remove(), JobM.next_run_at.remove()]
                else:
                    actions += [JobM.next_run_at.set(following), JobM.schedule_bucket.set(SCHEDULE_BUCKET)]
            if skips:
                actions += [JobM.skipped_ticks.add(skips), _set(JobM.last_skipped_at, skipped_at),
                            JobM.last_skip_reason.set(reason_now)]  # the last reason: one write tells one
            return job.with_changes(**changed), self._write(job, adding, actions, condition)

        return self._t.guard(lambda: retry_on_contention(attempt))

    def _write(self, job: Job, adding: MakeExecution | None, actions: list[Any], condition: Any) -> Execution | None:
        """One transaction: the job's `actions` under `condition` and, with `adding`, the execution a
        tick starts (its number next, in the job's active set, counted); returns that execution."""
        JobM, count = self._t.Job, job.execution_count
        added = None
        with self._t.transact() as tx:
            if adding is not None:
                added = adding(job).with_changes(seq=count + 1)
                actions = [*actions, JobM.execution_count.set(count + 1), JobM.active.add({added.execution_id})]
                tx.save(execution_to_item(self._t.Execution, added, count + 1))
            tx.update(JobM(job_id=job.job_id), actions=actions, condition=condition)
            if added is not None:
                self._statistics.count(tx, {added.status.value: 1})
        return added

    def take_buffered(self, job_id: str, version: str, tick_at: float, make: MakeExecution | None,
                      skip_reason: str | None = None) -> tuple[Job, Execution | None] | None:
        JobM = self._t.Job

        def attempt() -> tuple[Job, Execution | None] | None:
            item = get_or_none(JobM, job_id)
            job = job_from_item(item) if item is not None else None
            if job is None or job.schedule_version != version or job.buffered_tick != tick_at:
                return None
            adding, reason = (None, "paused") if job.paused else (make, skip_reason)
            if adding is not None and job.active:
                return None  # still running: the tick waits on
            count = job.execution_count
            condition = ((JobM.schedule_version == version) & (JobM.buffered_tick == tick_at)
                         & (JobM.execution_count == count) & _is(JobM.paused_at, job.paused_at))
            actions: list[Any] = [JobM.buffered_tick.remove(), JobM.buffered_at.remove()]
            if adding is None:
                actions += [JobM.skipped_ticks.add(1), JobM.last_skipped_at.set(tick_at),
                            JobM.last_skip_reason.set(reason or "dropped")]
            else:
                condition = condition & JobM.active.does_not_exist()
            return job.with_changes(buffered_tick=None, buffered_at=None), self._write(job, adding, actions, condition)

        return self._t.guard(lambda: retry_on_contention(attempt))

    def pause_schedule(self, job_id: str, at: float) -> Job | None:
        JobM = self._t.Job

        def write() -> Job | None:
            # Only the first pause writes: pausedAt says since when, whatever pauses follow.
            update_if(JobM(job_id=job_id), [JobM.paused_at.set(at)],
                      JobM.paused_at.does_not_exist() & JobM.schedule_version.exists() & JobM.next_run_at.exists())
            item = get_or_none(JobM, job_id)
            job = job_from_item(item) if item is not None else None
            return job if job is not None and job.paused and job.schedule_version is not None else None

        return self._t.guard(write)

    def skip_ticks(self, job_id: str, version: str, *, paused: bool, last_tick: float | None, count: int,
                   skipped_at: float | None, reason: str, next_run_at: float | None, through: float | None = None,
                   resume: bool = False) -> Job | None:
        JobM = self._t.Job
        condition = ((JobM.schedule_version == version) & (JobM.paused_at.exists() if paused
                                                           else JobM.paused_at.does_not_exist())
                     & _is(JobM.last_tick, last_tick))
        actions: list[Any] = []
        if next_run_at is None:
            actions += [JobM.schedule_version.remove(), JobM.schedule_bucket.remove(), JobM.next_run_at.remove(),
                        JobM.buffered_tick.remove(), JobM.buffered_at.remove()]
        else:
            actions += [JobM.next_run_at.set(next_run_at), JobM.schedule_bucket.set(SCHEDULE_BUCKET)]
        if count:
            actions += [JobM.skipped_ticks.add(count), _set(JobM.last_skipped_at, skipped_at),
                        JobM.last_skip_reason.set(reason)]
        if through is not None:
            actions.append(JobM.last_tick.set(through))
        if resume:
            actions.append(JobM.paused_at.remove())

        def write() -> Job | None:
            if not update_if(JobM(job_id=job_id), actions, condition):
                return None
            item = get_or_none(JobM, job_id)
            return job_from_item(item) if item is not None else None

        return self._t.guard(write)

    def end_schedule(self, job_id: str, version: str | None = None) -> None:
        JobM = self._t.Job
        condition = JobM.job_id.exists() if version is None else (JobM.schedule_version == version)

        self._t.guard(lambda: update_if(
            JobM(job_id=job_id), [JobM.schedule_version.remove(), JobM.schedule_bucket.remove(),
                                  JobM.next_run_at.remove(), JobM.buffered_tick.remove(), JobM.buffered_at.remove()],
            condition))

    def scheduled_jobs(self, limit: int = 50, due_before: float | None = None) -> list[Job]:
        JobM = self._t.Job
        condition = JobM.next_run_at < due_before if due_before is not None else None
        return self._t.guard(lambda: all_readable(*read_each(
            JobM.by_next_run.query(SCHEDULE_BUCKET, condition, limit=limit), job_from_item,
            lambda item: str(getattr(item, "job_id", "?")))))
