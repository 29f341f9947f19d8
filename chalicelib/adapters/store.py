"""The DynamoDB job store, through PynamoDB. Table layouts and access patterns: docs/storage.md."""
from __future__ import annotations

import random
import time
from types import SimpleNamespace
from typing import Any, Callable, TypeVar

from pynamodb.attributes import JSONAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.connection import Connection
from pynamodb.exceptions import DoesNotExist, PynamoDBException, TransactWriteError
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex, LocalSecondaryIndex
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from ..config import Settings
from ..domain.errors import Conflict, DependencyDown
from ..domain.model import Execution, ExecutionStatus, Job, JobSpec, Page, Task, seq_range

TASKS_COUNTER_ID = "#tasks"  # never a valid task id, so it cannot clash with one
TASK_LIST_BUCKET = "tasks"
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
        total = NumberAttribute(null=True)  # the counter item only
        by_seq = TasksBySeq()

    class JobsByTask(GlobalSecondaryIndex):
        class Meta:
            index_name = "by_task"
            projection = AllProjection()

        task_id = UnicodeAttribute(hash_key=True, attr_name="taskId")
        seq = NumberAttribute(range_key=True)

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
        by_task = JobsByTask()

    class ExecutionsBySeq(LocalSecondaryIndex):
        class Meta:
            index_name = "by_seq"
            projection = AllProjection()

        job_id = UnicodeAttribute(hash_key=True, attr_name="jobId")
        seq = NumberAttribute(range_key=True)

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
        by_seq = ExecutionsBySeq()

    return SimpleNamespace(Task=TaskModel, Job=JobModel, Execution=ExecutionModel)


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
                saved = job.with_changes(seq=seq, execution_count=count)
                tx.save(self._job_item(saved), condition=JobM.job_id.does_not_exist())
                if execution is not None:
                    tx.save(self._execution_item(execution, 1))
            return saved, (execution.with_changes(seq=1) if execution else None)

        return self._guard(lambda: self._retry_on_contention(attempt))

    def replace_job(self, job: Job, execution: Execution | None) -> tuple[Job, Execution | None]:
        TaskM, JobM = self.models.Task, self.models.Job

        def attempt() -> tuple[Job, Execution | None]:
            current = self._get_job_item(job.job_id)
            if current is None or current.task_id != job.task_id:
                raise Conflict(f"job {job.job_id} changed while it was being replaced; try again", field="jobId")
            count = int(current.execution_count or 0)
            seq = count + 1
            saved = job.with_changes(
                seq=int(current.seq),
                created_at=float(current.created_at),
                execution_count=seq if execution else count,
                retry_count=0,
            )
            with self._transact() as tx:
                tx.save(
                    self._job_item(saved),
                    condition=(JobM.job_id.exists() & (JobM.execution_count == count)),
                )
                tx.update(TaskM(task_id=job.task_id), actions=[TaskM.last_modified_at.set(job.last_modified_at)],
                          condition=TaskM.task_id.exists())
                if execution is not None:
                    tx.save(self._execution_item(execution, seq))
            return saved, (execution.with_changes(seq=seq) if execution else None)

        return self._guard(lambda: self._retry_on_contention(attempt))

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

    # provisioning (tests and the local runtime; in AWS the template creates the tables) -----

    def create_tables(self) -> None:
        self._shared_connection()
        for model in (self.models.Task, self.models.Job, self.models.Execution):
            if not model.exists():
                model.create_table(wait=True, billing_mode="PAY_PER_REQUEST")
