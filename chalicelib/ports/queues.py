"""The queue ports (jobs, notifications, their depths) and the scheduler that feeds the jobs queue."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypedDict

from ..domain.messages import CronTick, JobMessage, Notification, ScheduleFiring

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

    def put_cron(self, name: str, expression: str, zone: str | None, message: CronTick, *, enabled: bool = True) -> str:
        """`expression` is EventBridge Scheduler's `cron(...)`; the message's scheduled time is
        filled in by the scheduler at each firing. A schedule put not `enabled` fires nothing
        until it is put again enabled (Scheduler's `State`)."""
        ...

    def is_enabled(self, name: str) -> bool | None:
        """Whether the schedule fires (its `State`); None when there is no such schedule."""
        ...

    def delete(self, name: str) -> None:
        """Idempotent: deleting a schedule that does not exist is fine."""
        ...
