"""The reconciler with the real ECS adapter: the app's aws backend on moto, its `EcsRunner`
speaking the ECS API to the local Fargate (real processes, task state change events on the
events queue), and faults injected into the app's ECS client at the wire: RunTask and StopTask
throttled before ECS acts, a RunTask answer lost after ECS acted, a ConflictException for our
own client token, DescribeTasks answering MISSING, and task events lost."""
from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ReadTimeoutError

from infra.local.event_sources import scheduled_event
from infra.local.fargate import LocalFargate
from tests import polling
from tests.component.conftest import execution

REGION = "us-east-1"


class EcsFaults:
    """Faults on the app's ECS client (the one its backend uses until the wiring is reset).
    `refuse[op]`: the next that many calls answer ThrottlingException without reaching ECS;
    `lose[op]`: the next that many reach ECS and take effect, and their answer is lost;
    `missing`: DescribeTasks answers MISSING for every task, as ECS can just after RunTask."""

    def __init__(self) -> None:
        from chalicelib import wiring

        self.refuse: dict[str, int] = {}
        self.lose: dict[str, int] = {}
        self.missing = False
        self.calls: list[str] = []
        self.errors: list[str] = []  # the error codes ECS answered
        events = wiring.client("ecs").meta.events
        events.register("before-call.ecs", self._before)
        events.register("after-call.ecs", self._after)

    def _before(self, model: Any, **_: Any) -> Any:
        self.calls.append(model.name)
        if self.refuse.get(model.name, 0) > 0:
            self.refuse[model.name] -= 1
            error = {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"},
                     "ResponseMetadata": {"HTTPStatusCode": 400}}
            return type("Refused", (), {"status_code": 400, "headers": {}})(), error
        return None

    def _after(self, model: Any, parsed: dict[str, Any], **_: Any) -> None:
        if "Error" in parsed:
            self.errors.append(f"{model.name}: {parsed['Error'].get('Code')}")
        if self.lose.get(model.name, 0) > 0:
            self.lose[model.name] -= 1
            raise ReadTimeoutError(endpoint_url="ecs (its answer was lost)")
        if model.name == "DescribeTasks" and self.missing:
            parsed["failures"] = [{"arn": task["taskArn"], "reason": "MISSING"} for task in parsed.get("tasks", [])]
            parsed["tasks"] = []


@pytest.fixture
def ecs(aws: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalFargate]:
    """The local Fargate, its events on the app's events queue; the app's backend is the aws one
    with its real ECS adapter pointed at it."""
    from chalicelib import wiring
    from chalicelib.config import get_settings

    fargate = LocalFargate(sqs_client=boto3.client("sqs", region_name=REGION),
                           logs_client=boto3.client("logs", region_name=REGION),
                           events_queue_url=aws["EVENTS_QUEUE_URL"], log_group=get_settings().log_group,
                           region=REGION, stop_grace_seconds=0.5)
    fargate.start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_ECS", fargate.endpoint)
    wiring.reset()
    try:
        yield fargate
    finally:
        fargate.stop()
        wiring.reset()


@pytest.fixture
def faults(ecs: LocalFargate) -> EcsFaults:
    return EcsFaults()


@pytest.fixture
def tune(monkeypatch: pytest.MonkeyPatch, ecs: LocalFargate) -> Callable[..., None]:
    """Settings for the rest of a test, with the backend built again (a redeploy)."""
    from chalicelib import wiring

    def apply(**env: str) -> None:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        wiring.reset()

    return apply


def reconcile() -> dict[str, int]:
    import app as app_module

    return app_module.reconcile(scheduled_event("reconciler"), None)


def slots_held() -> int:
    from chalicelib import wiring

    return sum(wiring.backend().pools.pool_running(["default", "p"]).values())


def stored(created: dict[str, Any]) -> Any:
    from chalicelib import wiring

    return wiring.backend().executions.get_execution(created["jobId"], created["executionId"])


def settle(drive: Callable[[str], int], until: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    """Deliver both queues to the app's handlers until `until` holds."""
    def step() -> Any:
        drive("jobs")
        drive("events")
        return until()

    return polling.wait_until(step, timeout=timeout, interval=0.05, what=what)


def lose_events(sqs: Any, aws: dict[str, str]) -> int:
    """Every task event waiting on the events queue is lost."""
    lost = 0
    while messages := sqs.receive_message(QueueUrl=aws["EVENTS_QUEUE_URL"], MaxNumberOfMessages=10).get("Messages"):
        for message in messages:
            sqs.delete_message(QueueUrl=aws["EVENTS_QUEUE_URL"], ReceiptHandle=message["ReceiptHandle"])
            lost += 1
    return lost


def status_of(api: Any, created: dict[str, Any]) -> str:
    return str(execution(api, created)["status"])


def test_a_throttled_run_task_is_tried_again_and_starts_one_container(api, drive, ecs, faults):
    faults.refuse["RunTask"] = 2
    created = api.post("/tasks/t", {"image": "ubuntu", "command": "sleep 1"}).json
    drive("jobs")
    assert status_of(api, created) == "enqueued" and ecs.running_count() == 0

    settle(drive, lambda: status_of(api, created) == "done", "the throttled job to run to its end")
    assert faults.calls.count("RunTask") == 3 and faults.refuse["RunTask"] == 0
    assert execution(api, created)["exitCode"] == 0 and slots_held() == 0


def started_unheard(ecs: LocalFargate, sqs: Any, aws: dict[str, str]) -> str:
    """A task ECS started whose RunTask answer was lost, and its PENDING and RUNNING events too:
    only asking ECS again can tell the execution about it."""
    polling.wait_until(lambda: ecs.running_count() == 1, timeout=10, interval=0.05, what="the task to start")
    lost = 0

    def both_lost() -> bool:
        nonlocal lost
        lost += lose_events(sqs, aws)
        return lost >= 2

    polling.wait_until(both_lost, timeout=10, interval=0.05, what="its PENDING and RUNNING events, to lose them")
    (arn,) = [task.arn for task in ecs._tasks.values()]
    return arn


def test_a_run_task_whose_answer_was_lost_starts_one_container(api, drive, ecs, faults, sqs, aws):
    faults.lose["RunTask"] = 1
    created = api.post("/tasks/t", {"image": "ubuntu", "command": "sleep 2"}).json
    drive("jobs")  # ECS started the task; the dispatcher never heard
    first = started_unheard(ecs, sqs, aws)
    assert status_of(api, created) == "enqueued"

    settle(drive, lambda: stored(created).task_arn == first, "the task to be found under the same client token")

    settle(drive, lambda: status_of(api, created) == "done", "the job to run to its end")
    assert faults.calls.count("RunTask") == 2  # asked again under the same client token: the same task
    assert ecs.running_count() == 0 and slots_held() == 0
    assert execution(api, created)["exitCode"] == 0


def test_a_conflict_for_our_own_token_adopts_the_task_it_names(api, drive, ecs, tune, sqs, aws):
    """The first RunTask took effect and its answer was lost; a redeploy then changed the pool's
    subnets, so the same client token comes back with other parameters: ECS refuses it naming
    the task, which is this execution's and is adopted, not failed while it runs."""
    tune(POOLS=json.dumps([{"name": "p", "match": ".*", "subnets": ["subnet-a"]}]))
    EcsFaults().lose["RunTask"] = 1
    created = api.post("/tasks/t", {"image": "ubuntu", "command": "sleep 2"}).json
    drive("jobs")
    first = started_unheard(ecs, sqs, aws)

    tune(POOLS=json.dumps([{"name": "p", "match": ".*", "subnets": ["subnet-b"]}]))
    after = EcsFaults()
    settle(drive, lambda: stored(created).task_arn == first, "the task to be adopted")
    assert after.calls.count("RunTask") == 1 and after.errors == ["RunTask: ConflictException"]
    assert status_of(api, created) in ("pulling", "running", "done")  # adopted, not failed
    settle(drive, lambda: status_of(api, created) == "done", "the adopted task to end")
    assert slots_held() == 0 and len(ecs._tasks) == 1


def test_a_throttled_stop_task_is_asked_again_until_the_container_is_gone(api, drive, ecs, faults, sqs, aws):
    created = api.post("/tasks/t", {"image": "ubuntu", "command": "sleep 600"}).json
    settle(drive, lambda: status_of(api, created) == "running", "the job to run")
    faults.refuse["StopTask"] = 2

    path = f"/tasks/t/jobs/{created['jobId']}/executions/{created['executionId']}/stop"
    assert api.post(path).status_code == 200 and status_of(api, created) == "stopped"
    assert ecs.running_count() == 1 and slots_held() == 1  # not seen gone: the slot is held

    reconcile()  # asked again, throttled again
    assert ecs.running_count() == 1 and slots_held() == 1
    reconcile()  # asked again: ECS stops it
    polling.wait_until(lambda: ecs.running_count() == 0, timeout=10, interval=0.05, what="the container to stop")
    settle(drive, lambda: slots_held() == 0, "the STOPPED event to free the slot")
    assert faults.calls.count("StopTask") == 3 and status_of(api, created) == "stopped"


def test_missing_just_after_the_launch_and_lost_events_converge_on_what_ecs_knows(api, drive, ecs, sqs, aws, tune):
    tune(MISSING_GRACE_SECONDS="600")
    faults = EcsFaults()
    created = api.post("/tasks/t", {"image": "ubuntu", "command": "sleep 1"}).json
    drive("jobs")
    assert status_of(api, created) == "pulling"
    polling.wait_until(lambda: ecs.running_count() == 1, timeout=10, interval=0.05, what="the task to start")

    faults.missing = True  # ECS does not know the task yet: within the grace, nothing is decided
    reconcile()
    assert status_of(api, created) == "pulling" and slots_held() == 1

    faults.missing = False
    polling.wait_until(lambda: ecs.running_count() == 0, timeout=10, interval=0.05, what="the container to exit")
    lost = [0]  # the events may come over several polls: they are counted across them

    def all_three_lost() -> bool | None:
        lost[0] += lose_events(sqs, aws)
        return lost[0] >= 3 or None

    polling.wait_until(all_three_lost, timeout=10, interval=0.05,
                       what="its PENDING, RUNNING and STOPPED events, to lose them")
    reconcile()  # no event came: DescribeTasks says it stopped, and the monitor's ending is applied
    ended = execution(api, created)
    assert (ended["status"], ended["exitCode"]) == ("done", 0) and slots_held() == 0


def test_a_task_that_starts_for_a_job_stopped_meanwhile_is_stopped_by_the_monitor(api, drive, ecs, sqs, aws):
    """The job's stop raced its launch: the RUNNING event finds it stopped, and the monitor
    function (under its own role) stops the container at once, not a reconciler pass later."""
    from chalicelib import wiring

    created = api.post("/tasks/t", {"image": "ubuntu", "command": "sleep 600"}).json
    drive("jobs")
    polling.wait_until(lambda: ecs.running_count() == 1, timeout=10, interval=0.05, what="the task to start")
    wiring.backend().jobs.set_job_stopped(created["jobId"], True)
    settle(drive, lambda: status_of(api, created) == "stopped", "the RUNNING event to stop the execution")
    polling.wait_until(lambda: ecs.running_count() == 0, timeout=10, interval=0.05, what="the container to stop")
    settle(drive, lambda: slots_held() == 0, "the STOPPED event to free the slot")
