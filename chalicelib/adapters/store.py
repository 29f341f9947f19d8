"""The DynamoDB job store, through PynamoDB. Table layouts and access patterns: docs/storage.md."""
from __future__ import annotations

import random
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, TypeVar

from pynamodb.attributes import (
    BooleanAttribute,
    JSONAttribute,
    NumberAttribute,
    UnicodeAttribute,
    UnicodeSetAttribute,
)
from pynamodb.connection import Connection
from pynamodb.exceptions import DoesNotExist, PynamoDBException, TransactWriteError
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex, KeysOnlyProjection, LocalSecondaryIndex
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from ..config import Settings
from ..domain.errors import Conflict, DependencyDown
from ..domain.model import FINAL_STATUSES, Execution, ExecutionStatus, Job, JobSpec, Page, Task, seq_range

TASKS_COUNTER_ID = "#tasks"  # never a valid task id, so it cannot clash with one
TASK_LIST_BUCKET = "tasks"
POOL_PREFIX = "#pool:"
STATS_PREFIX = "#stats:"
STATS_SHARDS = 8
SCHEDULE_BUCKET = "scheduled"  # statistics counters are spread so no single item is hot
T = TypeVar("T")


def build_models(settings: Settings) -> SimpleNamespace:
    """PynamoDB model classes bound to this deployment's table names."""

    class TasksBySeq(GlobalSecondaryIndex):
        class Meta:
            index_name = "by_seq"
            projection = AllProjection()

        list_bucket = UnicodeAttribute(hash_key=True, attr_name="listBucket")
        seq = NumberAttribute(range_key=True)

    class TaskModel(Model):
        class Meta:
            table_name = settings.tasks_table
            region = settings.region
            billing_mode = "PAY_PER_REQUEST"

        task_id = UnicodeAttribute(hash_key=True, attr_name="taskId")
        list_bucket = UnicodeAttribute(null=True, attr_name="listBucket")
        seq = NumberAttribute(null=True)
        created_at = NumberAttribute(null=True, attr_name="createdAt")
        last_modified_at = NumberAttribute(null=True, attr_name="lastModifiedAt")
        jobs_count = NumberAttribute(null=True, attr_name="jobsCount")
        total = NumberAttribute(null=True)  # the #tasks counter item only
        running = NumberAttribute(null=True)  # #pool:<name> items only
        by_seq = TasksBySeq()

    class JobsByTask(GlobalSecondaryIndex):
        class Meta:
            index_name = "by_task"
            projection = AllProjection()

        task_id = UnicodeAttribute(hash_key=True, attr_name="taskId")
        seq = NumberAttribute(range_key=True)

    class ScheduledJobs(GlobalSecondaryIndex):
        """Sparse: only jobs with a pending schedule carry `scheduleBucket`, ordered by next run."""

        class Meta:
            index_name = "by_next_run"
            projection = AllProjection()

        schedule_bucket = UnicodeAttribute(hash_key=True, attr_name="scheduleBucket")
        next_run_at = NumberAttribute(range_key=True, attr_name="nextRunAt")

    class JobModel(Model):
        class Meta:
            table_name = settings.jobs_table
            region = settings.region
            billing_mode = "PAY_PER_REQUEST"

        job_id = UnicodeAttribute(hash_key=True, attr_name="jobId")
        task_id = UnicodeAttribute(attr_name="taskId")
        seq = NumberAttribute()
        created_at = NumberAttribute(attr_name="createdAt")
        last_modified_at = NumberAttribute(attr_name="lastModifiedAt")
        spec = JSONAttribute()
        request_ip = UnicodeAttribute(null=True, attr_name="requestIPAddress")
        execution_count = NumberAttribute(default=0, attr_name="executionCount")
        retry_count = NumberAttribute(default=0, attr_name="retryCount")
        active = UnicodeSetAttribute(null=True)
        stopped = BooleanAttribute(default=False)
        schedule_version = UnicodeAttribute(null=True, attr_name="scheduleVersion")
        schedule_bucket = UnicodeAttribute(null=True, attr_name="scheduleBucket")
        next_run_at = NumberAttribute(null=True, attr_name="nextRunAt")
        last_tick = NumberAttribute(null=True, attr_name="lastTick")
        skipped_ticks = NumberAttribute(default=0, attr_name="skippedTicks")
        last_skipped_at = NumberAttribute(null=True, attr_name="lastSkippedAt")
        by_task = JobsByTask()
        by_next_run = ScheduledJobs()

    class ExecutionsBySeq(LocalSecondaryIndex):
        class Meta:
            index_name = "by_seq"
            projection = AllProjection()

        job_id = UnicodeAttribute(hash_key=True, attr_name="jobId")
        seq = NumberAttribute(range_key=True)

    class ExecutionsById(GlobalSecondaryIndex):
        class Meta:
            index_name = "by_id"
            projection = KeysOnlyProjection()

        execution_id = UnicodeAttribute(hash_key=True, attr_name="executionId")

    class ActiveExecutions(GlobalSecondaryIndex):
        """Sparse: only executions that are not final carry `sweep` (their status)."""

        class Meta:
            index_name = "by_active"
            projection = AllProjection()

        sweep = UnicodeAttribute(hash_key=True)
        created_at = NumberAttribute(range_key=True, attr_name="createdAt")

    class ExecutionModel(Model):
        class Meta:
            table_name = settings.executions_table
            region = settings.region
            billing_mode = "PAY_PER_REQUEST"

        job_id = UnicodeAttribute(hash_key=True, attr_name="jobId")
        execution_id = UnicodeAttribute(range_key=True, attr_name="executionId")
        task_id = UnicodeAttribute(attr_name="taskId")
        seq = NumberAttribute()
        status = UnicodeAttribute()
        image = UnicodeAttribute()
        command = UnicodeAttribute()
        created_at = NumberAttribute(attr_name="createdAt")
        started_at = NumberAttribute(null=True, attr_name="startedAt")
        finished_at = NumberAttribute(null=True, attr_name="finishedAt")
        exit_code = NumberAttribute(null=True, attr_name="exitCode")
        request_ip = UnicodeAttribute(null=True, attr_name="requestIPAddress")
        metadata = JSONAttribute(null=True)
        log = UnicodeAttribute(null=True)
        error = UnicodeAttribute(null=True)
        due_at = NumberAttribute(null=True, attr_name="dueAt")
        launched_at = NumberAttribute(null=True, attr_name="launchedAt")
        task_arn = UnicodeAttribute(null=True, attr_name="taskArn")
        pool = UnicodeAttribute(null=True)
        sweep = UnicodeAttribute(null=True)
        notified = UnicodeSetAttribute(null=True)
        notifications = JSONAttribute(null=True)
        by_seq = ExecutionsBySeq()
        by_id = ExecutionsById()
        by_active = ActiveExecutions()

    return SimpleNamespace(Task=TaskModel, Job=JobModel, Execution=ExecutionModel)


def _set_is(attribute: Any, values: frozenset[str]) -> Any:
    """Condition: a string-set attribute holds exactly `values` (an empty set is no attribute)."""
    return (attribute == set(values)) if values else attribute.does_not_exist()


def _task(item: Any) -> Task:
    return Task(
        task_id=item.task_id,
        created_at=float(item.created_at),
        last_modified_at=float(item.last_modified_at),
        jobs_count=int(item.jobs_count or 0),
        seq=int(item.seq or 0),
    )


def _job(item: Any) -> Job:
    return Job(
        task_id=item.task_id,
        job_id=item.job_id,
        spec=JobSpec.from_dict(item.spec),
        created_at=float(item.created_at),
        last_modified_at=float(item.last_modified_at),
        request_ip=item.request_ip,
        execution_count=int(item.execution_count or 0),
        retry_count=int(item.retry_count or 0),
        seq=int(item.seq),
        active=frozenset(item.active or ()),
        stopped=bool(item.stopped),
        schedule_version=item.schedule_version,
        next_run_at=item.next_run_at,
        last_tick=item.last_tick,
        skipped_ticks=int(item.skipped_ticks or 0),
        last_skipped_at=item.last_skipped_at,
    )


def _execution(item: Any) -> Execution:
    return Execution(
        task_id=item.task_id,
        job_id=item.job_id,
        execution_id=item.execution_id,
        image=item.image,
        command=item.command,
        status=ExecutionStatus(item.status),
        created_at=float(item.created_at),
        seq=int(item.seq),
        started_at=item.started_at,
        finished_at=item.finished_at,
        exit_code=int(item.exit_code) if item.exit_code is not None else None,
        request_ip=item.request_ip,
        metadata=item.metadata or {},
        log=item.log,
        error=item.error,
        due_at=item.due_at,
        launched_at=item.launched_at,
        task_arn=item.task_arn,
        pool=item.pool,
        notified=frozenset(item.notified or ()),
        notifications=tuple(item.notifications or ()),
    )


class DynamoJobStore:
    """JobStore on three DynamoDB tables. Page counts come from counters kept in the same
    transactions as the writes, so no request ever counts or scans items."""

    CONTENTION_ATTEMPTS = 20

    def __init__(self, settings: Settings, models: SimpleNamespace | None = None) -> None:
        self._settings = settings
        self.models = models or build_models(settings)
        self._connection: Connection | None = None

    def _shared_connection(self) -> Connection:
        """One botocore client for the three tables and the transactions. PynamoDB would build
        one per model class, each costing ~100 ms of a cold start."""
        if self._connection is None:
            self._connection = Connection(region=self._settings.region)
            client = self._connection.client
            for model in (self.models.Task, self.models.Job, self.models.Execution):
                model._get_connection().connection._client = client  # pinned pynamodb 6.1
        return self._connection

    # writes -------------------------------------------------------------------------------

    def _transact(self) -> TransactWrite:
        return TransactWrite(connection=self._shared_connection())

    def _retry_on_contention(self, attempt: Callable[[], T]) -> T:
        """Counters are updated with conditions on their value read just before; a concurrent
        writer makes the transaction fail, and the attempt is made again on fresh reads."""
        for n in range(self.CONTENTION_ATTEMPTS):
            try:
                return attempt()
            except TransactWriteError as error:
                reasons = [r.code for r in (error.cancellation_reasons or []) if r is not None]
                if "ConditionalCheckFailed" not in reasons and "TransactionConflict" not in reasons:
                    raise DependencyDown(f"DynamoDB refused the write: {error.cause_response_message}") from error
                time.sleep(random.uniform(0, 0.01 * (n + 1)))
        raise DependencyDown("DynamoDB: too much contention on the same task, try again")

    def _execution_item(self, execution: Execution, seq: int) -> Any:
        M = self.models.Execution
        return M(
            job_id=execution.job_id,
            execution_id=execution.execution_id,
            task_id=execution.task_id,
            seq=seq,
            status=execution.status.value,
            image=execution.image,
            command=execution.command,
            created_at=execution.created_at,
            started_at=execution.started_at,
            finished_at=execution.finished_at,
            exit_code=execution.exit_code,
            request_ip=execution.request_ip,
            metadata=execution.metadata or None,
            log=execution.log,
            error=execution.error,
            due_at=execution.due_at,
            launched_at=execution.launched_at,
            task_arn=execution.task_arn,
            pool=execution.pool,
            notified=set(execution.notified) or None,
            notifications=list(execution.notifications) or None,
            sweep=None if execution.status in FINAL_STATUSES else execution.status.value,
        )

    def _job_item(self, job: Job) -> Any:
        return self.models.Job(
            job_id=job.job_id,
            task_id=job.task_id,
            seq=job.seq,
            created_at=job.created_at,
            last_modified_at=job.last_modified_at,
            spec=job.spec.to_dict(),
            request_ip=job.request_ip,
            execution_count=job.execution_count,
            retry_count=job.retry_count,
            active=set(job.active) or None,
            stopped=job.stopped,
            schedule_version=job.schedule_version,
            schedule_bucket=SCHEDULE_BUCKET if job.schedule_version and job.next_run_at is not None else None,
            next_run_at=job.next_run_at,
            last_tick=job.last_tick,
            skipped_ticks=job.skipped_ticks,
            last_skipped_at=job.last_skipped_at,
        )

    def save_new_job(self, job: Job, execution: Execution | None) -> tuple[Job, Execution | None]:
        TaskM, JobM = self.models.Task, self.models.Job

        def attempt() -> tuple[Job, Execution | None]:
            task = self._get_task_item(job.task_id)
            count = 1 if execution else 0
            with self._transact() as tx:
                if task is None:
                    counter = self._get_task_item(TASKS_COUNTER_ID)
                    total = int(counter.total) if counter is not None and counter.total else 0
                    counter_item = TaskM(task_id=TASKS_COUNTER_ID)
                    tx.update(
                        counter_item,
                        actions=[TaskM.total.set(total + 1)],
                        condition=(TaskM.total == total) if total else TaskM.total.does_not_exist(),
                    )
                    tx.save(
                        TaskM(
                            task_id=job.task_id,
                            list_bucket=TASK_LIST_BUCKET,
                            seq=total + 1,
                            created_at=job.created_at,
                            last_modified_at=job.created_at,
                            jobs_count=1,
                        ),
                        condition=TaskM.task_id.does_not_exist(),
                    )
                    seq = 1
                else:
                    jobs = int(task.jobs_count or 0)
                    tx.update(
                        TaskM(task_id=job.task_id),
                        actions=[TaskM.jobs_count.set(jobs + 1), TaskM.last_modified_at.set(job.created_at)],
                        condition=(TaskM.jobs_count == jobs),
                    )
                    seq = jobs + 1
                active = frozenset({execution.execution_id}) if execution else frozenset()
                saved = job.with_changes(seq=seq, execution_count=count, active=active)
                tx.save(self._job_item(saved), condition=JobM.job_id.does_not_exist())
                if execution is not None:
                    tx.save(self._execution_item(execution, 1))
            return saved, (execution.with_changes(seq=1) if execution else None)

        saved, first = self._guard(lambda: self._retry_on_contention(attempt))
        self._bump_stats(jobs=1, scheduled=1 if job.spec.scheduled else 0, **({first.status.value: 1} if first else {}))
        return saved, first

    def replace_job(self, job: Job, execution: Execution | None) -> tuple[Job, Execution | None]:
        TaskM, JobM = self.models.Task, self.models.Job

        def attempt() -> tuple[Job, Execution | None]:
            current = self._get_job_item(job.job_id)
            if current is None or current.task_id != job.task_id:
                raise Conflict(f"job {job.job_id} changed while it was being replaced; try again", field="jobId")
            count = int(current.execution_count or 0)
            seq = count + 1
            active = frozenset(current.active or ())
            saved = job.with_changes(
                seq=int(current.seq),
                created_at=float(current.created_at),
                execution_count=seq if execution else count,
                retry_count=0,
                active=active | {execution.execution_id} if execution else active,
                stopped=False,
                last_tick=current.last_tick,
            )
            was_scheduled.append(JobSpec.from_dict(current.spec).scheduled)
            with self._transact() as tx:
                tx.save(
                    self._job_item(saved),
                    condition=(JobM.job_id.exists() & (JobM.execution_count == count) & _set_is(JobM.active, active)),
                )
                tx.update(TaskM(task_id=job.task_id), actions=[TaskM.last_modified_at.set(job.last_modified_at)],
                          condition=TaskM.task_id.exists())
                if execution is not None:
                    tx.save(self._execution_item(execution, seq))
            return saved, (execution.with_changes(seq=seq) if execution else None)

        was_scheduled: list[bool] = []
        saved, added = self._guard(lambda: self._retry_on_contention(attempt))
        self._bump_stats(scheduled=int(job.spec.scheduled) - int(was_scheduled[-1]),
                         **({added.status.value: 1} if added else {}))
        return saved, added

    # reads --------------------------------------------------------------------------------

    def _guard(self, call: Callable[[], T]) -> T:
        self._shared_connection()
        try:
            return call()
        except (Conflict, DependencyDown):
            raise
        except PynamoDBException as error:
            raise DependencyDown(f"DynamoDB: {error.msg}") from error

    def _get_task_item(self, task_id: str) -> Any:
        try:
            return self.models.Task.get(task_id, consistent_read=True)
        except DoesNotExist:
            return None

    def _get_job_item(self, job_id: str) -> Any:
        try:
            return self.models.Job.get(job_id, consistent_read=True)
        except DoesNotExist:
            return None

    def get_task(self, task_id: str) -> Task | None:
        item = self._guard(lambda: self._get_task_item(task_id))
        return _task(item) if item is not None else None

    def list_tasks(self, page: int, per_page: int) -> Page:
        TaskM = self.models.Task

        def read() -> Page:
            counter = self._get_task_item(TASKS_COUNTER_ID)
            total = int(counter.total) if counter is not None and counter.total else 0
            low, high = seq_range(page, per_page, total)
            items = []
            if low <= high:
                items = [_task(i) for i in TaskM.by_seq.query(TASK_LIST_BUCKET, TaskM.seq.between(low, high))]
            return Page(items=items, page=page, per_page=per_page, total=total)

        return self._guard(read)

    def list_jobs(self, task_id: str, page: int, per_page: int) -> Page:
        JobM = self.models.Job

        def read() -> Page:
            task = self._get_task_item(task_id)
            total = int(task.jobs_count or 0) if task is not None else 0
            low, high = seq_range(page, per_page, total)
            items = []
            if low <= high:
                items = [_job(i) for i in JobM.by_task.query(task_id, JobM.seq.between(low, high))]
            return Page(items=items, page=page, per_page=per_page, total=total)

        return self._guard(read)

    def get_job(self, job_id: str) -> Job | None:
        item = self._guard(lambda: self._get_job_item(job_id))
        return _job(item) if item is not None else None

    def list_executions(self, job_id: str, page: int, per_page: int, total: int | None = None) -> Page:
        ExecM = self.models.Execution

        def read() -> Page:
            count = total
            if count is None:
                job = self._get_job_item(job_id)
                count = int(job.execution_count or 0) if job is not None else 0
            low, high = seq_range(page, per_page, count, newest_first=True)
            items = []
            if low <= high:
                query = ExecM.by_seq.query(job_id, ExecM.seq.between(low, high), scan_index_forward=False)
                items = [_execution(i) for i in query]
            return Page(items=items, page=page, per_page=per_page, total=count)

        return self._guard(read)

    def get_execution(self, job_id: str, execution_id: str) -> Execution | None:
        def read() -> Execution | None:
            try:
                return _execution(self.models.Execution.get(job_id, execution_id, consistent_read=True))
            except DoesNotExist:
                return None

        return self._guard(read)

    def ping(self) -> None:
        self._shared_connection()
        for model in (self.models.Task, self.models.Job, self.models.Execution):
            model.describe_table()

    # the execution engine ---------------------------------------------------------------------

    def find_execution(self, execution_id: str) -> Execution | None:
        """By id alone (ECS events carry only the execution id, in `startedBy`)."""
        ExecM = self.models.Execution

        def read() -> Execution | None:
            for key in ExecM.by_id.query(execution_id, limit=1):
                return self.get_execution(key.job_id, execution_id)
            return None

        return self._guard(read)

    def active_executions(self, status: ExecutionStatus, limit: int = 500) -> list[Execution]:
        """Executions in a status that is not final, oldest first (the sweeper's worklist)."""
        ExecM = self.models.Execution
        return self._guard(lambda: [_execution(i) for i in ExecM.by_active.query(status.value, limit=limit)])

    def transition(
        self,
        execution: Execution,
        target: ExecutionStatus,
        expected: frozenset[ExecutionStatus],
        follow_up: Callable[[Job], Execution] | None = None,
        **fields: Any,
    ) -> tuple[Execution, Execution | None] | None:
        """Move an execution to `target` if its status is still one of `expected`, setting
        `fields`; with `follow_up`, atomically add the execution it returns (a retry) to the job.
        Returns the moved execution and the follow-up, or None when the execution had already
        moved on (a duplicate or late event)."""
        ExecM, JobM = self.models.Execution, self.models.Job
        final = target in FINAL_STATUSES
        actions = [ExecM.status.set(target.value)]
        actions.append(ExecM.sweep.remove() if final else ExecM.sweep.set(target.value))
        for name, value in fields.items():
            attribute = getattr(ExecM, name)
            actions.append(attribute.remove() if value is None else attribute.set(value))
        condition = ExecM.status.is_in(*[s.value for s in expected])

        def attempt() -> tuple[Execution, Execution | None] | None:
            job = self._get_job_item(execution.job_id) if follow_up else None
            added = None
            with self._transact() as tx:
                tx.update(ExecM(execution.job_id, execution.execution_id), actions=actions, condition=condition)
                if follow_up is not None and job is not None:
                    count = int(job.execution_count or 0)
                    active = frozenset(job.active or ())
                    added = follow_up(_job(job)).with_changes(seq=count + 1)
                    remaining = (active - {execution.execution_id}) | {added.execution_id}
                    tx.update(
                        JobM(job_id=execution.job_id),
                        actions=[JobM.execution_count.set(count + 1), JobM.active.set(remaining),
                                 JobM.retry_count.add(1)],
                        condition=(JobM.execution_count == count) & _set_is(JobM.active, active),
                    )
                    tx.save(self._execution_item(added, count + 1))
                elif final:
                    tx.update(JobM(job_id=execution.job_id), actions=[JobM.active.delete({execution.execution_id})])
            return execution.with_changes(status=target, **fields), added

        def guarded() -> tuple[Execution, Execution | None] | None:
            try:
                return attempt()
            except TransactWriteError as error:
                reasons = [r.code if r is not None else None for r in (error.cancellation_reasons or [])]
                if reasons and reasons[0] == "ConditionalCheckFailed":
                    return None
                raise

        moved = self._guard(lambda: self._retry_on_contention(guarded))
        if moved is not None:
            deltas = {execution.status.value: -1, target.value: 1}
            if moved[1] is not None:
                deltas[moved[1].status.value] = deltas.get(moved[1].status.value, 0) + 1
            self._bump_stats(**deltas)
        return moved

    def add_execution(
        self, job_id: str, make: Callable[[Job], Execution], *, require_idle: bool = False, clear_stopped: bool = False
    ) -> tuple[Job, Execution]:
        """Add a new execution to a job (retry now, a schedule's tick). With require_idle, a job
        with an execution that is not final gets Conflict."""
        JobM = self.models.Job

        def attempt() -> tuple[Job, Execution]:
            item = self._get_job_item(job_id)
            if item is None:
                raise Conflict(f"job {job_id} does not exist", field="jobId")
            job = _job(item)
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
            with self._transact() as tx:
                tx.update(JobM(job_id=job_id), actions=actions, condition=condition)
                tx.save(self._execution_item(added, count + 1))
            return job.with_changes(execution_count=count + 1, active=job.active | {added.execution_id}), added

        job, added = self._guard(lambda: self._retry_on_contention(attempt))
        self._bump_stats(**{added.status.value: 1})
        return job, added

    def set_job_stopped(self, job_id: str, stopped: bool) -> None:
        JobM = self.models.Job
        self._guard(lambda: JobM(job_id=job_id).update(actions=[JobM.stopped.set(stopped)],
                                                       condition=JobM.job_id.exists()))

    def update_execution(self, execution: Execution, expected: frozenset[ExecutionStatus] | None = None,
                         **fields: Any) -> bool:
        """Set fields without changing the status (conditionally on it, when `expected` is given)."""
        from pynamodb.exceptions import UpdateError

        ExecM = self.models.Execution
        actions = [getattr(ExecM, k).remove() if v is None else getattr(ExecM, k).set(v) for k, v in fields.items()]
        condition = ExecM.status.is_in(*[s.value for s in expected]) if expected else ExecM.job_id.exists()

        def write() -> bool:
            try:
                ExecM(execution.job_id, execution.execution_id).update(actions=actions, condition=condition)
                return True
            except UpdateError as error:
                if error.cause_response_code == "ConditionalCheckFailedException":
                    return False
                raise

        return self._guard(write)

    def record_notification(self, job_id: str, execution_id: str, entry: dict[str, Any], keep: int = 50) -> None:
        """Append the result of a notification attempt to the execution, keeping the newest `keep`."""
        from pynamodb.exceptions import UpdateError

        ExecM = self.models.Execution

        def write() -> None:
            for _ in range(self.CONTENTION_ATTEMPTS):
                item = ExecM.get(job_id, execution_id, consistent_read=True)
                current = list(item.notifications or [])
                entries = (current + [entry])[-keep:]
                condition = (ExecM.notifications == current) if current else ExecM.notifications.does_not_exist()
                try:
                    ExecM(job_id, execution_id).update(actions=[ExecM.notifications.set(entries)], condition=condition)
                    return
                except UpdateError as error:
                    if error.cause_response_code != "ConditionalCheckFailedException":
                        raise
            raise DependencyDown("DynamoDB: too much contention on the execution's notifications")

        self._guard(write)

    # schedules --------------------------------------------------------------------------------

    def take_schedule(
        self, job_id: str, version: str, make: Callable[[Job], Execution] | None, *, tick_at: float | None,
        next_run_at: float | None, skipped: bool = False,
    ) -> tuple[Job, Execution | None] | None:
        """Take one firing of the job's schedule `version`, at most once: a one-shot (tick_at None)
        ends the schedule, a cron tick must be later than the last tick taken. With `make`, the
        execution it returns is added in the same transaction; `skipped` counts a tick not run.
        None when the firing is stale (another version, or a tick taken already)."""
        JobM = self.models.Job

        def attempt() -> tuple[Job, Execution | None] | None:
            item = self._get_job_item(job_id)
            if item is None or item.schedule_version != version:
                return None
            job = _job(item)
            if tick_at is not None and job.last_tick is not None and tick_at <= job.last_tick:
                return None
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
            if skipped:
                actions += [JobM.skipped_ticks.add(1), JobM.last_skipped_at.set(tick_at)]
            added = None
            with self._transact() as tx:
                if make is not None:
                    added = make(job).with_changes(seq=count + 1)
                    actions += [JobM.execution_count.set(count + 1), JobM.active.add({added.execution_id})]
                    tx.save(self._execution_item(added, count + 1))
                tx.update(JobM(job_id=job_id), actions=actions, condition=condition)
            return job, added

        taken = self._guard(lambda: self._retry_on_contention(attempt))
        if taken is not None and taken[1] is not None:
            self._bump_stats(**{taken[1].status.value: 1})
        return taken

    def end_schedule(self, job_id: str, version: str | None = None) -> None:
        """Forget the job's pending schedule (all versions, or only `version`)."""
        from pynamodb.exceptions import UpdateError

        JobM = self.models.Job
        condition = JobM.job_id.exists() if version is None else (JobM.schedule_version == version)
        try:
            self._guard(lambda: JobM(job_id=job_id).update(
                actions=[JobM.schedule_version.remove(), JobM.schedule_bucket.remove(), JobM.next_run_at.remove()],
                condition=condition))
        except DependencyDown as error:
            if isinstance(error.__cause__, UpdateError) and \
                    error.__cause__.cause_response_code == "ConditionalCheckFailedException":
                return
            raise

    def scheduled_jobs(self, limit: int = 50, due_before: float | None = None) -> list[Job]:
        """Jobs with a pending schedule, soonest first."""
        JobM = self.models.Job
        condition = JobM.next_run_at < due_before if due_before is not None else None
        return self._guard(lambda: [_job(i) for i in JobM.by_next_run.query(SCHEDULE_BUCKET, condition, limit=limit)])

    # pool slots: exact counts, taken and released in transactions with the execution ------------

    def take_slot(self, execution: Execution, pool: str, max_running: int) -> str:
        """'taken', 'full' (the pool is at its limit) or 'moved' (the execution is no longer
        waiting for a slot: it holds one already, or it is no longer enqueued)."""
        TaskM, ExecM = self.models.Task, self.models.Execution
        pool_condition = None
        if max_running > 0:
            pool_condition = TaskM.running.does_not_exist() | (TaskM.running < max_running)

        def attempt() -> str:
            try:
                with self._transact() as tx:
                    tx.update(TaskM(task_id=POOL_PREFIX + pool), actions=[TaskM.running.add(1)],
                              condition=pool_condition)
                    tx.update(
                        ExecM(execution.job_id, execution.execution_id),
                        actions=[ExecM.pool.set(pool)],
                        condition=(ExecM.status == ExecutionStatus.ENQUEUED.value) & ExecM.pool.does_not_exist(),
                    )
                return "taken"
            except TransactWriteError as error:
                reasons = [r.code if r is not None else None for r in (error.cancellation_reasons or [])]
                if len(reasons) == 2 and reasons[1] == "ConditionalCheckFailed":
                    return "moved"
                if reasons and reasons[0] == "ConditionalCheckFailed":
                    return "full"
                raise

        return self._guard(lambda: self._retry_on_contention(attempt))

    def release_slot(self, execution: Execution) -> bool:
        """Give back the slot an execution holds; False when it holds none (released already).
        The write is conditional on the slot still being held, so a snapshot that names its pool
        saves a read; one that does not is read again (it may have taken one since)."""
        TaskM, ExecM = self.models.Task, self.models.Execution
        pool = execution.pool
        if pool is None:
            current = self.get_execution(execution.job_id, execution.execution_id)
            if current is None or current.pool is None:
                return False
            pool = current.pool

        def attempt() -> bool:
            try:
                with self._transact() as tx:
                    tx.update(ExecM(execution.job_id, execution.execution_id), actions=[ExecM.pool.remove()],
                              condition=ExecM.pool == pool)
                    tx.update(TaskM(task_id=POOL_PREFIX + pool), actions=[TaskM.running.add(-1)])
                return True
            except TransactWriteError as error:
                reasons = [r.code if r is not None else None for r in (error.cancellation_reasons or [])]
                if reasons and reasons[0] == "ConditionalCheckFailed":
                    return False
                raise

        return self._guard(lambda: self._retry_on_contention(attempt))

    def pool_running(self, names: list[str]) -> dict[str, int]:
        def read() -> dict[str, int]:
            result = {name: 0 for name in names}
            for item in self.models.Task.batch_get([POOL_PREFIX + n for n in names]):
                result[item.task_id[len(POOL_PREFIX):]] = int(item.running or 0)
            return result

        return self._guard(read)

    # statistics: sharded counters, updated after the writes they count ---------------------------

    def _bump_stats(self, **deltas: int) -> None:
        """Add to the statistics counters (jobs, scheduled, executions by status). Written after the
        transaction they describe, on one of several items, so that no item is hot and no
        transaction conflicts on them; a container that dies in between leaves a count off by one."""
        deltas = {k: v for k, v in deltas.items() if v}
        if not deltas:
            return
        names = {f"#k{i}": key for i, key in enumerate(deltas)}
        values = {f":v{i}": {"N": str(value)} for i, value in enumerate(deltas.values())}
        try:
            self._shared_connection().client.update_item(
                TableName=self._settings.tasks_table,
                Key={"taskId": {"S": f"{STATS_PREFIX}{random.randrange(STATS_SHARDS)}"}},
                UpdateExpression="ADD " + ", ".join(f"#k{i} :v{i}" for i in range(len(deltas))),
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except Exception:  # noqa: BLE001 - statistics must never fail the write they describe
            from ..observability import logger

            logger.warning("statistics counter not updated", extra={"deltas": deltas})

    def stats(self) -> dict[str, int]:
        def read() -> dict[str, int]:
            keys = [{"taskId": {"S": f"{STATS_PREFIX}{i}"}} for i in range(STATS_SHARDS)]
            response = self._shared_connection().client.batch_get_item(
                RequestItems={self._settings.tasks_table: {"Keys": keys, "ConsistentRead": True}}
            )
            totals: dict[str, int] = {}
            for item in response.get("Responses", {}).get(self._settings.tasks_table, []):
                for name, value in item.items():
                    if name != "taskId" and "N" in value:
                        totals[name] = totals.get(name, 0) + int(value["N"])
            counter = self._get_task_item(TASKS_COUNTER_ID)
            totals["tasks"] = int(counter.total) if counter is not None and counter.total else 0
            return totals

        return self._guard(read)

    # provisioning (tests and the local runtime; in AWS the template creates the tables) -----

    def create_tables(self) -> None:
        self._shared_connection()
        for model in (self.models.Task, self.models.Job, self.models.Execution):
            if not model.exists():
                model.create_table(wait=True, billing_mode="PAY_PER_REQUEST")
