"""The template's rule for ECS task state changes, on LocalStack's EventBridge: events of our
cluster (and of the clusters pools name) reach the events queue as the monitor reads them; other
clusters' do not."""
from __future__ import annotations

import json
import time
import uuid
from typing import Any

import boto3
import pytest

from tests.infra.conftest import load_merge_template

pytestmark = pytest.mark.xdist_group("localstack")

ACCOUNT = "000000000000"


def _resolve(value: Any, values: dict[str, Any], conditions: dict[str, bool]) -> Any:
    """The few intrinsic functions of the rule's pattern, with the given parameter values."""
    if isinstance(value, list):
        return [_resolve(v, values, conditions) for v in value]
    if not isinstance(value, dict):
        return value
    if "Fn::If" in value:
        condition, yes, no = value["Fn::If"]
        return _resolve(yes if conditions[condition] else no, values, conditions)
    if "Fn::GetAtt" in value:
        return values[".".join(value["Fn::GetAtt"])]
    if "Ref" in value:
        return values[value["Ref"]]
    if "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        parts = _resolve(parts, values, conditions)
        return separator.join(p for item in parts for p in (item if isinstance(item, list) else [item]))
    if "Fn::Split" in value:
        separator, text = value["Fn::Split"]
        return _resolve(text, values, conditions).split(separator)
    return {k: _resolve(v, values, conditions) for k, v in value.items()}


def _event(cluster_arn: str, execution_id: str, status: str = "RUNNING") -> dict[str, Any]:
    detail = {"clusterArn": cluster_arn, "taskArn": f"{cluster_arn.replace(':cluster/', ':task/')}/{uuid.uuid4().hex}",
              "lastStatus": status, "startedBy": execution_id,
              "containers": [{"name": "job", "lastStatus": status}], "startedAt": "2026-11-28T10:00:00.000Z"}
    return {"Source": "aws.ecs", "DetailType": "ECS Task State Change", "Detail": json.dumps(detail)}


@pytest.mark.parametrize("pools", [False, True], ids=["one cluster", "with pool clusters"])
def test_task_state_changes_of_our_clusters_reach_the_events_queue(endpoints, pools: bool) -> None:
    from chalicelib.domain.ecs import task_state

    ours = f"arn:aws:ecs:us-east-1:{ACCOUNT}:cluster/fastlane-ls-{uuid.uuid4().hex[:6]}"
    pool = f"arn:aws:ecs:us-east-1:{ACCOUNT}:cluster/gpu-{uuid.uuid4().hex[:6]}"
    other = f"arn:aws:ecs:us-east-1:{ACCOUNT}:cluster/someone-else"
    rule = load_merge_template()["Resources"]["EcsTaskStateRule"]["Properties"]
    pattern = _resolve(rule["EventPattern"], {"Cluster.Arn": ours, "PoolClusterArns": [pool]},
                       {"HasPoolClusters": pools})

    sqs, events = boto3.client("sqs"), boto3.client("events")
    url = sqs.create_queue(QueueName=f"fastlane-ls-events-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    name = f"fastlane-ls-{uuid.uuid4().hex[:8]}"
    events.put_rule(Name=name, EventPattern=json.dumps(pattern), State="ENABLED")
    events.put_targets(Rule=name, Targets=[{"Id": "events-queue", "Arn": arn}])

    mine, pooled, theirs = (str(uuid.uuid4()) for _ in range(3))
    answer = events.put_events(Entries=[_event(ours, mine), _event(pool, pooled, "STOPPED"), _event(other, theirs)])
    assert answer["FailedEntryCount"] == 0

    expected = {mine, pooled} if pools else {mine}
    delivered: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + 10
    while set(delivered) != expected and time.monotonic() < deadline:
        for message in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
                "Messages", []):
            body = json.loads(message["Body"])  # what the monitor handler gets
            delivered[body["detail"]["startedBy"]] = body
    time.sleep(0.5)  # anything else would have arrived with them
    delivered.update({json.loads(m["Body"])["detail"]["startedBy"]: json.loads(m["Body"])
                      for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])})
    assert set(delivered) == expected
    state = task_state(delivered[mine]["detail"])
    assert state.last_status == "RUNNING" and state.started_at is not None
