"""The typed interfaces the services are written against, split by aggregate, and the Backend
that bundles one implementation of each. Two backends provide them: aws (chalicelib/adapters,
deployed) and local (infra/local, never deployed). Every method a service calls is declared
here; the contract suite (tests/contract) pins their behaviour once, for both backends.

Errors: a dependency that cannot be reached raises DependencyDown; a refused conditional write
is a return value (None, False, a Slot), never an exception, unless the method says otherwise."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .containers import LogChunk, LogEvents, LogReader, Runner
from .idempotency import IdempotencyKeys, KeyOutcome, KeyState
from .live_logs import Connections, Sockets, Starter
from .notifications import Claim, ClaimState, Deliveries, Mailer, WebhookPoster
from .queues import JobQueue, NotifyQueue, QueueDepth, QueueDepths, Scheduler
from .secrets import SecretReader
from .stores import ExecutionChanges, Executions, Jobs, MakeExecution, Pools, Schedules, Slot, Statistics

__all__ = [
    "Backend",
    "Claim",
    "ClaimState",
    "Connections",
    "Deliveries",
    "ExecutionChanges",
    "Executions",
    "IdempotencyKeys",
    "JobQueue",
    "Jobs",
    "KeyOutcome",
    "KeyState",
    "LogChunk",
    "LogEvents",
    "LogReader",
    "Mailer",
    "MakeExecution",
    "NotifyQueue",
    "Pools",
    "QueueDepth",
    "QueueDepths",
    "Runner",
    "Scheduler",
    "Schedules",
    "SecretReader",
    "Slot",
    "Sockets",
    "Starter",
    "Statistics",
    "WebhookPoster",
]


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
