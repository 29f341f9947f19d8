"""What the service knows of ECS tasks, without talking to ECS: task ARNs and ids, the log
streams of a task's output, and the task state change event, parsed once into a typed value."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .messages import MalformedMessage

CONTAINER = "job"  # the job's container in every task definition
LOG_ROUTER = "log_router"
EXECUTION_ID_LENGTH = 36  # `startedBy` of our tasks is an execution id (a UUID)


@dataclass(frozen=True)
class TaskState:
    """An ECS task as DescribeTasks or a task state change event tells it."""

    arn: str
    last_status: str
    exit_code: int | None = None
    reason: str | None = None
    started_at: float | None = None
    stopped_at: float | None = None


@dataclass(frozen=True)
class TaskStateChange:
    """An ECS "Task State Change" event of one of our tasks."""

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
    )


def parse_task_event(event: dict[str, Any]) -> TaskStateChange | None:
    """The event of one of our tasks, or None for another service's task. MalformedMessage for
    what is not a task state change at all: it fails, and reaches the dead-letter queue."""
    detail = event.get("detail")
    if not isinstance(detail, dict):
        raise MalformedMessage("not an ECS task state change: no detail")
    execution_id = detail.get("startedBy")
    if execution_id is not None and not isinstance(execution_id, str):
        raise MalformedMessage("not an ECS task state change: startedBy is not a string")
    if execution_id is None or len(execution_id) != EXECUTION_ID_LENGTH or not detail.get("taskArn"):
        return None
    try:
        return TaskStateChange(execution_id, task_state(detail))
    except (TypeError, ValueError):
        return None
