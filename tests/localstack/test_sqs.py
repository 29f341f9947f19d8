"""The jobs queue adapter on LocalStack's SQS: delayed launches stay invisible until due, and a
message that keeps failing moves to the dead-letter queue, from which an operator can move it
back (docs/deploy.md#runbook)."""
from __future__ import annotations

import json
import os
import time
import uuid

import boto3
import pytest

pytestmark = pytest.mark.xdist_group("localstack")


def _queue_with_dead_letter_queue(sqs, max_receive_count: int = 2, visibility: int = 1) -> tuple[str, str, str]:
    """As the template declares them: a queue whose RedrivePolicy names its dead-letter queue."""
    name = f"fastlane-ls-{uuid.uuid4().hex[:8]}"
    dlq_url = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    url = sqs.create_queue(QueueName=name, Attributes={
        "VisibilityTimeout": str(visibility),
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive_count)}),
    })["QueueUrl"]
    # The deployment's jobs queue, as its functions' settings name it (the endpoints fixture restores
    # the environment): the IAM check resolves the grants on it.
    os.environ.update(JOBS_QUEUE_URL=url, JOBS_DLQ_URL=dlq_url)
    return url, dlq_url, dlq_arn


def test_a_delayed_launch_is_invisible_until_its_delay_has_passed(endpoints) -> None:
    from chalicelib.adapters.queues import SqsJobQueue, SqsQueueDepths
    from chalicelib.domain.messages import Launch

    sqs = boto3.client("sqs")
    url, _, _ = _queue_with_dead_letter_queue(sqs)
    queue = SqsJobQueue(sqs, url)
    sent_at = time.monotonic()
    queue.send(Launch("t", "j", "e"), delay_seconds=2)

    assert SqsQueueDepths(sqs, {"jobs": url}).depths()["jobs"]["delayed"] == 1
    assert sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0).get("Messages") is None
    received = []
    while not received and time.monotonic() - sent_at < 10:
        received = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages", [])
    assert received, "the delayed message never arrived"
    assert time.monotonic() - sent_at >= 2
    assert json.loads(received[0]["Body"]) == {"taskId": "t", "jobId": "j", "executionId": "e"}


def test_a_message_that_keeps_failing_moves_to_the_dead_letter_queue_and_can_be_moved_back(endpoints) -> None:
    from chalicelib.adapters.queues import SqsJobQueue
    from chalicelib.domain.messages import Launch

    sqs = boto3.client("sqs")
    url, dlq_url, dlq_arn = _queue_with_dead_letter_queue(sqs, max_receive_count=2, visibility=1)
    SqsJobQueue(sqs, url).send(Launch("t", "j", "poison"))

    deliveries = 0
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # received and never deleted: the handler failed each time
        got = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1, AttributeNames=["ApproximateReceiveCount"])
        deliveries += len(got.get("Messages", []))
        dead = sqs.receive_message(QueueUrl=dlq_url, WaitTimeSeconds=0).get("Messages", [])
        if dead:
            break
    assert dead, "the message never reached the dead-letter queue"
    assert deliveries == 2
    assert json.loads(dead[0]["Body"])["executionId"] == "poison"

    # the operator's redrive (the console's "Start DLQ redrive"), once the cause is fixed
    sqs.change_message_visibility(QueueUrl=dlq_url, ReceiptHandle=dead[0]["ReceiptHandle"], VisibilityTimeout=0)
    sqs.start_message_move_task(SourceArn=dlq_arn)
    back = []
    deadline = time.monotonic() + 10
    while not back and time.monotonic() < deadline:
        back = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages", [])
    assert back and json.loads(back[0]["Body"])["executionId"] == "poison"
