"""ECS Fargate: launches executions as tasks, stops them and asks how they are."""
from __future__ import annotations

import hashlib
import shlex
from collections.abc import Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..config import Settings
from ..domain.ecs import CONTAINER, LOG_ROUTER, TaskState, cluster_of, started_by, task_state
from ..domain.errors import LaunchFailed
from ..domain.limits import ECS_DESCRIBE_BATCH, ECS_MAX_REASON_CHARS, ECS_MAX_TAG_CHARS
from ..domain.model import Execution, JobSpec
from ..domain.pools import Pool

# RunTask answers these when capacity or the API is busy: the launch is tried again later.
RETRYABLE_CODES = {"ThrottlingException", "ServerException", "ServiceUnavailableException", "LimitExceededException"}
RETRYABLE_FAILURES = ("RESOURCE", "AGENT", "Capacity", "capacity", "throttl", "Throttl")


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
        return str(arn)

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
                "startedBy": started_by(execution.job_id, execution.execution_id),
                "overrides": {
                    "cpu": pool.cpu,
                    "memory": pool.memory,
                    "containerOverrides": [
                        {"name": CONTAINER, "command": shlex.split(execution.command), "environment": environment}
                    ],
                },
                "tags": [
                    {"key": "fastlane:task", "value": execution.task_id[:ECS_MAX_TAG_CHARS]},
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
            if code == "ConflictException":
                # Our client token (the execution id) is in use by an earlier RunTask with other
                # parameters: the task it names is this execution's, and is adopted.
                adopted = self._adopt(error.response, execution, pool)
                if adopted is not None:
                    return adopted
            raise LaunchFailed(f"{code}: {message}", retryable=code in RETRYABLE_CODES) from error
        except BotoCoreError as error:
            raise LaunchFailed(str(error), retryable=True) from error
        tasks = response.get("tasks") or []
        if tasks:
            return str(tasks[0]["taskArn"])
        failure = (response.get("failures") or [{}])[0]
        reason = f"{failure.get('reason', 'unknown')}: {failure.get('detail', '')}".strip(": ")
        raise LaunchFailed(reason, retryable=any(r in reason for r in RETRYABLE_FAILURES))

    def _adopt(self, response: dict[str, Any], execution: Execution, pool: Pool) -> str | None:
        named = [str(arn) for arn in response.get("resourceIds") or [] if ":task/" in str(arn)]
        if named:
            return named[0]
        found = self.find(execution, pool)
        return found.arn if found is not None else None

    def find(self, execution: Execution, pool: Pool) -> TaskState | None:
        """ListTasks by `startedBy` (the execution's key), running tasks first, then stopped ones
        (ECS lists those for about an hour), in the pool's cluster."""
        arns: list[str] = []
        name = started_by(execution.job_id, execution.execution_id)
        try:
            for desired in ("RUNNING", "STOPPED"):
                response = self._ecs.list_tasks(cluster=pool.cluster, startedBy=name, desiredStatus=desired)
                arns += [str(arn) for arn in response.get("taskArns") or []]
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ClusterNotFoundException":
                return None
            raise
        if not arns:
            return None
        states = [state for state in self.describe(arns[:ECS_DESCRIBE_BATCH]).values() if state is not None]
        running = [state for state in states if state.last_status != "STOPPED"]
        found = running or states
        return found[0] if found else None

    def stop(self, task_arn: str, reason: str) -> None:
        try:
            self._ecs.stop_task(cluster=cluster_of(task_arn), task=task_arn, reason=reason[:ECS_MAX_REASON_CHARS])
        except ClientError as error:
            # A task that is already gone needs no stopping.
            if "not found" not in str(error).lower():
                raise

    def describe(self, task_arns: Sequence[str]) -> dict[str, TaskState | None]:
        """The state of each task; None for a task ECS no longer knows."""
        result: dict[str, TaskState | None] = {}
        by_cluster: dict[str, list[str]] = {}
        for arn in task_arns:
            by_cluster.setdefault(cluster_of(arn), []).append(arn)
        for cluster, arns in by_cluster.items():
            for start in range(0, len(arns), ECS_DESCRIBE_BATCH):
                response = self._ecs.describe_tasks(cluster=cluster, tasks=arns[start:start + ECS_DESCRIBE_BATCH])
                for task in response.get("tasks", []):
                    result[task["taskArn"]] = task_state(task)
                for failure in response.get("failures", []):
                    result[failure.get("arn", "")] = None
        return {arn: result.get(arn) for arn in task_arns}

    def ping(self) -> None:
        self._ecs.list_clusters(maxResults=1)
