"""A stand-in for the ECS API of one account and region, for the scale simulation: Fargate's
launch and RunTask rate limits as token buckets in virtual time, client-token idempotency, and
tasks that pull, run and stop on a virtual timeline, announcing RUNNING and STOPPED as the
EventBridge rule delivers them."""
from __future__ import annotations

import heapq
import json
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

ACCOUNT = "123456789012"
REGION = "us-east-1"
# Fargate's documented limits per account and region: a burst of 100 task launches refilled at
# 20 a second, and the RunTask API itself at the same burst and rate. Beyond them RunTask answers
# ThrottlingException (what boto3 raises once its own retries are spent).
LAUNCH_BURST, LAUNCH_RATE = 100.0, 20.0
API_BURST, API_RATE = 100.0, 20.0


class TokenBucket:
    """`burst` tokens, refilled at `rate` a second of virtual time. Calls arrive slightly out of
    time order (invocations run one after another in real time, overlapping in virtual time):
    refill follows the latest time seen, so an earlier call never refills the bucket twice."""

    def __init__(self, burst: float, rate: float) -> None:
        self.burst, self.rate = burst, rate
        self.tokens = burst
        self.seen = 0.0

    def refill(self, at: float) -> None:
        if at > self.seen:
            self.tokens = min(self.burst, self.tokens + (at - self.seen) * self.rate)
            self.seen = at

    def take(self, at: float, count: float = 1.0) -> bool:
        self.refill(at)
        if self.tokens >= count:
            self.tokens -= count
            return True
        return False


def iso(at: float) -> str:
    """An instant as EventBridge writes it in an event: ISO-8601 UTC with milliseconds."""
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(at * 1000) % 1000:03d}Z"


def _error(code: str, message: str, operation: str, **extra: Any) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}, **extra}, operation)


@dataclass
class EcsTask:
    arn: str
    cluster: str
    request: dict[str, Any]
    created_at: float
    run_seconds: float
    last_status: str = "PROVISIONING"
    desired_status: str = "RUNNING"
    started_at: float | None = None
    stopped_at: float | None = None
    exit_code: int | None = None
    stopped_reason: str | None = None
    version: int = 1

    @property
    def container_name(self) -> str:
        overrides = (self.request.get("overrides") or {}).get("containerOverrides") or [{}]
        return str(overrides[0].get("name") or "job")

    @property
    def execution_id(self) -> str:
        """Which execution asked for it, from its tags or environment (whatever `startedBy` says)."""
        for tag in self.request.get("tags") or []:
            if tag.get("key") == "fastlane:execution":
                return str(tag["value"])
        overrides = (self.request.get("overrides") or {}).get("containerOverrides") or [{}]
        for variable in overrides[0].get("environment") or []:
            if variable.get("name") == "FASTLANE_EXECUTION_ID":
                return str(variable["value"])
        return str(self.request.get("startedBy") or "")

    def detail(self) -> dict[str, Any]:
        """The task as DescribeTasks and the task state change event's `detail` show it, with
        times as epoch seconds (the callers turn them into their own shape)."""
        container: dict[str, Any] = {"name": self.container_name, "lastStatus": self.last_status,
                                     "taskArn": self.arn, "containerArn": self.arn.replace(":task/", ":container/")}
        if self.exit_code is not None:
            container["exitCode"] = self.exit_code
        request = self.request
        detail: dict[str, Any] = {
            "taskArn": self.arn,
            "clusterArn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{self.cluster}",
            "taskDefinitionArn": request["taskDefinition"],
            "startedBy": request.get("startedBy"),
            "group": request.get("group") or f"family:{request['taskDefinition'].rsplit('/', 1)[-1].split(':')[0]}",
            "overrides": request.get("overrides") or {},
            "lastStatus": self.last_status,
            "desiredStatus": self.desired_status,
            "launchType": request.get("launchType", "FARGATE"),
            "containers": [container],
            "createdAt": self.created_at,
            "version": self.version,
        }
        if self.started_at is not None:
            detail["startedAt"] = self.started_at
        if self.stopped_at is not None:
            detail["stoppedAt"] = self.stopped_at
            detail["stoppedReason"] = self.stopped_reason
        return {key: value for key, value in detail.items() if value is not None}


@dataclass
class FargateCounts:
    run_task_calls: int = 0
    launches: int = 0
    throttles: int = 0
    replays: int = 0
    conflicts: int = 0
    other_calls: int = 0
    launch_times: list[float] = field(default_factory=list)


class FakeEcs:
    """The methods of a boto3 ECS client that EcsRunner calls. `clock()` is the virtual time of
    the call; `spend(operation)` charges the caller's invocation for it; `deliver(event, at)`
    puts an EventBridge event on the events queue."""

    def __init__(self, clock: Callable[[], float], deliver: Callable[[dict[str, Any], float], None], *,
                 spend: Callable[[str], None] = lambda _operation: None, rng: random.Random | None = None,
                 pull_seconds: tuple[float, float] = (2.0, 6.0), run_seconds: tuple[float, float] = (0.5, 1.5),
                 event_delay: float = 0.5) -> None:
        self._clock, self._deliver, self._spend = clock, deliver, spend
        self._rng = rng or random.Random(0)
        self._pull, self._run, self._event_delay = pull_seconds, run_seconds, event_delay
        self.launch_bucket = TokenBucket(LAUNCH_BURST, LAUNCH_RATE)
        self.api_bucket = TokenBucket(API_BURST, API_RATE)
        self.tasks: dict[str, EcsTask] = {}
        self._tokens: dict[str, tuple[str, str]] = {}  # client token -> (request fingerprint, task arn)
        self._definitions: dict[str, dict[str, Any]] = {}
        self._timeline: list[tuple[float, int, str, str]] = []  # (at, seq, task arn, next status)
        self._seq = 0
        self.counts = FargateCounts()

    # the ECS API ---------------------------------------------------------------------------------

    def run_task(self, **request: Any) -> dict[str, Any]:
        self._spend("ecs:RunTask")
        at = self._clock()
        self.counts.run_task_calls += 1
        token = request.get("clientToken")
        fingerprint = json.dumps({k: v for k, v in request.items() if k != "clientToken"}, sort_keys=True, default=str)
        if not self.api_bucket.take(at):
            return self._throttled()
        if token and token in self._tokens:
            known, arn = self._tokens[token]
            if known != fingerprint:
                self.counts.conflicts += 1
                raise _error("ConflictException", "The specified client token has already been used with "
                             "different parameters.", "RunTask", resourceIds=[arn])
            self.counts.replays += 1
            return {"tasks": [self._described(self.tasks[arn])], "failures": []}
        count = int(request.get("count", 1))
        if not self.launch_bucket.take(at, count):
            return self._throttled()
        definition = request["taskDefinition"]
        if definition not in self._definitions and not any(d["taskDefinitionArn"] == definition
                                                           for d in self._definitions.values()):
            raise _error("ClientException", "TaskDefinition not found.", "RunTask")
        cluster = request.get("cluster") or "default"
        tasks = []
        for _ in range(count):
            arn = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/{cluster}/{uuid.UUID(int=self._rng.getrandbits(128)).hex}"
            task = EcsTask(arn, cluster, request, at, self._rng.uniform(*self._run))
            self.tasks[arn] = task
            self._at(at + self._rng.uniform(*self._pull), arn, "RUNNING")
            self.counts.launches += 1
            self.counts.launch_times.append(at)
            tasks.append(self._described(task))
        if token:
            self._tokens[token] = (fingerprint, tasks[0]["taskArn"])
        return {"tasks": tasks, "failures": []}

    def _throttled(self) -> dict[str, Any]:
        self.counts.throttles += 1
        raise _error("ThrottlingException", "Rate exceeded", "RunTask")

    def describe_tasks(self, cluster: str, tasks: list[str], **_: Any) -> dict[str, Any]:
        self._call("ecs:DescribeTasks")
        found = [self._described(self.tasks[arn]) for arn in tasks if arn in self.tasks]
        missing = [{"arn": arn, "reason": "MISSING"} for arn in tasks if arn not in self.tasks]
        return {"tasks": found, "failures": missing}

    def stop_task(self, cluster: str, task: str, reason: str = "", **_: Any) -> dict[str, Any]:
        self._call("ecs:StopTask")
        if task not in self.tasks:
            raise _error("InvalidParameterException", "The referenced task was not found.", "StopTask")
        found = self.tasks[task]
        if found.last_status != "STOPPED":
            found.desired_status = "STOPPED"
            self._stop(found, self._clock(), exit_code=None, reason=reason or "Task stopped by user")
        return {"task": self._described(found)}

    def list_tasks(self, cluster: str = "default", startedBy: str | None = None,  # noqa: N803 - boto3's names
                   desiredStatus: str = "RUNNING", **_: Any) -> dict[str, Any]:  # noqa: N803
        self._call("ecs:ListTasks")
        arns = [t.arn for t in self.tasks.values() if t.cluster == cluster and t.desired_status == desiredStatus
                and (startedBy is None or t.request.get("startedBy") == startedBy)]
        return {"taskArns": arns}

    def describe_task_definition(self, taskDefinition: str, **_: Any) -> dict[str, Any]:  # noqa: N803
        self._call("ecs:DescribeTaskDefinition")
        family = taskDefinition.rsplit("/", 1)[-1].split(":")[0]
        if family not in self._definitions:
            raise _error("ClientException", "Unable to describe task definition.", "DescribeTaskDefinition")
        return {"taskDefinition": self._definitions[family]}

    def register_task_definition(self, **definition: Any) -> dict[str, Any]:
        self._call("ecs:RegisterTaskDefinition")
        family = definition["family"]
        revision = int(self._definitions.get(family, {}).get("revision", 0)) + 1
        stored = {**definition, "revision": revision, "status": "ACTIVE",
                  "taskDefinitionArn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/{family}:{revision}"}
        self._definitions[family] = stored
        return {"taskDefinition": stored}

    def list_clusters(self, **_: Any) -> dict[str, Any]:
        self._call("ecs:ListClusters")
        return {"clusterArns": [f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/fastlane"]}

    # the timeline ------------------------------------------------------------------------------

    def next_change(self) -> float | None:
        return self._timeline[0][0] if self._timeline else None

    def advance(self, until: float) -> None:
        """Move every task whose next status is due by `until` on to it."""
        while self._timeline and self._timeline[0][0] <= until:
            at, _, arn, status = heapq.heappop(self._timeline)
            task = self.tasks[arn]
            if task.last_status == "STOPPED":
                continue  # stopped early (StopTask): its planned steps are void
            if status == "RUNNING":
                task.last_status, task.started_at = "RUNNING", at
                task.version += 1
                self._announce(task, at)
                self._at(at + task.run_seconds, arn, "STOPPED")
            else:
                task.desired_status = "STOPPED"
                self._stop(task, at, exit_code=0, reason="Essential container in task exited")

    @property
    def active(self) -> int:
        return sum(1 for t in self.tasks.values() if t.last_status != "STOPPED")

    def _stop(self, task: EcsTask, at: float, *, exit_code: int | None, reason: str) -> None:
        task.last_status, task.stopped_at, task.exit_code, task.stopped_reason = "STOPPED", at, exit_code, reason
        task.version += 1
        self._announce(task, at)

    def _announce(self, task: EcsTask, at: float) -> None:
        """The EventBridge event of a status change; the rule passes RUNNING and STOPPED only."""
        detail = task.detail()
        for name in ("createdAt", "startedAt", "stoppedAt"):
            if name in detail:
                detail[name] = iso(detail[name])
        event = {"version": "0", "id": str(uuid.UUID(int=self._rng.getrandbits(128))),
                 "detail-type": "ECS Task State Change", "source": "aws.ecs", "account": ACCOUNT,
                 "time": iso(at), "region": REGION, "resources": [task.arn], "detail": detail}
        self._deliver(event, at + self._event_delay)

    def _at(self, at: float, arn: str, status: str) -> None:
        self._seq += 1
        heapq.heappush(self._timeline, (at, self._seq, arn, status))

    def _call(self, operation: str) -> None:
        self._spend(operation)
        self.counts.other_calls += 1

    @staticmethod
    def _described(task: EcsTask) -> dict[str, Any]:
        """DescribeTasks' shape: boto3 gives times as datetimes."""
        detail = task.detail()
        for name in ("createdAt", "startedAt", "stoppedAt"):
            if name in detail:
                detail[name] = datetime.fromtimestamp(detail[name], UTC)
        return detail

    def executions_with_tasks(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for task in self.tasks.values():
            counts[task.execution_id] = counts.get(task.execution_id, 0) + 1
        return counts
