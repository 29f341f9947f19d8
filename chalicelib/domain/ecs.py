"""What the service knows of ECS tasks, without talking to ECS: task ARNs and ids, the log
streams of a task's output, and the task state change event, parsed once into a typed value."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .messages import MalformedMessage

CONTAINER = "job"  # the job's container in every task definition
LOG_ROUTER = "log_router"
EXECUTION_ID_LENGTH = 36  # execution and job ids are UUIDs
# `startedBy` of our tasks names the execution by its key, `<jobId>_<executionId>`, so the monitor
# reads it with one GetItem.
STARTED_BY_SEPARATOR = "_"


def started_by(job_id: str, execution_id: str) -> str:
    """The `startedBy` of an execution's ECS task (73 characters, within ECS's 128)."""
    return f"{job_id}{STARTED_BY_SEPARATOR}{execution_id}"


def parse_started_by(value: str) -> tuple[str, str] | None:
    """(job id, execution id) from one of our tasks' `startedBy`; None for another's."""
    job_id, separator, execution_id = value.partition(STARTED_BY_SEPARATOR)
    if separator and len(job_id) == EXECUTION_ID_LENGTH and len(execution_id) == EXECUTION_ID_LENGTH:
        return job_id, execution_id
    return None


@dataclass(frozen=True)
class TaskState:
    """An ECS task as DescribeTasks or a task state change event tells it."""

    arn: str
    last_status: str
    exit_code: int | None = None
    reason: str | None = None  # the container's reason, else the task's stopped reason
    started_at: float | None = None
    stopped_at: float | None = None
    stop_code: str | None = None  # TaskFailedToStart, EssentialContainerExited, SpotInterruption ...
    stopped_reason: str | None = None  # the task's, beside the container's own reason
    pull_started_at: float | None = None  # when the image pull began and ended, as ECS reports them
    pull_stopped_at: float | None = None


@dataclass(frozen=True)
class TaskStateChange:
    """An ECS "Task State Change" event of one of our tasks."""

    job_id: str
    execution_id: str
    state: TaskState


def ecs_task_id(task_arn: str) -> str:
    return task_arn.rsplit("/", 1)[-1]


def cluster_of(task_arn: str) -> str:
    parts = task_arn.split("/")
    return parts[-2] if len(parts) >= 3 else "default"


def log_streams(task_arn: str) -> tuple[str, str]:
    """The CloudWatch Logs streams of an ECS task's stdout and stderr (named by the log router)."""
    tid = ecs_task_id(task_arn)
    return f"{tid}/stdout", f"{tid}/stderr"


def epoch(value: Any) -> float | None:
    """API answers carry datetimes, events carry ISO-8601 strings."""
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        return round(value.timestamp(), 3)
    if isinstance(value, str) and not value.replace(".", "", 1).isdigit():
        return round(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp(), 3)
    return round(float(value), 3)


def task_state(task: dict[str, Any]) -> TaskState:
    """The state of a task from the shape DescribeTasks answers and events carry as `detail`."""
    containers = task.get("containers") or [{}]
    container = next((c for c in containers if c.get("name") == CONTAINER), containers[0])
    exit_code = container.get("exitCode")
    return TaskState(
        arn=str(task.get("taskArn") or ""),
        last_status=str(task.get("lastStatus") or ""),
        exit_code=int(exit_code) if exit_code is not None else None,
        reason=container.get("reason") or task.get("stoppedReason"),
        started_at=epoch(task.get("startedAt")),
        stopped_at=epoch(task.get("stoppedAt")),
        stop_code=task.get("stopCode") or None,
        stopped_reason=task.get("stoppedReason") or None,
        pull_started_at=epoch(task.get("pullStartedAt")),
        pull_stopped_at=epoch(task.get("pullStoppedAt")),
    )


def parse_task_event(event: dict[str, Any]) -> TaskStateChange | None:
    """The event of one of our tasks, or None for another service's task. MalformedMessage for
    what is not a task state change at all: it fails, and reaches the dead-letter queue."""
    detail = event.get("detail")
    if not isinstance(detail, dict):
        raise MalformedMessage("not an ECS task state change: no detail")
    value = detail.get("startedBy")
    if value is not None and not isinstance(value, str):
        raise MalformedMessage("not an ECS task state change: startedBy is not a string")
    named = parse_started_by(value) if value is not None else None
    if named is None or not detail.get("taskArn"):
        return None
    job_id, execution_id = named
    try:
        return TaskStateChange(job_id, execution_id, task_state(detail))
    except (TypeError, ValueError):
        return None
