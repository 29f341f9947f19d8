"""Helpers for engine tests: a stand-in for ECS and builders of the events ECS sends."""
from __future__ import annotations

import dataclasses
import json
import uuid
from typing import Any

from chalicelib.domain.ecs import TaskState, started_by
from chalicelib.domain.errors import LaunchFailed

REGION = "us-east-1"


class FakeRunner:
    """Records launches; the client token (execution id) makes a repeated launch return the
    same task, as ECS does."""

    def __init__(self) -> None:
        self.tasks: dict[str, str] = {}  # execution id -> task arn
        self.runs: list[tuple[str, list[str]]] = []
        self.stopped: list[tuple[str, str]] = []
        self.states: dict[str, TaskState | None] = {}
        self.failure: LaunchFailed | None = None

    def run(self, execution: Any, spec: Any, pool: Any) -> str:
        if self.failure is not None:
            raise self.failure
        if execution.execution_id not in self.tasks:
            import shlex

            self.tasks[execution.execution_id] = f"arn:aws:ecs:{REGION}:123456789012:task/{pool.cluster}/{uuid.uuid4().hex}"
            self.runs.append((execution.execution_id, shlex.split(execution.command)))
        return self.tasks[execution.execution_id]

    def stop(self, task_arn: str, reason: str) -> None:
        self.stopped.append((task_arn, reason))

    def describe(self, arns: list[str]) -> dict[str, TaskState | None]:
        return {arn: self.states.get(arn) for arn in arns}

    def find(self, execution: Any, pool: Any) -> TaskState | None:
        arn = self.tasks.get(execution.execution_id)
        if arn is None:
            return None
        return self.states.get(arn) or TaskState(arn=arn, last_status="RUNNING")


def key_of(created: dict[str, Any]) -> str:
    """The `startedBy` of the task of an execution the API answered with."""
    return started_by(created["jobId"], created["executionId"])


def task_event(name: str, task_arn: str, status: str, exit_code: int | None = None,
               reason: str | None = None, started_at: str = "2026-11-28T10:00:00.000Z") -> dict[str, Any]:
    container: dict[str, Any] = {"name": "job", "lastStatus": status}
    if exit_code is not None:
        container["exitCode"] = exit_code
    if reason:
        container["reason"] = reason
    detail = {"taskArn": task_arn, "lastStatus": status, "startedBy": name, "containers": [container],
              "startedAt": started_at}
    if status == "STOPPED":
        detail["stoppedAt"] = "2026-11-28T10:00:05.000Z"
        detail["stoppedReason"] = reason or "Essential container in task exited"
    return {"version": "0", "detail-type": "ECS Task State Change", "source": "aws.ecs", "detail": detail}


def install_engine(monkeypatch: Any, runner: FakeRunner) -> Any:
    """The app's aws backend on moto, with ECS replaced by the recorder: injected whole, as the
    local runtime injects its own."""
    from chalicelib import wiring
    from chalicelib.config import get_settings

    wiring.use_backend(dataclasses.replace(wiring.build_aws_backend(get_settings()), runner=runner))
    return wiring.get_engine()


def send_events(sqs: Any, url: str, *events: dict[str, Any]) -> None:
    for event in events:
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps(event))
