"""SQS deliveries behave as Lambda's event source: one bad record fails alone, and a message
that keeps failing ends in the dead-letter queue."""
from __future__ import annotations

import json

from infra.local.event_sources import deliver_once
from tests.component.engine_support import FakeRunner, install_engine


def test_one_bad_record_fails_alone(api, aws, sqs, monkeypatch):
    import app as app_module

    runner = FakeRunner()
    install_engine(monkeypatch, runner)
    created = api.post("/tasks/t", {"image": "ubuntu", "command": "true"}).json
    sqs.send_message(QueueUrl=aws["JOBS_QUEUE_URL"], MessageBody="{not json")
    received = 0
    while (count := deliver_once(sqs, aws["JOBS_QUEUE_URL"], app_module.dispatch_jobs)):
        received += count
    assert received == 2
    assert created["executionId"] in runner.tasks
    attributes = sqs.get_queue_attributes(QueueUrl=aws["JOBS_QUEUE_URL"], AttributeNames=["All"])["Attributes"]
    assert attributes["ApproximateNumberOfMessagesNotVisible"] == "1"  # the bad one, back after its timeout


def test_a_message_that_keeps_failing_goes_to_the_dead_letter_queue(aws, sqs):
    import app as app_module

    sqs.set_queue_attributes(QueueUrl=aws["EVENTS_QUEUE_URL"], Attributes={"VisibilityTimeout": "0"})
    sqs.send_message(QueueUrl=aws["EVENTS_QUEUE_URL"], MessageBody=json.dumps({"detail": {"startedBy": 42}}))
    for _ in range(10):
        deliver_once(sqs, aws["EVENTS_QUEUE_URL"], app_module.monitor_tasks)
    dead = sqs.receive_message(QueueUrl=aws["EVENTS_DLQ_URL"]).get("Messages", [])
    assert [json.loads(m["Body"]) for m in dead] == [{"detail": {"startedBy": 42}}]
