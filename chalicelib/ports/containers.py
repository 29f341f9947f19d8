"""The container ports: the runner of executions and the readers of their output."""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import NamedTuple, Protocol

from ..domain.ecs import TaskState
from ..domain.live import STREAMS, LogEvent
from ..domain.model import Execution, JobSpec
from ..domain.pools import Pool

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
