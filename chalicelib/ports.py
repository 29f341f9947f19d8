"""The typed interfaces the services are written against, split by aggregate, and the Backend
that bundles one implementation of each. Two backends provide them: aws (chalicelib/adapters,
deployed) and local (infra/local, never deployed). Every method a service calls is declared
here; the contract suite (tests/contract) pins their behaviour once, for both backends.

Errors: a dependency that cannot be reached raises DependencyDown; a refused conditional write
is a return value (None, False, a Slot), never an exception, unless the method says otherwise."""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, NamedTuple, Protocol, TypedDict, Unpack

from .domain.ecs import TaskState
from .domain.idempotency import Answer
from .domain.live import STREAMS, Cursor, LogEvent, Position, StreamRecord, Subscriber
from .domain.messages import CronTick, JobMessage, Notification, ScheduleFiring
from .domain.model import Execution, ExecutionStatus, Job, JobSpec, Page, Task
from .domain.pools import Pool
from .domain.webhooks import HookResult

# Builds the execution a write adds, from the job as the write reads it (its sequence number is
# set by the store).
MakeExecution = Callable[[Job], Execution]


class ExecutionChanges(TypedDict, total=False):
    """Fields of an execution a write may set besides its status; None removes a field."""

    started_at: float | None
    finished_at: float | None
    exit_code: int | None
    error: str | None
    due_at: float | None
    launched_at: float | None
    task_arn: str | None
    notified: frozenset[str]
    resends: int
    announcing: bool
    watched: bool


class Slot(str, Enum):
    TAKEN = "taken"  # the execution now holds a slot of the pool
    FULL = "full"  # the pool is at its limit
    MOVED = "moved"  # the execution no longer waits for a slot: it holds one, or is no longer launchable


# jobs and tasks --------------------------------------------------------------------------------


class Jobs(Protocol):
    def save_new_job(self, job: Job, execution: Execution | None, *,
                     known_absent: bool = False) -> tuple[Job, Execution | None]:
        """Create the job (and its task when new) with its first execution, atomically, and
        count them. Returns them with their sequence numbers. Conflict if the job exists.
        `known_absent`: the caller made its id or has just read that no job has it, so a store
        that would look first (to spare a sequence number) need not."""
        ...

    def replace_job(self, job: Job, execution: Execution | None, *,
                    max_active: int | None = None) -> tuple[Job, Execution | None]:
        """Replace an existing job's specification (same task), adding an execution, atomically.
        Keeps its creation time, sequence number and executions; clears `stopped` and retries.
        With `max_active`, TooManyActive (a Conflict) when the job already has that many
        executions that have not ended, and nothing is written."""
        ...

    def add_execution(self, job_id: str, make: MakeExecution, *, require_idle: bool = False,
                      clear_stopped: bool = False) -> tuple[Job, Execution]:
        """Add a new execution to a job (a retry asked by a client). With require_idle, a job
        with an execution that is not final gets Conflict; so does a job that does not exist."""
        ...

    def set_job_stopped(self, job_id: str, stopped: bool) -> None: ...

    def get_job(self, job_id: str) -> Job | None: ...

    def get_task(self, task_id: str) -> Task | None: ...

    def list_tasks(self, page: int, per_page: int) -> Page:
        """Oldest first; `total` from a counter. A page is the range of task numbers it covers: a
        store may leave a number unused after a failed write, and the page is then one short."""
        ...

    def list_jobs(self, task_id: str, page: int, per_page: int) -> Page:
        """A task's jobs, oldest first, in pages of job numbers as `list_tasks`."""
        ...

    def ping(self) -> None:
        """Raise when the store cannot be reached."""
        ...


class Executions(Protocol):
    def get_execution(self, job_id: str, execution_id: str) -> Execution | None: ...

    def list_executions(self, job_id: str, page: int, per_page: int, total: int | None = None) -> Page:
        """Newest first; `total` saves a read when the caller has the job at hand."""
        ...

    def active_executions(self, status: ExecutionStatus, limit: int = 500) -> list[Execution]:
        """Executions in a status that is not final, oldest first (the reconciler's worklist of
        launched executions). The worklists below raise UnreadableRecords, carrying the readable
        ones, when some stored records cannot be read."""
        ...

    def overdue_launches(self, before: float, limit: int) -> list[Execution]:
        """Launchable executions that hold no pool slot and whose launch was due before `before`
        (their due time, else their creation), soonest due first: the reconciler's worklist of
        lost launch messages. One waiting out a delay (a retry's backoff, a full pool, a
        throttled launch) is not in it until its delay is over, however long it has waited."""
        ...

    def prepared_executions(self, limit: int = 500) -> list[Execution]:
        """Launchable executions that hold a pool slot (taken, the launch not yet recorded),
        oldest first: with the launched and the held ones, every holder of a slot the reconciler
        recounts."""
        ...

    def transition(self, execution: Execution, target: ExecutionStatus, *, follow_up: MakeExecution | None = None,
                   release_slot: bool = False, unless_job_stopped: bool = False, job: Job | None = None,
                   **fields: Unpack[ExecutionChanges]) -> tuple[Execution, Execution | None] | None:
        """Move an execution to `target` if the lifecycle allows it from its current status
        (lifecycle.sources), setting `fields` (ExecutionChanges); with `follow_up`, atomically
        add the execution it returns (a retry) to the job and count the retry, unless the job is
        stopped as the write reads it (then the move happens alone). A final target
        takes the execution out of the job's active set. With `release_slot`, the pool slot the
        execution holds is given back in the same write (its container is gone); with
        `unless_job_stopped`, nothing moves when its job is stopped. `job` is the caller's read
        of the job, which a store may use for the follow-up instead of reading it (its write
        still conditions on the job as read). Returns the moved execution
        (as stored: `pool` None once released) and the follow-up, or None when the execution had
        already moved on (a duplicate or late event) or its job is stopped."""
        ...

    def update_execution(self, execution: Execution, expected: frozenset[ExecutionStatus] | None = None,
                         **fields: Unpack[ExecutionChanges]) -> bool:
        """Set fields (ExecutionChanges) without changing the status, conditionally on it when
        `expected` is given. False when the condition failed or the execution does not exist."""
        ...

    def renew_launch(self, execution: Execution, **fields: Unpack[ExecutionChanges]) -> Execution | None:
        """Take the next launch generation (`launches` + 1) of a launchable execution whose
        stored generation is still the snapshot's, setting `fields`: the launch message sent
        next is then the only one that may act. None when it has moved on (no longer
        launchable, or another generation was taken first)."""
        ...

    def held_executions(self, limit: int = 500) -> list[Execution]:
        """Final executions that still hold a pool slot (their container was not yet seen gone)
        or are `announcing` (their notifications not yet published), oldest first: the
        reconciler's worklist of stops to repeat, slots to release and endings to announce."""
        ...

    def record_notification(self, job_id: str, execution_id: str, entry: dict[str, Any], keep: int = 50) -> None:
        """Append the result of a notification attempt to the execution, keeping the newest `keep`."""
        ...


class Pools(Protocol):
    def take_slot(self, execution: Execution, pool: str, max_running: int) -> Slot:
        """Take a slot of `pool` for a launchable execution that holds none and whose launch
        generation is still the snapshot's (so a launch message's own snapshot needs no read),
        atomically with recording the pool on it. max_running 0: no limit (still counted).
        MOVED when the execution is not as the snapshot says."""
        ...

    def release_slot(self, execution: Execution) -> bool:
        """Give back the slot the execution holds, once; False when it holds none."""
        ...

    def pool_running(self, names: Sequence[str]) -> dict[str, int]: ...

    def recount(self, pool: str, seen: int, holders: int) -> bool:
        """Set the pool's running count to `holders` (the executions seen holding its slots) if
        it is still `seen`; False when it changed meanwhile (a slot was taken or released)."""
        ...


class Schedules(Protocol):
    def take_schedule(self, job_id: str, version: str, make: MakeExecution | None, *, tick_at: float | None,
                      next_run_at: float | None, skipped: bool = False, max_active: int | None = None,
                      job: Job | None = None) -> tuple[Job, Execution | None] | None:
        """Take one firing of the job's schedule `version`, at most once: a one-shot (tick_at
        None) ends the schedule; a cron tick must be later than the last tick taken and sets the
        next run. With `make`, the execution it returns is added in the same write; `skipped`
        counts a tick not run. With `max_active`, a cron tick that finds the job with that many
        executions that have not ended adds none and is counted skipped (the job's active set,
        an attribute of its item, stays bounded); the caller sees no execution. None when the
        firing is stale (another version, a tick taken). `job`: the caller's read of the job,
        which a store may take instead of reading it (the write conditions on the version and
        execution count it holds, so its active set can only have shrunk since)."""
        ...

    def end_schedule(self, job_id: str, version: str | None = None) -> None:
        """Forget the job's pending schedule (any version, or only `version`)."""
        ...

    def scheduled_jobs(self, limit: int = 50, due_before: float | None = None) -> list[Job]:
        """Jobs with a pending schedule, soonest next run first; UnreadableRecords, carrying the
        readable ones, when some stored jobs cannot be read."""
        ...


class Statistics(Protocol):
    def stats(self) -> dict[str, int]:
        """`tasks`, `jobs`, `scheduled` and one count per execution status."""
        ...


# notifications ---------------------------------------------------------------------------------


class ClaimState(str, Enum):
    CLAIMED = "claimed"  # this worker sends
    SENT = "sent"  # an earlier worker sent and died before its bookkeeping; its outcome is kept
    DONE = "done"  # a duplicate: nothing to do
    BUSY = "busy"  # another worker is sending right now


@dataclass(frozen=True)
class Claim:
    state: ClaimState
    outcome: dict[str, Any] = field(default_factory=dict)


class Deliveries(Protocol):
    """The delivery log: each notification (execution, notification, attempt) is sent once."""

    def claim(self, key: str, lease_seconds: float) -> Claim: ...

    def mark_sent(self, key: str, outcome: dict[str, Any], lease_seconds: float) -> None: ...

    def complete(self, key: str) -> None: ...

    def release(self, key: str) -> None:
        """Give a claim back after a failure before anything was sent."""
        ...


class WebhookPoster(Protocol):
    """POSTs one webhook body; never raises for what the receiver or the network did."""

    def __call__(self, url: str, body: bytes, headers: dict[str, str], *, timeout: float,
                 allow_private: bool = False) -> HookResult: ...


class Mailer(Protocol):
    def send(self, to: Sequence[str], subject: str, text: str, html: str) -> str:
        """Send one message; its id. MailRejected when it can never be sent as it is."""
        ...


# idempotency keys ------------------------------------------------------------------------------


class KeyState(str, Enum):
    RAN = "ran"  # this request ran the action (its answer is kept when it is a success)
    REPLAYED = "replayed"  # the answer of the key's first request, kept
    REUSED = "reused"  # the key was used with another body
    IN_PROGRESS = "in_progress"  # the key's first request has not answered yet


@dataclass(frozen=True)
class KeyOutcome:
    state: KeyState
    answer: Answer | None = None  # RAN: this request's answer; REPLAYED: the first request's


class IdempotencyKeys(Protocol):
    """Requests that carry an Idempotency-Key (domain/idempotency.py): each key runs its action
    once, and its first answer is kept for KEEP_SECONDS after it was given."""

    def run_once(self, key: str, fingerprint: str, action: Callable[[], Answer]) -> KeyOutcome:
        """A key not seen, expired, or whose first request died (its in-progress lease,
        LEASE_SECONDS, ran out): run `action` while holding the key, RAN. Its answer is kept when
        `Answer.kept`; any other answer, or an exception (raised on), frees the key. A key held
        with another fingerprint: REUSED, even while in progress; in progress: IN_PROGRESS;
        answered: REPLAYED with the first answer. DependencyDown when the store cannot be
        reached, before the action ran or after (then the answer could not be kept)."""
        ...


# queues and the scheduler ----------------------------------------------------------------------


class QueueDepth(TypedDict):
    visible: int
    inFlight: int
    delayed: int


class JobQueue(Protocol):
    """The jobs queue: launches, timeout checks, schedule firings and cron ticks. Delays are
    whole seconds, at most limits.SQS_MAX_DELAY_SECONDS; longer ones are clipped."""

    def send(self, message: JobMessage, delay_seconds: float = 0) -> str:
        """The message id."""
        ...

    def pending(self) -> int:
        """About how many messages wait in the queue (visible, delayed and in flight): the
        backlog a throttled launch spreads its next attempt over."""
        ...

    def ping(self) -> None: ...


class NotifyQueue(Protocol):
    def send(self, message: Notification, delay_seconds: float = 0) -> str: ...

    def send_all(self, messages: Sequence[Notification]) -> None:
        """Send every message, or raise DependencyDown."""
        ...


class QueueDepths(Protocol):
    def depths(self) -> dict[str, QueueDepth]:
        """Depth of each of the deployment's queues and dead-letter queues, by role
        (`jobs`, `jobsDeadLetter`, `events`, ...)."""
        ...


class Scheduler(Protocol):
    """Schedules that put a job message on the jobs queue at a time or on a cron."""

    def put_one_time(self, name: str, moment: float, message: ScheduleFiring | CronTick) -> str: ...

    def put_cron(self, name: str, expression: str, zone: str | None, message: CronTick) -> str:
        """`expression` is EventBridge Scheduler's `cron(...)`; the message's scheduled time is
        filled in by the scheduler at each firing."""
        ...

    def delete(self, name: str) -> None:
        """Idempotent: deleting a schedule that does not exist is fine."""
        ...


# containers and their output -------------------------------------------------------------------


class Runner(Protocol):
    """Runs executions as containers (ECS Fargate in AWS, processes locally). Task state
    changes come back on the events queue as ECS task state change events."""

    def run(self, execution: Execution, spec: JobSpec, pool: Pool) -> str:
        """Launch; returns the task ARN. Idempotent per execution id (ECS clientToken).
        LaunchFailed when the platform refuses."""
        ...

    def stop(self, task_arn: str, reason: str) -> None:
        """Ask the task to stop; a task that is gone needs no stopping."""
        ...

    def describe(self, task_arns: Sequence[str]) -> dict[str, TaskState | None]:
        """The state of each task; None for a task the platform no longer knows."""
        ...

    def find(self, execution: Execution, pool: Pool) -> TaskState | None:
        """The task launched for the execution (ECS: started by its id, in the pool's cluster),
        whatever its status; None when there is none. For a launch whose answer was lost."""
        ...

    def ping(self) -> None: ...


class LogChunk(NamedTuple):
    lines: list[str]
    next_token: str | None
    at_end: bool  # the end of the reading was reached: the stream's end (read), its start (read_back)


class LogReader(Protocol):
    def read(self, stream: str, token: str | None) -> LogChunk:
        """One page of a stream's lines (at most about 1 MB) from `token`, oldest first."""
        ...

    def read_back(self, stream: str, token: str | None) -> LogChunk:
        """One page of the lines that come before `token` (the stream's newest with None), at
        most about 1 MB, oldest first within the page; its token goes on further back."""
        ...


class LogEvents(Protocol):
    def read(self, ecs_task_id: str, streams: tuple[str, ...] = STREAMS,
             start_ms: int | None = None) -> Iterator[list[LogEvent]]:
        """Pages of events (with their ids) of the task's streams from `start_ms`, oldest first."""
        ...


# live logs -------------------------------------------------------------------------------------


class Connections(Protocol):
    """Websocket subscribers of live logs, and per watched execution what was delivered."""

    def put_subscriber(self, subscriber: Subscriber) -> None: ...

    def get_subscriber(self, connection_id: str) -> Subscriber | None: ...

    def subscribers(self, execution_id: str) -> list[Subscriber]: ...

    def delete(self, connection_id: str) -> None: ...

    def append_pending(self, connection_id: str, chunk: str) -> str:
        """Keep a live chunk for a subscriber still catching up: `kept`, `full` (too much: the
        subscriber is marked to re-read) or `refused` (it went live or is gone meanwhile: send it
        directly)."""
        ...

    def go_live(self, connection_id: str, cursor: Cursor, pending_seen: int) -> bool: ...

    def clear_overflow(self, connection_id: str) -> None: ...

    def mark_end(self, connection_id: str, end: dict[str, Any]) -> bool: ...

    def open_stream(self, ecs_task_id: str, execution_id: str) -> StreamRecord: ...

    def get_stream(self, ecs_task_id: str) -> StreamRecord | None: ...

    def claim(self, ecs_task_id: str, stream: str, expected: Position | None, new: Position) -> bool: ...

    def end_stream(self, ecs_task_id: str) -> StreamRecord | None: ...

    def ping(self) -> None: ...


class Sockets(Protocol):
    """API Gateway's websocket management API."""

    def post(self, endpoint: str, connection_id: str, data: str) -> bool:
        """False when the connection is gone."""
        ...

    def close(self, endpoint: str, connection_id: str) -> None: ...

    def warm(self) -> None: ...


class Starter(Protocol):
    """Starts the logs function asynchronously with a payload (subscriptions made on $connect)."""

    def start(self, payload: dict[str, Any]) -> None: ...


class SecretReader(Protocol):
    def __call__(self, secret_id: str) -> dict[str, str]: ...


# the backend -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Backend:
    """One implementation of every port: what the wiring builds (aws) or is given (local)."""

    name: str
    jobs: Jobs
    executions: Executions
    pools: Pools
    schedules: Schedules
    statistics: Statistics
    deliveries: Deliveries
    connections: Connections
    job_queue: JobQueue
    notify_queue: NotifyQueue | None  # None: notifications are off
    queue_depths: QueueDepths
    scheduler: Scheduler
    runner: Runner
    logs: LogReader
    log_events: LogEvents
    sockets: Sockets
    starter: Starter
    mailer: Mailer | None  # None: e-mail is off
    webhooks: WebhookPoster
    read_secret: SecretReader
    # What /status says about how containers are isolated from the host (local backend only).
    isolation: str = "ECS Fargate tasks"
    extras: dict[str, Any] = field(default_factory=dict)  # backend-specific handles for its own tooling
    idempotency_keys: IdempotencyKeys | None = None  # None: a request with an Idempotency-Key is refused (503)
