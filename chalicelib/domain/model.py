"""Tasks, jobs and executions as plain data, and the ids and clocks they use."""
from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import TYPE_CHECKING, Any

from . import timeline as timelines

if TYPE_CHECKING:  # retry.py reads the lifecycle, which reads this module
    from .retry import RetryPolicy


class ExecutionStatus(str, Enum):
    ENQUEUED = "enqueued"
    PULLING = "pulling"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    TIMEDOUT = "timedout"
    EXPIRED = "expired"
    STOPPED = "stopped"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset(
    {
        ExecutionStatus.DONE,
        ExecutionStatus.FAILED,
        ExecutionStatus.TIMEDOUT,
        ExecutionStatus.EXPIRED,
        ExecutionStatus.STOPPED,
    }
)
ACTIVE_STATUSES = frozenset(set(ExecutionStatus) - FINAL_STATUSES)


def now() -> float:
    """Epoch seconds with millisecond precision, as every timestamp of the API."""
    return round(time.time(), 3)


def new_id() -> str:
    """A UUID version 7: random like a v4, but ordered by creation time."""
    millis = int(time.time() * 1000) & ((1 << 48) - 1)
    rand = int.from_bytes(os.urandom(10), "big")
    value = (millis << 80) | (0x7 << 76) | ((rand >> 62) & 0xFFF) << 64 | (0b10 << 62) | (rand & ((1 << 62) - 1))
    return str(uuid.UUID(int=value))


@dataclass(frozen=True)
class Hook:
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    retries: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"url": self.url, "headers": dict(self.headers), "retries": self.retries}


@dataclass(frozen=True)
class Concurrency:
    """At most `limit` executions of the jobs naming one key run at once; `{taskId}` in the key
    is the job's task id."""

    key: str
    limit: int

    def key_of(self, task_id: str) -> str:
        return self.key.replace("{taskId}", task_id)

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "limit": self.limit}


@dataclass(frozen=True)
class JobSpec:
    """What a client asked for: everything a future execution of the job is made from."""

    image: str
    command: str
    envs: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    retries: int = 0
    timeout: float | None = None
    expiration: float | None = None
    start_at: float | None = None
    start_in: str | None = None
    cron: str | None = None
    timezone: str | None = None
    # cron only: allow, forbid (skip a tick while one runs), replace, or buffer (one waits for it)
    overlap: str = "allow"
    notify: dict[str, list[str]] = field(default_factory=dict)
    webhooks: dict[str, list[Hook]] = field(default_factory=dict)
    retry: RetryPolicy | None = None  # instead of `retries`: rules on why an execution failed
    catchup_window: float | None = None  # scheduled only: how late a missed run may still run (None: the default)
    jitter: float = 0.0  # cron only: each tick fires at a random offset in [0, jitter) seconds
    concurrency: Concurrency | None = None

    @property
    def retry_budget(self) -> int:
        """The most retries one run of the job can make."""
        return self.retry.budget if self.retry is not None else self.retries

    @property
    def scheduled(self) -> bool:
        return self.start_at is not None or self.start_in is not None or self.cron is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "command": self.command,
            "envs": dict(self.envs),
            "metadata": self.metadata,
            "retries": self.retries,
            "timeout": self.timeout,
            "expiration": self.expiration,
            "startAt": self.start_at,
            "startIn": self.start_in,
            "cron": self.cron,
            "timezone": self.timezone,
            "overlap": self.overlap,
            "notify": {k: list(v) for k, v in self.notify.items()},
            "webhooks": {k: [h.to_dict() for h in v] for k, v in self.webhooks.items()},
            **({"retry": self.retry.to_dict()} if self.retry is not None else {}),
            **({"catchupWindow": self.catchup_window} if self.catchup_window is not None else {}),
            **({"jitter": self.jitter} if self.jitter else {}),
            **({"concurrency": self.concurrency.to_dict()} if self.concurrency is not None else {}),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobSpec:
        from .retry import RetryPolicy

        return cls(
            image=data["image"],
            command=data["command"],
            envs=dict(data.get("envs") or {}),
            metadata=data.get("metadata") or {},
            retries=int(data.get("retries") or 0),
            timeout=data.get("timeout"),
            expiration=data.get("expiration"),
            start_at=data.get("startAt"),
            start_in=data.get("startIn"),
            cron=data.get("cron"),
            timezone=data.get("timezone"),
            overlap=data.get("overlap") or "allow",
            notify={k: list(v) for k, v in (data.get("notify") or {}).items()},
            webhooks={
                k: [Hook(url=h["url"], headers=dict(h.get("headers") or {}), retries=int(h.get("retries") or 0)) for h in v]
                for k, v in (data.get("webhooks") or {}).items()
            },
            retry=RetryPolicy.from_dict(data["retry"]) if data.get("retry") else None,
            catchup_window=data.get("catchupWindow"),
            jitter=float(data.get("jitter") or 0.0),
            concurrency=Concurrency(**data["concurrency"]) if data.get("concurrency") else None,
        )


@dataclass(frozen=True)
class Task:
    task_id: str
    created_at: float
    last_modified_at: float
    jobs_count: int
    seq: int


@dataclass(frozen=True)
class Job:
    task_id: str
    job_id: str
    spec: JobSpec
    created_at: float
    last_modified_at: float
    request_ip: str | None = None
    execution_count: int = 0
    retry_count: int = 0
    seq: int = 0
    active: frozenset[str] = frozenset()  # ids of executions not yet final
    stopped: bool = False  # stopped by a client: no retries, no scheduled runs until PUT or retry
    schedule_version: str | None = None  # the pending schedule's generation; None: nothing pending
    next_run_at: float | None = None
    last_tick: float | None = None  # scheduled time of the last cron tick taken (ticks are taken once)
    skipped_ticks: int = 0
    last_skipped_at: float | None = None
    last_skip_reason: str | None = None  # why the last tick (or one-shot firing) counted in skipped_ticks did not run
    paused_at: float | None = None  # paused by a client: its schedule fires nothing until resumed
    buffered_tick: float | None = None  # overlap buffer: the one tick waiting for the running execution to end
    buffered_at: float | None = None  # when that tick began to wait

    @property
    def paused(self) -> bool:
        return self.paused_at is not None

    def with_changes(self, **changes: Any) -> Job:
        return replace(self, **changes)


@dataclass(frozen=True)
class Placement:
    """Where its container runs and how large it is: the cluster and task size of the pool the
    execution's task matched when it was made, frozen on it with its launch parameters."""

    cluster: str
    cpu: str
    memory: str

    def to_dict(self) -> dict[str, str]:
        return {"cluster": self.cluster, "cpu": self.cpu, "memory": self.memory}

    @classmethod
    def from_dict(cls, value: Any) -> Placement | None:
        """None for what is not a placement."""
        if not isinstance(value, dict) or not all(isinstance(value.get(k), str) for k in ("cluster", "cpu", "memory")):
            return None
        return cls(value["cluster"], value["cpu"], value["memory"])


@dataclass(frozen=True)
class Execution:
    task_id: str
    job_id: str
    execution_id: str
    image: str
    command: str
    status: ExecutionStatus
    created_at: float
    seq: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    exit_code: int | None = None
    request_ip: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    log: str | None = None
    error: str | None = None
    due_at: float | None = None  # when it should launch (retry backoff, schedules)
    launched_at: float | None = None
    task_arn: str | None = None  # the ECS task running it
    pool: str | None = None  # the pool whose slot it holds, until its container is gone
    notified: frozenset[str] = frozenset()  # lifecycle events ("started", "ended") already announced
    notifications: tuple[dict[str, Any], ...] = ()  # results of webhook and e-mail attempts, newest last
    # Launch parameters frozen when the execution is made (with image and command): a PUT of the
    # job changes only later executions, and a repeated RunTask with the same client token is
    # the same request. No timeout: the default applies.
    envs: dict[str, str] = field(default_factory=dict)
    timeout: float | None = None
    expiration: float | None = None
    # The cluster and size it launches with (None, for one built without a pool: its pool's apply).
    placement: Placement | None = None
    # The generation of the one launch message that may act on this execution: every launch
    # message carries the generation it was sent with, each resend takes the next one, and a
    # message of an older generation (a duplicate, a copy that came back late) does nothing.
    launches: int = 0
    resends: int = 0  # launches the reconciler resent because the pending one was overdue
    # Ended with notifications still to be published: on the reconciler's worklist until they are.
    announcing: bool = False
    # The job's policy as it was when the execution was made, so the engine reads the job only
    # when it has something to do with it: `notifies` whether the job had any webhook or e-mail,
    # `job_retries` the retries it allowed.
    notifies: bool = False
    job_retries: int = 0
    # A live log subscriber watches its output: the monitor ends their streams when it stops.
    watched: bool = False
    # Its job's concurrency key (`{taskId}` filled in) and limit, frozen: a launch takes a slot of
    # the key with its pool slot, and gives both back together.
    concurrency: Concurrency | None = None
    # While it waits to launch: what for, in one sentence (a full pool or key, a throttled RunTask).
    waiting_for: str | None = None
    # Where its time went (domain/timeline.py): entries written with the changes they record.
    timeline: tuple[dict[str, Any], ...] = ()

    def with_changes(self, **changes: Any) -> Execution:
        return replace(self, **changes)

    @property
    def spec(self) -> JobSpec:
        """What its container runs: the launch parameters frozen on it."""
        return JobSpec(image=self.image, command=self.command, envs=dict(self.envs))


@dataclass(frozen=True)
class Page:
    """One page of a list whose total is known from a counter."""

    items: list[Any]
    page: int
    per_page: int
    total: int

    @property
    def pages(self) -> int:
        return -(-self.total // self.per_page) if self.total else 0

    @property
    def has_next(self) -> bool:
        return self.page < self.pages

    @property
    def has_prev(self) -> bool:
        return self.page > 1



def seq_range(page: int, per_page: int, total: int, newest_first: bool = False) -> tuple[int, int]:
    """The 1-based sequence numbers (inclusive) that a page covers, for items numbered densely
    from 1 in creation order. Empty when low > high."""
    if newest_first:
        high = total - (page - 1) * per_page
        return max(1, high - per_page + 1), high
    low = (page - 1) * per_page + 1
    return low, min(total, low + per_page - 1)


def new_execution(job: Job, at: float, *, placement: Placement, request_ip: str | None = None,
                  due_at: float | None = None, metadata: dict[str, Any] | None = None,
                  accepted: dict[str, Any] | None = None) -> Execution:
    """The one way a new execution is made: enqueued, with the job's launch parameters as they
    are now and the `placement` of its pool frozen on it. `accepted` is its timeline's first
    entry, why it exists (by default: posted)."""
    spec = job.spec
    return Execution(task_id=job.task_id, job_id=job.job_id, execution_id=new_id(), image=spec.image,
                     command=spec.command, status=ExecutionStatus.ENQUEUED, created_at=at, request_ip=request_ip,
                     due_at=due_at, metadata=dict(metadata or {}), envs=dict(spec.envs),
                     timeout=None if spec.timeout is None else float(spec.timeout), expiration=spec.expiration,
                     placement=placement, notifies=bool(spec.notify or spec.webhooks), job_retries=spec.retry_budget,
                     concurrency=Concurrency(spec.concurrency.key_of(job.task_id), spec.concurrency.limit)
                     if spec.concurrency is not None else None,
                     timeline=(accepted or timelines.accepted(at, timelines.POSTED),))
