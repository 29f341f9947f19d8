"""The ECS runner's answers to a reconciling engine, against botocore's stubbed ECS client: a
ConflictException for our own client token adopts the task it names, and a launch whose answer
was lost is found by its `startedBy` (the execution's key)."""
from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber

from chalicelib.adapters.ecs import EcsRunner
from chalicelib.config import Settings
from chalicelib.domain.ecs import started_by
from chalicelib.domain.errors import LaunchFailed
from chalicelib.domain.model import Execution, ExecutionStatus
from chalicelib.domain.pools import Pool
from tests import iam

EXECUTION_ID = "01a23395-093b-7025-9fb1-471bfd914a07"
JOB_ID = "7f3c1d2e-5a6b-4c8d-9e0f-112233445566"
STARTED_BY = started_by(JOB_ID, EXECUTION_ID)
ARN = "arn:aws:ecs:us-east-1:123456789012:task/c/0123456789abcdef0123456789abcdef"
POOL = Pool(name="p", match=".*", cluster="c", cpu="256", memory="512")
EXECUTION = Execution(task_id="t", job_id=JOB_ID, execution_id=EXECUTION_ID, image="ubuntu", command="sleep 9",
                      status=ExecutionStatus.ENQUEUED, created_at=0, envs={})


@pytest.fixture
def ecs():
    """A client whose answers are stubbed: no deployment's role is involved (tests/iam.py)."""
    client = boto3.client("ecs", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(client) as stubber, iam.as_test():
        yield client, stubber
        stubber.assert_no_pending_responses()


def runner(client) -> EcsRunner:
    built = EcsRunner(client, Settings(region="us-east-1", tasks_table="t", jobs_table="j", executions_table="e",
                                       jobs_queue_url="q"))
    built._definitions["ubuntu"] = "arn:aws:ecs:us-east-1:123456789012:task-definition/f:1"
    return built


def task(status: str) -> dict:
    return {"taskArn": ARN, "lastStatus": status, "startedBy": STARTED_BY, "containers": []}


def listed(stubber, name: str, running: list[str], stopped: list[str]) -> None:
    for desired, arns in (("RUNNING", running), ("STOPPED", stopped)):
        stubber.add_response("list_tasks", {"taskArns": arns}, {"cluster": "c", "startedBy": name, "desiredStatus": desired})


def test_a_conflict_for_our_own_token_adopts_the_task_it_names(ecs):
    client, stubber = ecs
    stubber.add_client_error("run_task", service_error_code="ConflictException",
                             service_message="The clientToken is already in use with a different request",
                             http_status_code=400, response_meta={}, modeled_fields={"resourceIds": [ARN]})
    assert runner(client).run(EXECUTION, EXECUTION.spec, POOL) == ARN


def test_a_conflict_that_names_no_task_looks_it_up_by_its_started_by(ecs):
    client, stubber = ecs
    stubber.add_client_error("run_task", service_error_code="ConflictException", service_message="in use",
                             http_status_code=400)
    listed(stubber, STARTED_BY, [ARN], [])
    stubber.add_response("describe_tasks", {"tasks": [task("RUNNING")], "failures": []}, {"cluster": "c", "tasks": [ARN]})
    assert runner(client).run(EXECUTION, EXECUTION.spec, POOL) == ARN


def test_a_conflict_with_no_task_to_adopt_is_a_permanent_failure(ecs):
    client, stubber = ecs
    stubber.add_client_error("run_task", service_error_code="ConflictException", service_message="in use",
                             http_status_code=400)
    listed(stubber, STARTED_BY, [], [])
    with pytest.raises(LaunchFailed) as failure:
        runner(client).run(EXECUTION, EXECUTION.spec, POOL)
    assert not failure.value.retryable and "ConflictException" in failure.value.reason


def test_throttled_run_task_is_retryable(ecs):
    client, stubber = ecs
    stubber.add_client_error("run_task", service_error_code="ThrottlingException", service_message="Rate exceeded",
                             http_status_code=400)
    with pytest.raises(LaunchFailed) as failure:
        runner(client).run(EXECUTION, EXECUTION.spec, POOL)
    assert failure.value.retryable


def test_find_prefers_a_running_task_and_answers_none_when_there_is_none(ecs):
    client, stubber = ecs
    listed(stubber, STARTED_BY, [], [ARN])
    stubber.add_response("describe_tasks", {"tasks": [task("STOPPED")], "failures": []}, {"cluster": "c", "tasks": [ARN]})
    listed(stubber, STARTED_BY, [], [])
    found = runner(client).find(EXECUTION, POOL)
    assert found is not None and (found.arn, found.last_status) == (ARN, "STOPPED")
    assert runner(client).find(EXECUTION, POOL) is None


def test_stop_task_throttled_raises_so_the_reconciler_asks_again(ecs):
    client, stubber = ecs
    stubber.add_client_error("stop_task", service_error_code="ThrottlingException", service_message="Rate exceeded",
                             http_status_code=400)
    with pytest.raises(Exception) as error:
        runner(client).stop(ARN, "stopped by a client")
    assert "Throttling" in str(error.value)
