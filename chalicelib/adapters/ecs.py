"""ECS Fargate: launches executions as tasks, stops them and asks how they are."""
from __future__ import annotations

import hashlib
import shlex
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..config import Settings
from ..domain.model import Execution, JobSpec
from ..domain.pools import Pool

CONTAINER = "job"
LOG_ROUTER = "log_router"
# RunTask answers these when capacity or the API is busy: the launch is tried again later.
RETRYABLE_CODES = {"ThrottlingException", "ServerException", "ServiceUnavailableException", "LimitExceededException"}
RETRYABLE_FAILURES = ("RESOURCE", "AGENT", "Capacity", "capacity", "throttl", "Throttl")


class LaunchFailed(Exception):
    def __init__(self, reason: str, retryable: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


@dataclass(frozen=True)
class TaskState:
    arn: str
    last_status: str
    exit_code: int | None
    reason: str | None
    started_at: float | None
    stopped_at: float | None


def task_id(task_arn: str) -> str:
    return task_arn.rsplit("/", 1)[-1]


def cluster_of(task_arn: str) -> str:
    parts = task_arn.split("/")
    return parts[-2] if len(parts) >= 3 else "default"


def log_streams(task_arn: str) -> tuple[str, str]:
    """The CloudWatch Logs streams of an ECS task's stdout and stderr (named by the log router)."""
    tid = task_id(task_arn)
    return f"{tid}/stdout", f"{tid}/stderr"


def _epoch(value: Any) -> float | None:
    """API answers carry datetimes, events carry ISO-8601 strings."""
    if value in (None, ""):
        return None
    if hasattr(value, "timestamp"):
        return round(value.timestamp(), 3)
    if isinstance(value, str) and not value.replace(".", "", 1).isdigit():
        from datetime import datetime

        return round(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp(), 3)
    return round(float(value), 3)


def task_state(task: dict[str, Any]) -> TaskState:
    container = next((c for c in task.get("containers", []) if c.get("name") == CONTAINER),
                     (task.get("containers") or [{}])[0])
    exit_code = container.get("exitCode")
    return TaskState(
        arn=task["taskArn"],
        last_status=task.get("lastStatus", ""),
        exit_code=int(exit_code) if exit_code is not None else None,
        reason=container.get("reason") or task.get("stoppedReason"),
        started_at=_epoch(task.get("startedAt")),
        stopped_at=_epoch(task.get("stoppedAt")),
    )


class EcsRunner:
    """One task definition per distinct image (registered once, then reused); everything else
    (command, environment, size) goes in the RunTask overrides."""

    def __init__(self, client: Any, settings: Settings) -> None:
        self._ecs = client
        self._settings = settings
        self._definitions: dict[str, str] = {}

    def family(self, image: str) -> str:
        digest = hashlib.sha256(image.encode()).hexdigest()[:20]
        return f"{self._settings.ecs_cluster}-{digest}"

    def _definition(self, image: str) -> dict[str, Any]:
        container: dict[str, Any] = {"name": CONTAINER, "image": image, "essential": True,
                                     "memoryReservation": 64}
        containers = [container]
        if self._settings.log_router_image:
            # stdout and stderr go to two streams of the job log group, named after the task.
            # The `cloudwatch` output (aws-for-fluent-bit) names streams with `$(...)` templates and
            # knows the ECS task id; FireLens records carry `source` (stdout/stderr) and the line
            # under `log`, which is all that is sent. The core `cloudwatch_logs` output cannot say
            # `<task id>/<source>`: FireLens adds no task id, and its templates allow only `.` or
            # `,` after a variable. docs/deploy.md#firelens.
            container["logConfiguration"] = {
                "logDriver": "awsfirelens",
                "options": {
                    "Name": "cloudwatch",
                    "region": self._settings.region,
                    "log_group_name": self._settings.log_group,
                    "log_stream_name": "$(ecs_task_id)/$(source)",
                    "default_log_stream_name": "unrouted",
                    "log_key": "log",
                    "auto_create_group": "false",
                },
            }
            containers.append({
                "name": LOG_ROUTER,
                "image": self._settings.log_router_image,
                "essential": True,
                "memoryReservation": 50,
                "firelensConfiguration": {"type": "fluentbit", "options": {"enable-ecs-log-metadata": "true"}},
            })
        definition: dict[str, Any] = {
            "family": self.family(image),
            "networkMode": "awsvpc",
            "requiresCompatibilities": ["FARGATE"],
            "cpu": self._settings.task_cpu,
            "memory": self._settings.task_memory,
            "containerDefinitions": containers,
            "tags": [{"key": "service", "value": "fastlane"}],
        }
        if self._settings.execution_role_arn:
            definition["executionRoleArn"] = self._settings.execution_role_arn
        if self._settings.task_role_arn:
            definition["taskRoleArn"] = self._settings.task_role_arn
        return definition

    def task_definition(self, image: str) -> str:
        if image in self._definitions:
            return self._definitions[image]
        family = self.family(image)
        arn = None
        try:
            found = self._ecs.describe_task_definition(taskDefinition=family)["taskDefinition"]
            images = [c.get("image") for c in found.get("containerDefinitions", [])]
            if image in images and found.get("status", "ACTIVE") == "ACTIVE":
                arn = found["taskDefinitionArn"]
        except ClientError:
            arn = None
        if arn is None:
            arn = self._ecs.register_task_definition(**self._definition(image))["taskDefinition"]["taskDefinitionArn"]
        self._definitions[image] = arn
        return arn

    def run(self, execution: Execution, spec: JobSpec, pool: Pool) -> str:
        """Launch; returns the task ARN. The execution id is the client token, so asking twice
        (a redelivered message, a retried call) starts one task."""
        try:
            definition = self.task_definition(spec.image)
            environment = [{"name": k, "value": v} for k, v in spec.envs.items()]
            environment += [
                {"name": "FASTLANE_TASK_ID", "value": execution.task_id},
                {"name": "FASTLANE_JOB_ID", "value": execution.job_id},
                {"name": "FASTLANE_EXECUTION_ID", "value": execution.execution_id},
            ]
            request: dict[str, Any] = {
                "cluster": pool.cluster,
                "taskDefinition": definition,
                "count": 1,
                "clientToken": execution.execution_id,
                "startedBy": execution.execution_id,
                "overrides": {
                    "cpu": pool.cpu,
                    "memory": pool.memory,
                    "containerOverrides": [
                        {"name": CONTAINER, "command": shlex.split(execution.command), "environment": environment}
                    ],
                },
                "tags": [
                    {"key": "fastlane:task", "value": execution.task_id[:256]},
                    {"key": "fastlane:job", "value": execution.job_id},
                    {"key": "fastlane:execution", "value": execution.execution_id},
                ],
                "propagateTags": "TASK_DEFINITION",
                "enableECSManagedTags": True,
            }
            if pool.capacity_providers:
                request["capacityProviderStrategy"] = [{"capacityProvider": cp, "weight": 1}
                                                       for cp in pool.capacity_providers]
            else:
                request["launchType"] = "FARGATE"
            if pool.subnets:
                request["networkConfiguration"] = {"awsvpcConfiguration": {
                    "subnets": list(pool.subnets),
                    "securityGroups": list(pool.security_groups),
                    "assignPublicIp": pool.assign_public_ip,
                }}
            response = self._ecs.run_task(**request)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            message = error.response.get("Error", {}).get("Message", str(error))
            raise LaunchFailed(f"{code}: {message}", retryable=code in RETRYABLE_CODES) from error
        except BotoCoreError as error:
            raise LaunchFailed(str(error), retryable=True) from error
        tasks = response.get("tasks") or []
        if tasks:
            return tasks[0]["taskArn"]
        failure = (response.get("failures") or [{}])[0]
        reason = f"{failure.get('reason', 'unknown')}: {failure.get('detail', '')}".strip(": ")
        raise LaunchFailed(reason, retryable=any(r in reason for r in RETRYABLE_FAILURES))

    def stop(self, task_arn: str, reason: str) -> None:
        try:
            self._ecs.stop_task(cluster=cluster_of(task_arn), task=task_arn, reason=reason[:255])
        except ClientError as error:
            # A task that is already gone needs no stopping.
            if "not found" not in str(error).lower():
                raise

    def describe(self, task_arns: list[str]) -> dict[str, TaskState | None]:
        """The state of each task; None for a task ECS no longer knows."""
        result: dict[str, TaskState | None] = {}
        by_cluster: dict[str, list[str]] = {}
        for arn in task_arns:
            by_cluster.setdefault(cluster_of(arn), []).append(arn)
        for cluster, arns in by_cluster.items():
            for start in range(0, len(arns), 100):
                response = self._ecs.describe_tasks(cluster=cluster, tasks=arns[start:start + 100])
                for task in response.get("tasks", []):
                    result[task["taskArn"]] = task_state(task)
                for failure in response.get("failures", []):
                    result[failure.get("arn", "")] = None
        return {arn: result.get(arn) for arn in task_arns}

    def ping(self) -> None:
        self._ecs.list_clusters(maxResults=1)
