"""The IAM check every AWS test runs under (tests/iam.py) refuses what the deployed roles would:
the action IAM names, the ARN the call touches, the condition keys AWS supplies."""
from __future__ import annotations

from typing import Any

import pytest

from tests import iam

ENV = {
    "AWS_REGION": "eu-west-1", "FASTLANE_PREFIX": "t", "TASKS_TABLE": "t-tasks", "JOBS_TABLE": "t-jobs",
    "EXECUTIONS_TABLE": "t-executions", "CONNECTIONS_TABLE": "t-connections",
    "JOBS_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/t-jobs",
    "NOTIFY_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/t-notify",
    "ECS_CLUSTER": "t", "LOG_GROUP": "/t/jobs", "SCHEDULE_GROUP": "t",
    "SCHEDULER_ROLE_ARN": "arn:aws:iam::123456789012:role/t-scheduler",
    "WEBSOCKET_URL": "wss://api9.execute-api.eu-west-1.amazonaws.com/api",
}
ARN = "arn:aws:{}:eu-west-1:123456789012:{}"


@pytest.fixture(autouse=True)
def deployment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)


def refusal(function: str | None, service: str, operation: str, **params: Any) -> str | None:
    return iam.refusal(function, service, operation, params)


def test_a_refusal_names_the_function_the_action_and_the_resource() -> None:
    why = refusal("Notify", "ecs", "RunTask", cluster="t", taskDefinition="t-abc:1")
    assert why is not None
    assert why.startswith("Notify may not call ecs:RunTask on " + ARN.format("ecs", "task-definition/t-abc:1"))


def test_a_query_on_an_index_needs_the_index_granted_not_only_the_table() -> None:
    assert refusal("Dispatch", "dynamodb", "Query", TableName="t-executions", IndexName="by_active") is None
    # Dispatch's role grants the jobs table, not its indexes
    assert "table/t-jobs/index/by_next_run" in str(
        refusal("Dispatch", "dynamodb", "Query", TableName="t-jobs", IndexName="by_next_run"))
    assert refusal("Dispatch", "dynamodb", "Query", TableName="t-jobs") is None


def test_a_batch_of_messages_is_authorized_as_single_sends_on_that_queue() -> None:
    assert refusal("Monitor", "sqs", "SendMessageBatch", QueueUrl=ENV["NOTIFY_QUEUE_URL"], Entries=[]) is None
    why = refusal("Notify", "sqs", "SendMessageBatch", QueueUrl=ENV["JOBS_QUEUE_URL"], Entries=[])
    assert why is not None and "sqs:SendMessage on " + ARN.format("sqs", "t-jobs") in why


def test_each_item_of_a_transaction_needs_its_own_action() -> None:
    items = [{"Update": {"TableName": "t-executions"}}, {"ConditionCheck": {"TableName": "t-jobs"}}]
    assert refusal("Monitor", "dynamodb", "TransactWriteItems", TransactItems=items) is None
    why = refusal("APIHandler", "dynamodb", "TransactWriteItems", TransactItems=items)
    assert why is not None and "dynamodb:ConditionCheckItem" in why


def test_tasks_are_stopped_only_in_the_deployments_clusters() -> None:
    task = ARN.format("ecs", "task/t/0123abcd")
    assert refusal("APIHandler", "ecs", "StopTask", cluster="t", task=task) is None
    other = ARN.format("ecs", "task/elsewhere/0123abcd")
    why = refusal("APIHandler", "ecs", "StopTask", cluster="elsewhere", task=other)
    assert why is not None and "ecs:cluster=" + ARN.format("ecs", "cluster/elsewhere") in why


def test_a_pools_cluster_is_granted_through_the_pool_cluster_parameter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POOLS", '[{"name": "gpu", "match": "gpu-.*", "cluster": "gpus"}]')
    assert refusal("Dispatch", "ecs", "RunTask", cluster="gpus", taskDefinition="t-abc:1") is None


def test_passing_the_scheduler_role_needs_the_scheduler_as_the_service() -> None:
    target = {"RoleArn": ENV["SCHEDULER_ROLE_ARN"], "Arn": "arn", "Input": "{}"}
    assert refusal("APIHandler", "scheduler", "CreateSchedule", Name="s", GroupName="t", Target=target) is None
    why = refusal("Monitor", "scheduler", "CreateSchedule", Name="s", GroupName="t", Target=target)
    assert why is not None and why.startswith("Monitor may not call scheduler:CreateSchedule")


def test_posting_to_a_connection_of_another_websocket_api_is_refused() -> None:
    own = "https://api9.execute-api.eu-west-1.amazonaws.com/api"
    assert iam.refusal("Logs", "apigatewaymanagementapi", "PostToConnection", {"ConnectionId": "c1"}, own) is None
    other = "https://zzz.execute-api.eu-west-1.amazonaws.com/api"
    assert iam.refusal("Logs", "apigatewaymanagementapi", "PostToConnection", {"ConnectionId": "c1"}, other)


def test_outside_any_function_a_call_must_be_granted_to_some_function_or_never_deployed() -> None:
    assert refusal(None, "dynamodb", "CreateTable", TableName="t-jobs") is None  # local runtime and tests only
    assert refusal(None, "ecs", "RunTask", cluster="t", taskDefinition="t-abc:1") is None  # the dispatcher's
    why = refusal(None, "dynamodb", "DeleteItem", TableName="t-jobs")
    assert why is not None and why.startswith("no function may call dynamodb:DeleteItem")


def test_a_refused_call_raises_access_denied_and_is_reported_once() -> None:
    import boto3
    from botocore.exceptions import ClientError

    iam.install()
    client = boto3.client("ecs", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x",
                          endpoint_url="http://127.0.0.1:9")  # never reached: refused before it is sent
    with iam.acting_as("Notify"), pytest.raises(ClientError) as refused:
        client.run_task(cluster="t", taskDefinition="t-abc:1")
    assert refused.value.response["Error"]["Code"] == "AccessDeniedException"
    assert iam.take_violations() == [
        "Notify may not call ecs:RunTask on " + ARN.format("ecs", "task-definition/t-abc:1")
        + " (RunTask, ecs:cluster=" + ARN.format("ecs", "cluster/t") + ")"]
    assert iam.take_violations() == []
