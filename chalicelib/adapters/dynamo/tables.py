# mypy: disable-error-code="misc,no-untyped-call,type-arg"
# (PynamoDB declares indexes through untyped __init_subclass__ hooks and generic classes.)
"""The PynamoDB models of the three tables, bound to a deployment's table names, and the one
botocore connection they share."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pynamodb.attributes import (
    BooleanAttribute,
    JSONAttribute,
    NumberAttribute,
    UnicodeAttribute,
    UnicodeSetAttribute,
)
from pynamodb.connection import Connection
from pynamodb.exceptions import DoesNotExist
from pynamodb.indexes import (
    AllProjection,
    GlobalSecondaryIndex,
    IncludeProjection,
    KeysOnlyProjection,
    LocalSecondaryIndex,
)
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from ...config import Settings
from .. import aws_session
from .transactions import T, guard

TASKS_COUNTER_ID = "#tasks"  # never a valid task id, so it cannot clash with one
TASK_LIST_BUCKET = "tasks"
POOL_PREFIX = "#pool:"
KEY_PREFIX = "#key:"  # a concurrency key's count, listed in the `keys` bucket of by_seq
KEY_BUCKET = "keys"
STATS_PREFIX = "#stats:"
SCHEDULE_BUCKET = "scheduled"


class Tables:
    """Model classes bound to this deployment's table names, created once per container."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.Task, self.Job, self.Execution = _models(settings)
        self._connection: Connection | None = None

    def connection(self) -> Connection:
        """One botocore client for the three tables and the transactions. PynamoDB would build
        one per model class, each costing ~100 ms of a cold start."""
        if self._connection is None:
            self._connection = Connection(region=self.settings.region)
            client = aws_session.pynamodb_client(self._connection)
            for model in (self.Task, self.Job, self.Execution):
                model._get_connection().connection._client = client  # pinned pynamodb 6.1
        return self._connection

    def guard(self, call: Callable[[], T]) -> T:
        """Run a store operation on the shared connection; PynamoDB errors become DependencyDown."""
        self.connection()
        return guard(call)

    def transact(self) -> TransactWrite:
        return TransactWrite(connection=self.connection())

    def create(self) -> None:
        """Create the tables (tests and the local runtime's aws mode; in AWS the template does)."""
        self.connection()
        for model in (self.Task, self.Job, self.Execution):
            if not model.exists():
                model.create_table(wait=True, billing_mode="PAY_PER_REQUEST")

    def ping(self) -> None:
        self.connection()
        for model in (self.Task, self.Job, self.Execution):
            model.describe_table()


def get_or_none(model: Any, *keys: str) -> Any:
    """A strongly consistent read of one item, None when there is none."""
    try:
        return model.get(*keys, consistent_read=True)
    except DoesNotExist:
        return None


def _models(settings: Settings) -> tuple[Any, Any, Any]:
    class TasksBySeq(GlobalSecondaryIndex):
        class Meta:
            index_name = "by_seq"
            projection = AllProjection()

        list_bucket = UnicodeAttribute(hash_key=True, attr_name="listBucket")
        seq = NumberAttribute(range_key=True)

    class TasksById(GlobalSecondaryIndex):
        """The listed tasks by id, so a prefix is a key condition (`begins_with`). Keys only: it is
        written once, when a task is listed, never again as its jobs change the task's item."""

        class Meta:
            index_name = "by_id"
            projection = KeysOnlyProjection()

        list_bucket = UnicodeAttribute(hash_key=True, attr_name="listBucket")
        task_id = UnicodeAttribute(range_key=True, attr_name="taskId")

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
        running = NumberAttribute(null=True)  # #pool:<name> and #key:<key> items only
        max_running = NumberAttribute(null=True, attr_name="maxRunning")  # #key:<key> items: the key's limit
        by_seq = TasksBySeq()
        by_id = TasksById()

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
        scheduled = BooleanAttribute(null=True)  # the spec's, set by the jobs adapter (its writes condition on it)
        schedule_version = UnicodeAttribute(null=True, attr_name="scheduleVersion")
        schedule_bucket = UnicodeAttribute(null=True, attr_name="scheduleBucket")
        next_run_at = NumberAttribute(null=True, attr_name="nextRunAt")
        last_tick = NumberAttribute(null=True, attr_name="lastTick")
        skipped_ticks = NumberAttribute(default=0, attr_name="skippedTicks")
        last_skipped_at = NumberAttribute(null=True, attr_name="lastSkippedAt")
        last_skip_reason = UnicodeAttribute(null=True, attr_name="lastSkipReason")
        paused_at = NumberAttribute(null=True, attr_name="pausedAt")
        buffered_tick = NumberAttribute(null=True, attr_name="bufferedTick")
        buffered_at = NumberAttribute(null=True, attr_name="bufferedAt")
        by_task = JobsByTask()
        by_next_run = ScheduledJobs()

    class ExecutionsBySeq(LocalSecondaryIndex):
        class Meta:
            index_name = "by_seq"
            projection = AllProjection()

        job_id = UnicodeAttribute(hash_key=True, attr_name="jobId")
        seq = NumberAttribute(range_key=True)

    class ActiveExecutions(GlobalSecondaryIndex):
        """Sparse: only executions that are not final carry `worklist` (their status, `prepared` for
        a launchable one that holds a pool slot), and final ones that still hold a slot or owe
        notifications (`held`): the reconciler's worklists."""

        class Meta:
            index_name = "by_active"
            projection = AllProjection()

        worklist = UnicodeAttribute(hash_key=True)
        created_at = NumberAttribute(range_key=True, attr_name="createdAt")

    class ExecutionsByCheck(GlobalSecondaryIndex):
        """Sparse: only launchable executions carry `checkAt` (when their launch is due), so the
        reconciler reads those whose launch is overdue, and never the ones still waiting out a
        delay however long they have waited."""

        class Meta:
            index_name = "by_check"
            projection = AllProjection()

        worklist = UnicodeAttribute(hash_key=True)
        check_at = NumberAttribute(range_key=True, attr_name="checkAt")

    class ExecutionsByStatus(GlobalSecondaryIndex):
        """Executions across tasks: `statusShard` (`<status>#<n>`, mapping.status_shard) and the time
        they entered it, both set by the write that sets the status. Only the task id besides
        the keys (for the prefix filter): the entry changes only with the status, not with every
        write to the execution (docs/storage.md#executions-across-tasks)."""

        class Meta:
            index_name = "by_status"
            projection = IncludeProjection(["taskId"])

        status_shard = UnicodeAttribute(hash_key=True, attr_name="statusShard")
        status_at = NumberAttribute(range_key=True, attr_name="statusAt")

    class ExecutionsById(GlobalSecondaryIndex):
        """An execution's job from its id alone (a bulk retry names executions only): keys only,
        written once, since an execution's keys never change."""

        class Meta:
            index_name = "by_id"
            projection = KeysOnlyProjection()

        execution_id = UnicodeAttribute(hash_key=True, attr_name="executionId")

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
        status_shard = UnicodeAttribute(null=True, attr_name="statusShard")
        status_at = NumberAttribute(null=True, attr_name="statusAt")
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
        worklist = UnicodeAttribute(null=True)
        notified = UnicodeSetAttribute(null=True)
        notifications = JSONAttribute(null=True)
        envs = JSONAttribute(null=True)
        timeout = NumberAttribute(null=True)
        expiration = NumberAttribute(null=True)
        placement = JSONAttribute(null=True)
        concurrency = JSONAttribute(null=True)  # {"key", "limit"}: the key whose slot it takes with its pool's
        waiting_for = UnicodeAttribute(null=True, attr_name="waitingFor")
        timeline = JSONAttribute(null=True)  # domain/timeline.py: bounded, written with the changes it records
        launches = NumberAttribute(default=0)
        resends = NumberAttribute(default=0)
        announcing = BooleanAttribute(null=True)
        notifies = BooleanAttribute(null=True)
        job_retries = NumberAttribute(null=True, attr_name="jobRetries")
        watched = BooleanAttribute(null=True)
        check_at = NumberAttribute(null=True, attr_name="checkAt")
        by_seq = ExecutionsBySeq()
        by_active = ActiveExecutions()
        by_check = ExecutionsByCheck()
        by_status = ExecutionsByStatus()
        by_id = ExecutionsById()

    return TaskModel, JobModel, ExecutionModel
