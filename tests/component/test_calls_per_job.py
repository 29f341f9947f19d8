"""What a job costs in AWS calls made by the app, counted at botocore on moto (ECS stood in by
the recorder, so RunTask is counted by hand): a job that runs once, and each retry, stay within
ten calls (docs/performance.md, figure 4). Each saving rests on a guarantee tested elsewhere; this
test fails when a change adds a call to the common path."""
from __future__ import annotations

import traceback
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.client import BaseClient

from chalicelib.domain.ecs import started_by
from tests.component.conftest import execution
from tests.component.engine_support import send_events, task_event

RUN_TASK = "ecs:RunTask"  # the recorder stands in for it: one call per launch


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter[str]]:
    """AWS calls made from the app's code (not the test's own, nor the event sources' receives)."""
    counted: Counter[str] = Counter()
    original = BaseClient._make_api_call

    def counting(self: Any, operation: str, params: dict[str, Any]) -> Any:
        if any("/chalicelib/" in frame.filename for frame in traceback.extract_stack()):
            counted[f"{self.meta.service_model.service_name}:{operation}"] += 1
        return original(self, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", counting)
    yield counted


def run_once(api, runner, drive, sqs, aws, created: dict[str, Any], exit_code: int) -> None:
    """Launch the execution waiting, then its RUNNING and STOPPED events, as ECS sends them."""
    launched = len(runner.runs)
    drive("jobs")
    assert len(runner.runs) == launched + 1
    execution_id = runner.runs[-1][0]  # the execution just launched (a retry's id is new)
    arn = runner.tasks[execution_id]
    name = started_by(created["jobId"], execution_id)
    send_events(sqs, aws["EVENTS_QUEUE_URL"], task_event(name, arn, "RUNNING"))
    drive("events")
    send_events(sqs, aws["EVENTS_QUEUE_URL"], task_event(name, arn, "STOPPED", exit_code=exit_code))
    drive("events")


def test_a_job_that_runs_once_costs_at_most_ten_calls(api, runner, drive, sqs, aws, calls):
    api.post("/tasks/cost", {"image": "ubuntu", "command": "true"})  # the task's first job lists the task
    drive("jobs")
    calls.clear()

    created = api.post("/tasks/cost", {"image": "ubuntu", "command": "true"}).json
    run_once(api, runner, drive, sqs, aws, created, exit_code=0)

    counted = Counter(calls)
    counted[RUN_TASK] += 1  # the recorder's RunTask of this job
    assert execution(api, created)["status"] == "done"
    assert sum(counted.values()) <= 10, dict(counted)
    assert "dynamodb:Query" not in counted  # the monitor reads the execution by its key
    assert counted["dynamodb:GetItem"] <= 2, dict(counted)  # one per recorded ECS event, none before the launch


@pytest.fixture
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries due at once (before the engine reads its settings)."""
    monkeypatch.setenv("RETRY_BACKOFF_MIN", "0")


def test_each_retry_costs_at_most_ten_calls(no_backoff, api, runner, drive, sqs, aws, calls):
    api.post("/tasks/cost", {"image": "ubuntu", "command": "true"})
    drive("jobs")
    created = api.post("/tasks/cost", {"image": "ubuntu", "command": "false", "retries": 1}).json
    run_once(api, runner, drive, sqs, aws, created, exit_code=1)  # fails: its retry is made
    calls.clear()
    launched = len(runner.runs)

    run_once(api, runner, drive, sqs, aws, created, exit_code=1)  # the retry, which fails too

    counted = Counter(calls)
    counted[RUN_TASK] += 1
    assert len(runner.runs) == launched + 1
    assert sum(counted.values()) <= 10, dict(counted)
