"""Tasks and jobs on DynamoDB: creating, replacing, reading and listing them, and adding an
execution to a job. Pages are ranges of sequence numbers, taken with atomic ADDs (sequence.py),
and counts come from counters, so no request counts or scans items."""
from __future__ import annotations

from typing import Any

from pynamodb.exceptions import TransactWriteError
from pynamodb.transactions import TransactWrite

from ...domain.errors import Conflict, TooManyActive
from ...domain.model import Execution, Job, JobSpec, Page, Task, seq_range
from ...ports import MakeExecution
from . import listing
from .mapping import execution_to_item, job_from_item, job_to_item, task_from_item
from .sequence import take_job_number, take_task_number
from .statistics import DynamoStatistics
from .tables import TASK_LIST_BUCKET, TASKS_COUNTER_ID, Tables, get_or_none
from .transactions import CONDITION_FAILED, cancellation_reasons, commit, refused_item, retry_on_contention


def _exists(job: Job) -> Conflict:
    return Conflict(f"Job '{job.job_id}' exists already.", field="jobId")


def set_is(attribute: Any, values: frozenset[str]) -> Any:
    """Condition: a string-set attribute holds exactly `values` (an empty set is no attribute)."""
    return (attribute == set(values)) if values else attribute.does_not_exist()


class DynamoJobs:
    def __init__(self, tables: Tables, statistics: DynamoStatistics) -> None:
        self._t = tables
        self._statistics = statistics

    def save_new_job(self, job: Job, execution: Execution | None, *,
                     known_absent: bool = False) -> tuple[Job, Execution | None]:
        """The job's number is taken first, with an atomic ADD on its task, so writers of one task
        never refuse one another; then the job, its first execution and their counts are written
        in one transaction with that number, made again with the same number while it meets other
        transactions. The writer of a task's first job lists the task in the same transaction."""
        JobM = self._t.Job

        def create() -> tuple[Job, Execution | None]:
            # Refused before a number is taken: a number taken and never used is a hole in the list.
            # A caller that knows no job has the id (it made it, or just read) saves the read.
            if not known_absent and get_or_none(JobM, job.job_id) is not None:
                raise _exists(job)
            number = take_job_number(self._t, job.task_id, job.created_at)
            task_seq = take_task_number(self._t) if number.lists_task(job.created_at) else None
            active = frozenset({execution.execution_id}) if execution else frozenset()
            saved = job.with_changes(seq=number.seq, execution_count=1 if execution else 0, active=active)
            first = execution.with_changes(seq=1) if execution else None
            counted = {"jobs": 1, "scheduled": int(job.spec.scheduled), **({first.status.value: 1} if first else {})}

            def write() -> TransactWrite:
                tx = self._t.transact()  # puts first, then updates, whatever the order of the calls
                tx.save(self._job_item(saved), condition=JobM.job_id.does_not_exist())
                if first is not None:
                    tx.save(execution_to_item(self._t.Execution, first, 1))
                if task_seq is not None:
                    self._list_task(tx, job.task_id, task_seq)
                self._statistics.count(tx, {**counted, "tasks": int(task_seq is not None)})
                return tx

            while True:
                try:
                    commit(write)
                    return saved, first
                except TransactWriteError as error:
                    reasons = cancellation_reasons(error)
                    if reasons[:1] == [CONDITION_FAILED]:  # the job exists
                        stored = get_or_none(JobM, job.job_id)
                        if stored is not None and (stored.task_id, int(stored.seq)) == (job.task_id, number.seq):
                            # Ours: botocore sent the transaction again after an answer was lost,
                            # to a store that ignores its idempotency token (moto; DynamoDB does not).
                            return saved, first
                        if task_seq is not None:
                            self._list_task_alone(job.task_id, task_seq)  # it may hold other writers' jobs
                        raise _exists(job) from error
                    listing = 1 + int(first is not None)  # the index of the task's update
                    if task_seq is None or reasons[listing:listing + 1] != [CONDITION_FAILED]:
                        raise
                    task_seq = None  # listed meanwhile by a writer that took it over: our number is a hole

        return self._t.guard(create)

    def _job_item(self, job: Job) -> Any:
        item = job_to_item(self._t.Job, job)
        item.scheduled = job.spec.scheduled  # what replace_job conditions the scheduled count on
        return item

    def _list_task(self, tx: TransactWrite, task_id: str, task_seq: int) -> None:
        TaskM = self._t.Task
        tx.update(TaskM(task_id=task_id), actions=[TaskM.seq.set(task_seq), TaskM.list_bucket.set(TASK_LIST_BUCKET)],
                  condition=TaskM.seq.does_not_exist())

    def _list_task_alone(self, task_id: str, task_seq: int) -> None:
        def write() -> TransactWrite:
            tx = self._t.transact()
            self._list_task(tx, task_id, task_seq)
            self._statistics.count(tx, {"tasks": 1})
            return tx

        try:
            commit(write)
        except TransactWriteError as error:
            if refused_item(error) != 0:
                raise  # else listed by another writer already

    def replace_job(self, job: Job, execution: Execution | None, *,
                    max_active: int | None = None) -> tuple[Job, Execution | None]:
        TaskM, JobM = self._t.Task, self._t.Job

        def attempt() -> tuple[Job, Execution | None]:
            current = get_or_none(JobM, job.job_id)
            if current is None or current.task_id != job.task_id:
                raise Conflict(f"job {job.job_id} changed while it was being replaced; try again", field="jobId")
            count = int(current.execution_count or 0)
            seq = count + 1
            active = frozenset(current.active or ())
            if max_active is not None and len(active) >= max_active:
                raise TooManyActive(max_active)  # exact: the write conditions on this very set
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

    def list_tasks_by_prefix(self, prefix: str, page: int, per_page: int) -> Page:
        return self._t.guard(lambda: listing.list_tasks_by_prefix(self._t, prefix, page, per_page))

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
