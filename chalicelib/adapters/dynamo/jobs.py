"""Tasks and jobs on DynamoDB: creating, replacing, reading and listing them, and adding an
execution to a job. Page counts come from counters kept in the same transactions as the
writes, so no request counts or scans items."""
from __future__ import annotations

from typing import Any

from pynamodb.exceptions import TransactWriteError

from ...domain.errors import Conflict
from ...domain.model import Execution, Job, JobSpec, Page, Task, seq_range
from ...ports import MakeExecution
from .mapping import execution_to_item, job_from_item, job_to_item, task_from_item
from .statistics import DynamoStatistics
from .tables import TASK_LIST_BUCKET, TASKS_COUNTER_ID, Tables, get_or_none
from .transactions import CONDITION_FAILED, cancellation_reasons, retry_on_contention


def set_is(attribute: Any, values: frozenset[str]) -> Any:
    """Condition: a string-set attribute holds exactly `values` (an empty set is no attribute)."""
    return (attribute == set(values)) if values else attribute.does_not_exist()


class DynamoJobs:
    def __init__(self, tables: Tables, statistics: DynamoStatistics) -> None:
        self._t = tables
        self._statistics = statistics

    def save_new_job(self, job: Job, execution: Execution | None) -> tuple[Job, Execution | None]:
        TaskM, JobM = self._t.Task, self._t.Job

        def attempt() -> tuple[Job, Execution | None]:
            task = get_or_none(TaskM, job.task_id)
            tx = self._t.transact()
            if task is None:
                counter = get_or_none(TaskM, TASKS_COUNTER_ID)
                total = int(counter.total) if counter is not None and counter.total else 0
                tx.update(TaskM(task_id=TASKS_COUNTER_ID), actions=[TaskM.total.set(total + 1)],
                          condition=(TaskM.total == total) if total else TaskM.total.does_not_exist())
                tx.save(TaskM(task_id=job.task_id, list_bucket=TASK_LIST_BUCKET, seq=total + 1,
                              created_at=job.created_at, last_modified_at=job.created_at, jobs_count=1),
                        condition=TaskM.task_id.does_not_exist())
                seq = 1
            else:
                jobs = int(task.jobs_count or 0)
                tx.update(TaskM(task_id=job.task_id),
                          actions=[TaskM.jobs_count.set(jobs + 1), TaskM.last_modified_at.set(job.created_at)],
                          condition=(TaskM.jobs_count == jobs))
                seq = jobs + 1
            active = frozenset({execution.execution_id}) if execution else frozenset()
            saved = job.with_changes(seq=seq, execution_count=1 if execution else 0, active=active)
            tx.save(self._job_item(saved), condition=JobM.job_id.does_not_exist())
            if execution is not None:
                tx.save(execution_to_item(self._t.Execution, execution, 1))
            self._statistics.count(tx, {"tasks": int(task is None), "jobs": 1, "scheduled": int(job.spec.scheduled),
                                        **({execution.status.value: 1} if execution else {})})
            try:
                tx._commit()  # what leaving `with` does; here its refusal is read first
            except TransactWriteError as error:
                # Which condition failed is not always reported per item (moto names the first);
                # an existing job is a Conflict, anything else is contention on the task's counters.
                if CONDITION_FAILED in cancellation_reasons(error) and get_or_none(JobM, job.job_id) is not None:
                    raise Conflict(f"Job '{job.job_id}' exists already.", field="jobId") from error
                raise
            return saved, (execution.with_changes(seq=1) if execution else None)

        return self._t.guard(lambda: retry_on_contention(attempt))

    def _job_item(self, job: Job) -> Any:
        item = job_to_item(self._t.Job, job)
        item.scheduled = job.spec.scheduled  # what replace_job conditions the scheduled count on
        return item

    def replace_job(self, job: Job, execution: Execution | None) -> tuple[Job, Execution | None]:
        TaskM, JobM = self._t.Task, self._t.Job

        def attempt() -> tuple[Job, Execution | None]:
            current = get_or_none(JobM, job.job_id)
            if current is None or current.task_id != job.task_id:
                raise Conflict(f"job {job.job_id} changed while it was being replaced; try again", field="jobId")
            count = int(current.execution_count or 0)
            seq = count + 1
            active = frozenset(current.active or ())
            saved = job.with_changes(
                seq=int(current.seq), created_at=float(current.created_at),
                execution_count=seq if execution else count, retry_count=0,
                active=active | {execution.execution_id} if execution else active,
                stopped=False, last_tick=current.last_tick,
            )
            was_scheduled = JobSpec.from_dict(current.spec).scheduled
            # The scheduled count moves from the flag read here, so the write is conditional on it:
            # two replacements at once cannot both move it (items of older versions have no flag).
            flag = JobM.scheduled.does_not_exist() if current.scheduled is None else JobM.scheduled == current.scheduled
            with self._t.transact() as tx:
                tx.save(self._job_item(saved),
                        condition=(JobM.job_id.exists() & (JobM.execution_count == count) & set_is(JobM.active, active)
                                   & flag))
                tx.update(TaskM(task_id=job.task_id), actions=[TaskM.last_modified_at.set(job.last_modified_at)],
                          condition=TaskM.task_id.exists())
                if execution is not None:
                    tx.save(execution_to_item(self._t.Execution, execution, seq))
                self._statistics.count(tx, {"scheduled": int(job.spec.scheduled) - int(was_scheduled),
                                            **({execution.status.value: 1} if execution else {})})
            return saved, (execution.with_changes(seq=seq) if execution else None)

        return self._t.guard(lambda: retry_on_contention(attempt))

    def add_execution(self, job_id: str, make: MakeExecution, *, require_idle: bool = False,
                      clear_stopped: bool = False) -> tuple[Job, Execution]:
        JobM = self._t.Job

        def attempt() -> tuple[Job, Execution]:
            item = get_or_none(JobM, job_id)
            if item is None:
                raise Conflict(f"job {job_id} does not exist", field="jobId")
            job = job_from_item(item)
            if require_idle and job.active:
                raise Conflict("The job has an execution that is still running; stop it or wait for it to end.",
                               field="jobId")
            count = job.execution_count
            added = make(job).with_changes(seq=count + 1)
            actions = [JobM.execution_count.set(count + 1), JobM.active.add({added.execution_id})]
            if clear_stopped:
                actions.append(JobM.stopped.set(False))
            condition = JobM.execution_count == count
            if require_idle:
                condition = condition & JobM.active.does_not_exist()
            with self._t.transact() as tx:
                tx.update(JobM(job_id=job_id), actions=actions, condition=condition)
                tx.save(execution_to_item(self._t.Execution, added, count + 1))
                self._statistics.count(tx, {added.status.value: 1})
            return job.with_changes(execution_count=count + 1, active=job.active | {added.execution_id}), added

        return self._t.guard(lambda: retry_on_contention(attempt))

    def set_job_stopped(self, job_id: str, stopped: bool) -> None:
        JobM = self._t.Job
        self._t.guard(lambda: JobM(job_id=job_id).update(actions=[JobM.stopped.set(stopped)], condition=JobM.job_id.exists()))

    # reads --------------------------------------------------------------------------------------

    def get_job(self, job_id: str) -> Job | None:
        item = self._t.guard(lambda: get_or_none(self._t.Job, job_id))
        return job_from_item(item) if item is not None else None

    def get_task(self, task_id: str) -> Task | None:
        item = self._t.guard(lambda: get_or_none(self._t.Task, task_id))
        return task_from_item(item) if item is not None else None

    def list_tasks(self, page: int, per_page: int) -> Page:
        TaskM = self._t.Task

        def read() -> Page:
            counter = get_or_none(TaskM, TASKS_COUNTER_ID)
            total = int(counter.total) if counter is not None and counter.total else 0
            low, high = seq_range(page, per_page, total)
            items = []
            if low <= high:
                items = [task_from_item(i) for i in TaskM.by_seq.query(TASK_LIST_BUCKET, TaskM.seq.between(low, high))]
            return Page(items=items, page=page, per_page=per_page, total=total)

        return self._t.guard(read)

    def list_jobs(self, task_id: str, page: int, per_page: int) -> Page:
        JobM = self._t.Job

        def read() -> Page:
            task = get_or_none(self._t.Task, task_id)
            total = int(task.jobs_count or 0) if task is not None else 0
            low, high = seq_range(page, per_page, total)
            items = []
            if low <= high:
                items = [job_from_item(i) for i in JobM.by_task.query(task_id, JobM.seq.between(low, high))]
            return Page(items=items, page=page, per_page=per_page, total=total)

        return self._t.guard(read)

    def ping(self) -> None:
        self._t.guard(self._t.ping)
