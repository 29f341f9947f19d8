"""The scale simulation's stand-ins behave as the AWS limits they model, and a small burst
through the real handlers ends with every job done and no execution launched twice."""
from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from bench.scale import simulate
from bench.scale_fargate import FakeEcs, TokenBucket
from bench.scale_sqs import MAX_RECEIVE_COUNT, VISIBILITY_TIMEOUT, EventSourceMapping, FakeSqs


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def ecs_with_events() -> tuple[FakeEcs, Clock, list[tuple[dict[str, Any], float]]]:
    clock = Clock()
    events: list[tuple[dict[str, Any], float]] = []
    ecs = FakeEcs(clock, lambda event, at: events.append((event, at)))
    ecs.register_task_definition(family="fastlane-ubuntu", containerDefinitions=[{"name": "job", "image": "ubuntu"}])
    return ecs, clock, events


def run_task(ecs: FakeEcs, token: str, command: str = "true", started_by: str | None = None) -> dict[str, Any]:
    return ecs.run_task(cluster="fastlane", taskDefinition="fastlane-ubuntu", count=1, clientToken=token,
                        startedBy=started_by or token, launchType="FARGATE",
                        overrides={"containerOverrides": [{"name": "job", "command": [command]}]})


def throttled(call: Any) -> bool:
    try:
        call()
    except ClientError as error:
        assert error.response["Error"]["Code"] == "ThrottlingException"
        return True
    return False


def test_a_bucket_gives_its_burst_then_its_rate():
    bucket = TokenBucket(burst=100, rate=20)
    assert sum(bucket.take(0.0) for _ in range(150)) == 100
    assert sum(bucket.take(1.0) for _ in range(50)) == 20
    assert sum(bucket.take(0.5) for _ in range(5)) == 0  # an earlier time refills nothing


def test_runtask_launches_a_burst_of_100_then_20_a_second_and_throttles_the_rest():
    ecs, clock, _ = ecs_with_events()
    assert sum(throttled(lambda n=n: run_task(ecs, f"t0-{n}")) for n in range(120)) == 20
    clock.now = 1.0
    assert sum(throttled(lambda n=n: run_task(ecs, f"t1-{n}")) for n in range(30)) == 10
    assert ecs.counts.launches == 120
    assert ecs.counts.throttles == 30


def test_a_repeated_client_token_returns_the_same_task_and_launches_nothing():
    ecs, _, _ = ecs_with_events()
    first = run_task(ecs, "token-1")["tasks"][0]["taskArn"]
    again = run_task(ecs, "token-1")["tasks"][0]["taskArn"]
    assert again == first
    assert ecs.counts.launches == 1


def test_a_client_token_reused_with_other_parameters_is_a_conflict_naming_the_task():
    ecs, _, _ = ecs_with_events()
    arn = run_task(ecs, "token-1")["tasks"][0]["taskArn"]
    with pytest.raises(ClientError) as raised:
        run_task(ecs, "token-1", command="false")
    assert raised.value.response["Error"]["Code"] == "ConflictException"
    assert raised.value.response["resourceIds"] == [arn]


def test_a_task_announces_running_then_stopped_echoing_what_runtask_was_given():
    ecs, _, events = ecs_with_events()
    arn = run_task(ecs, "exec-1", started_by="job-1_exec-1")["tasks"][0]["taskArn"]
    assert arn.startswith("arn:aws:ecs:us-east-1:123456789012:task/fastlane/")
    assert len(arn.rsplit("/", 1)[-1]) == 32
    ecs.advance(1_000.0)
    assert [e["detail"]["lastStatus"] for e, _ in events] == ["RUNNING", "STOPPED"]
    running, stopped = (e["detail"] for e, _ in events)
    assert stopped["startedBy"] == "job-1_exec-1"
    assert stopped["overrides"] == {"containerOverrides": [{"name": "job", "command": ["true"]}]}
    assert stopped["clusterArn"] == "arn:aws:ecs:us-east-1:123456789012:cluster/fastlane"
    assert stopped["group"] == "family:fastlane-ubuntu"
    assert stopped["containers"][0]["name"] == "job" and stopped["containers"][0]["exitCode"] == 0
    assert "exitCode" not in running["containers"][0]
    assert stopped["stoppedAt"].endswith("Z") and stopped["startedAt"] == running["startedAt"]


def test_a_delayed_message_waits_and_an_undeleted_one_returns_after_the_visibility_timeout():
    clock = Clock()
    sqs = FakeSqs(clock)
    queue = sqs.create("jobs")
    sqs.send_message(QueueUrl=queue.url, MessageBody="{}", DelaySeconds=5)
    assert queue.receive(4.9, 10) == []
    assert len(queue.receive(5.0, 10)) == 1
    assert queue.receive(5.0 + VISIBILITY_TIMEOUT - 1, 10) == []
    assert len(queue.receive(5.0 + VISIBILITY_TIMEOUT, 10)) == 1


def test_a_message_received_more_than_the_redrive_count_goes_to_the_dead_letter_queue():
    sqs = FakeSqs(Clock())
    queue = sqs.create("jobs")
    sqs.put(queue.url, "{}", 0.0)
    at = 0.0
    for _ in range(MAX_RECEIVE_COUNT):
        assert len(queue.receive(at, 10)) == 1
        at += VISIBILITY_TIMEOUT
    assert queue.receive(at, 10) == []
    assert queue.dead_letter is not None and len(queue.dead_letter.messages) == 1


def test_the_event_source_starts_five_batches_of_ten_and_deletes_what_succeeded():
    sqs = FakeSqs(Clock())
    queue = sqs.create("jobs")
    for n in range(100):
        sqs.put(queue.url, json.dumps({"n": n}), 0.0)
    batches: list[int] = []

    def invoke(records: list[dict[str, Any]], at: float) -> tuple[dict[str, Any], float]:
        batches.append(len(records))
        return {"batchItemFailures": [{"itemIdentifier": records[0]["messageId"]}]}, at + 10.0

    mapping = EventSourceMapping(queue, invoke)
    mapping.poll(0.0)
    assert batches == [10] * 5
    assert len(queue.messages) == 100 - 5 * 9  # a failed record stays, in flight


def test_a_burst_of_120_jobs_ends_with_every_job_done_and_no_duplicate_launch():
    result = simulate(120)  # past the launch burst of 100
    assert result["lost"] == 0
    assert result["duplicates"] == 0
    assert result["statuses"] == {"done": 120}
    assert result["launches"] == 120
