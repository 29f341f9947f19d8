"""One ECS task as the local Fargate stand-ins keep it: its states, its descriptions and its ECS events."""
from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .timestamps import iso, iso_ms

REGION = "us-east-1"  # where the stand-ins' ECS tasks say they run, unless told
ACCOUNT = "123456789012"
ESSENTIAL_EXITED = ("EssentialContainerExited", "Essential container in task exited")
FAILED_TO_START = "TaskFailedToStart"


def ecs_arn(region: str, account: str, resource: str) -> str:
    """The ARN of an ECS resource (`task/<cluster>/<id>`, `cluster/<name>`, ...)."""
    return f"arn:aws:ecs:{region}:{account}:{resource}"


@dataclass(kw_only=True)
class EcsTask:
    """The task's ECS state. Transitions take the moment they happen; callers hold the task's lock."""

    arn: str
    cluster_arn: str
    definition_arn: str
    group: str
    container_arn: str
    container_name: str
    image: str
    created_at: float
    updated_at: float
    started_by: str | None = None
    last_status: str = "PENDING"  # the task's and its one container's
    desired_status: str = "RUNNING"
    started_at: float | None = None
    # There is no image to pull locally: the time from the task's creation to its process
    # starting is reported as its pull, as ECS reports the image pull of a Fargate task.
    pull_started_at: float | None = None
    pull_stopped_at: float | None = None
    stopping_at: float | None = None
    stopped_at: float | None = None
    stop_code: str | None = None
    stopped_reason: str | None = None
    exit_code: int | None = None
    container_reason: str | None = None
    version: int = 1
    described: dict[str, Any] = field(default_factory=dict)  # more members of its description (overrides, tags)

    def touch(self, now: float) -> None:
        self.version += 1
        self.updated_at = now

    def ask_stop(self, code: str, reason: str, now: float) -> bool:
        """Desire STOPPED; False when it was desired already (stopping, failed or stopped)."""
        if self.desired_status == "STOPPED":
            return False
        self.desired_status = "STOPPED"
        self.stopping_at = now
        self.stop_code, self.stopped_reason = code, reason
        self.touch(now)
        return True

    def failed_to_start(self, reason: str, now: float) -> None:
        self.desired_status = "STOPPED"
        self.stop_code = FAILED_TO_START
        self.stopped_reason = self.container_reason = reason
        self.touch(now)

    def running(self, now: float) -> None:
        self.last_status = "RUNNING"
        self.pull_started_at = self.pull_started_at or self.created_at
        self.pull_stopped_at = self.pull_stopped_at or now
        self.started_at = now
        self.touch(now)

    def stopped(self, now: float, exit_code: int | None) -> None:
        self.last_status = self.desired_status = "STOPPED"
        self.stopping_at = self.stopping_at or now
        self.stopped_at = now
        if self.stop_code is None:
            self.stop_code, self.stopped_reason = ESSENTIAL_EXITED
        self.exit_code = None if self.stop_code == FAILED_TO_START else exit_code  # one that never ran has none
        self.touch(now)

    def describe(self, for_event: bool = False) -> dict[str, Any]:
        """The task as DescribeTasks returns it (epoch seconds), or as it is in an ECS event
        (ISO-8601 strings)."""
        when: Callable[[float], Any] = iso_ms if for_event else (lambda moment: moment)
        container: dict[str, Any] = {
            "containerArn": self.container_arn,
            "taskArn": self.arn,
            "name": self.container_name,
            "image": self.image,
            "lastStatus": self.last_status,
        }
        if self.exit_code is not None:
            container["exitCode"] = self.exit_code
        if self.container_reason:
            container["reason"] = self.container_reason
        task: dict[str, Any] = {
            "taskArn": self.arn,
            "clusterArn": self.cluster_arn,
            "taskDefinitionArn": self.definition_arn,
            "lastStatus": self.last_status,
            "desiredStatus": self.desired_status,
            "launchType": "FARGATE",
            "group": self.group,
            "createdAt": when(self.created_at),
            "containers": [container],
            **self.described,
            "version": self.version,
        }
        optional = {"startedBy": self.started_by, "stopCode": self.stop_code, "stoppedReason": self.stopped_reason}
        task.update({key: value for key, value in optional.items() if value is not None})
        for key, moment in (("pullStartedAt", self.pull_started_at), ("pullStoppedAt", self.pull_stopped_at),
                            ("startedAt", self.started_at), ("stoppingAt", self.stopping_at),
                            ("stoppedAt", self.stopped_at)):
            if moment is not None:
                task[key] = when(moment)
        if for_event:
            task["updatedAt"] = iso_ms(self.updated_at)
        return task

    def state_change(self, account: str, region: str, now: float) -> dict[str, Any]:
        """The event an EventBridge rule on `aws.ecs` / `ECS Task State Change` delivers."""
        return {
            "version": "0", "id": str(uuid.uuid4()), "detail-type": "ECS Task State Change", "source": "aws.ecs",
            "account": account, "time": iso(now), "region": region, "resources": [self.arn],
            "detail": self.describe(for_event=True),
        }
