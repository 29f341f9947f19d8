"""The queue ports (JobQueue, NotifyQueue, QueueDepths) and the event sources that feed queues to
the handlers, pinned once and run against both backends: the local queues on a temporary
SQLite file, and SQS on moto in process. What the handlers rely on: typed messages arrive as
their encoding, delays in whole seconds (clipped at 15 minutes), a visibility timeout and
receive counts, delete, change of visibility, dead-lettering after the max receive count, and
batches whose failed records come back while the rest are deleted.

Receiving is not a port (Lambda's event source does it in AWS): each backend has a small probe
here that receives and deletes as that event source does."""
from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import pytest

from chalicelib.domain.messages import Launch, Notification, TimeoutCheck, decode_job_message, decode_notification, encode
from chalicelib.domain.model import Hook

VISIBILITY = 1  # seconds: short, so a message not deleted comes back within a test
MAX_RECEIVES = 2


@dataclass(frozen=True)
class Received:
    body: str
    receipt: str
    receive_count: int


class Probe(Protocol):
    """One backend's queues: the ports under test, and receiving as the event source does."""

    name: str
    job_queue: Any
    notify_queue: Any
    depths: Any

    def receive(self, role: str, max_messages: int = 10, visibility: float | None = None) -> list[Received]: ...

    def delete(self, role: str, receipt: str) -> None: ...

    def change_visibility(self, role: str, receipt: str, seconds: float) -> None: ...

    def deliver_once(self, role: str, handler: Callable[[dict[str, Any], Any], Any]) -> int: ...


class LocalProbe:
    name = "local"

    def __init__(self, path: str) -> None:
        from infra.local.sqlite.db import Database
        from infra.local.sqlite.queues import (
            DEAD_LETTER_SUFFIX,
            ROLES,
            LocalJobQueue,
            LocalNotifyQueue,
            LocalQueueDepths,
            LocalQueues,
            create_queues,
        )

        self.db = Database(path)
        self.queues = LocalQueues(self.db)
        create_queues(self.queues, VISIBILITY, MAX_RECEIVES)
        self.names = {**ROLES, **{role + "DeadLetter": name + DEAD_LETTER_SUFFIX for role, name in ROLES.items()}}
        self.job_queue = LocalJobQueue(self.queues)
        self.notify_queue = LocalNotifyQueue(self.queues)
        self.depths = LocalQueueDepths(self.queues)

    def receive(self, role: str, max_messages: int = 10, visibility: float | None = None) -> list[Received]:
        return [Received(m.body, m.receipt_handle, m.receive_count)
                for m in self.queues.receive(self.names[role], max_messages, visibility)]

    def delete(self, role: str, receipt: str) -> None:
        self.queues.delete(self.names[role], receipt)

    def change_visibility(self, role: str, receipt: str, seconds: float) -> None:
        self.queues.change_visibility(self.names[role], receipt, seconds)

    def deliver_once(self, role: str, handler: Callable[[dict[str, Any], Any], Any]) -> int:
        from infra.local.event_sources import LocalQueue, QueuePoller

        return QueuePoller(LocalQueue(self.queues, self.names[role]), handler, name="contract").deliver_once()

    def close(self) -> None:
        self.queues.close()
        self.db.close()


class SqsProbe:
    name = "aws"

    def __init__(self) -> None:
        import boto3

        from chalicelib.adapters.queues import SqsJobQueue, SqsNotifyQueue, SqsQueueDepths

        self.sqs = boto3.client("sqs", region_name="us-east-1")
        self.urls: dict[str, str] = {}
        for role in ("jobs", "events", "notify"):
            prefix = f"contract-{uuid.uuid4().hex[:8]}-{role}"
            dlq = self.sqs.create_queue(QueueName=f"{prefix}-dlq")["QueueUrl"]
            arn = self.sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            self.urls[role] = self.sqs.create_queue(QueueName=prefix, Attributes={
                "VisibilityTimeout": str(VISIBILITY),
                "RedrivePolicy": json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": str(MAX_RECEIVES)}),
            })["QueueUrl"]
            self.urls[role + "DeadLetter"] = dlq
        self.job_queue = SqsJobQueue(self.sqs, self.urls["jobs"])
        self.notify_queue = SqsNotifyQueue(self.sqs, self.urls["notify"])
        self.depths = SqsQueueDepths(self.sqs, self.urls)

    def receive(self, role: str, max_messages: int = 10, visibility: float | None = None) -> list[Received]:
        extra = {} if visibility is None else {"VisibilityTimeout": int(visibility)}
        answer = self.sqs.receive_message(QueueUrl=self.urls[role], MaxNumberOfMessages=max_messages,
                                          AttributeNames=["All"], WaitTimeSeconds=0, **extra)
        return [Received(m["Body"], m["ReceiptHandle"], int(m["Attributes"]["ApproximateReceiveCount"]))
                for m in answer.get("Messages", [])]

    def delete(self, role: str, receipt: str) -> None:
        self.sqs.delete_message(QueueUrl=self.urls[role], ReceiptHandle=receipt)

    def change_visibility(self, role: str, receipt: str, seconds: float) -> None:
        self.sqs.change_message_visibility(QueueUrl=self.urls[role], ReceiptHandle=receipt,
                                           VisibilityTimeout=int(seconds))

    def deliver_once(self, role: str, handler: Callable[[dict[str, Any], Any], Any]) -> int:
        from infra.local.event_sources import deliver_once

        return deliver_once(self.sqs, self.urls[role], handler, name="contract")

    def close(self) -> None:
        pass


@pytest.fixture(params=["local", "aws"])
def probe(request: pytest.FixtureRequest, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Probe]:
    if request.param == "local":
        local = LocalProbe(str(tmp_path / "state.db"))
        try:
            yield local
        finally:
            local.close()
        return
    from moto import mock_aws

    for name, value in (("AWS_DEFAULT_REGION", "us-east-1"), ("AWS_ACCESS_KEY_ID", "testing"),
                        ("AWS_SECRET_ACCESS_KEY", "testing")):
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        probe = SqsProbe()
        # The deployment's queues, as its functions' settings name them: the IAM check resolves grants on them.
        for role, variable in (("jobs", "JOBS"), ("events", "EVENTS"), ("notify", "NOTIFY")):
            monkeypatch.setenv(f"{variable}_QUEUE_URL", probe.urls[role])
            monkeypatch.setenv(f"{variable}_DLQ_URL", probe.urls[role + "DeadLetter"])
        yield probe


def receive_within(probe: Probe, role: str, timeout: float, count: int = 1, **kw: Any) -> list[Received]:
    """Receive until `count` messages came (or fail after `timeout`)."""
    got: list[Received] = []
    deadline = time.monotonic() + timeout
    while len(got) < count:
        got += probe.receive(role, **kw)
        if len(got) >= count:
            break
        assert time.monotonic() < deadline, f"{probe.name}: {len(got)} of {count} message(s) after {timeout}s"
        time.sleep(0.05)
    return got


LAUNCH = Launch("task", "job", "0" * 36, due_at=1_800_000_000.5, attempt=2)


def test_a_job_message_arrives_as_its_encoding_once_and_is_gone_when_deleted(probe: Probe) -> None:
    message_id = probe.job_queue.send(LAUNCH)
    assert isinstance(message_id, str) and message_id
    (received,) = receive_within(probe, "jobs", 5)
    assert decode_job_message(received.body) == LAUNCH and received.body == encode(LAUNCH)
    assert received.receive_count == 1
    assert probe.receive("jobs") == []  # in flight: nobody else gets it
    assert probe.depths.depths()["jobs"] == {"visible": 0, "inFlight": 1, "delayed": 0}
    probe.delete("jobs", received.receipt)
    assert probe.depths.depths()["jobs"] == {"visible": 0, "inFlight": 0, "delayed": 0}


def test_a_message_not_deleted_comes_back_after_the_visibility_timeout_counted_again(probe: Probe) -> None:
    probe.job_queue.send(LAUNCH)
    first = receive_within(probe, "jobs", 5)[0]
    started = time.monotonic()
    again = receive_within(probe, "jobs", 5)[0]
    assert time.monotonic() - started >= VISIBILITY - 0.3
    assert again.body == first.body and again.receive_count == 2


def test_changing_the_visibility_to_zero_makes_a_message_visible_at_once(probe: Probe) -> None:
    probe.job_queue.send(LAUNCH)
    first = receive_within(probe, "jobs", 5, visibility=30)[0]
    probe.change_visibility("jobs", first.receipt, 0)
    assert [m.receive_count for m in probe.receive("jobs")] == [2]


def test_a_delayed_message_is_counted_delayed_then_arrives_after_whole_seconds(probe: Probe) -> None:
    sent = time.monotonic()
    probe.job_queue.send(TimeoutCheck("task", "job", "1" * 36, due_at=1.0), delay_seconds=1.6)  # rounds to 2
    assert probe.depths.depths()["jobs"]["delayed"] == 1
    assert probe.receive("jobs") == []
    receive_within(probe, "jobs", 6)
    assert time.monotonic() - sent >= 1.7


def test_a_delay_beyond_fifteen_minutes_is_clipped_not_refused(probe: Probe) -> None:
    probe.job_queue.send(LAUNCH, delay_seconds=86_400)
    assert probe.depths.depths()["jobs"] == {"visible": 0, "inFlight": 0, "delayed": 1}


def test_a_message_received_more_than_the_max_receive_count_goes_to_the_dead_letter_queue(probe: Probe) -> None:
    probe.job_queue.send(LAUNCH)
    for count in range(1, MAX_RECEIVES + 1):
        (received,) = receive_within(probe, "jobs", 5, visibility=0)
        assert received.receive_count == count
    deadline = time.monotonic() + 5
    while probe.depths.depths()["jobsDeadLetter"]["visible"] != 1:
        assert probe.receive("jobs", visibility=0) == []  # moved, not delivered a third time
        assert time.monotonic() < deadline, "the message never reached the dead-letter queue"
        time.sleep(0.05)
    assert probe.depths.depths()["jobs"] == {"visible": 0, "inFlight": 0, "delayed": 0}
    (dead,) = receive_within(probe, "jobsDeadLetter", 5)
    assert decode_job_message(dead.body) == LAUNCH


def test_notifications_are_sent_one_by_one_or_all_together(probe: Probe) -> None:
    hook = Hook("http://127.0.0.1:9/hook", {"X-Team": "ops"}, retries=1)
    notes = [Notification("webhook", "finishes", "task", "job", "2" * 36, "done", index=i, hook=hook) if i % 2 else
             Notification("email", "finishes", "task", "job", "2" * 36, "done", index=i, to=("a@example.com",))
             for i in range(12)]
    probe.notify_queue.send(notes[0])
    probe.notify_queue.send_all(notes[1:])
    probe.notify_queue.send_all([])
    got = receive_within(probe, "notify", 10, count=12)
    assert sorted((decode_notification(m.body) for m in got), key=lambda n: n.index) == notes


def test_the_depths_name_every_queue_and_dead_letter_queue_by_role(probe: Probe) -> None:
    assert set(probe.depths.depths()) == {"jobs", "jobsDeadLetter", "events", "eventsDeadLetter", "notify",
                                          "notifyDeadLetter"}


def test_a_batch_deletes_what_succeeded_and_gives_back_what_failed(probe: Probe) -> None:
    for attempt in range(3):
        probe.job_queue.send(Launch("task", "job", f"{attempt}" * 36))
    seen: list[dict[str, Any]] = []

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        seen.extend(event["Records"])
        failed = [r["messageId"] for r in event["Records"] if json.loads(r["body"])["executionId"].startswith("1")]
        return {"batchItemFailures": [{"itemIdentifier": f} for f in failed]}

    deadline = time.monotonic() + 5
    while len(seen) < 3:
        probe.deliver_once("jobs", handler)
        assert time.monotonic() < deadline
    record = seen[0]
    assert record["eventSource"] == "aws:sqs" and record["attributes"]["ApproximateReceiveCount"] == "1"
    assert {"messageId", "receiptHandle", "body", "md5OfBody", "eventSourceARN", "awsRegion"} <= set(record)
    (back,) = receive_within(probe, "jobs", 5)  # after the visibility timeout, only the failed one
    assert json.loads(back.body)["executionId"] == "1" * 36 and back.receive_count == 2


def test_a_handler_that_raises_gives_the_whole_batch_back(probe: Probe) -> None:
    probe.job_queue.send(LAUNCH)
    calls: list[int] = []

    def handler(event: dict[str, Any], context: Any) -> Any:
        calls.append(len(event["Records"]))
        raise RuntimeError("the handler failed")

    deadline = time.monotonic() + 5
    while not calls:
        probe.deliver_once("jobs", handler)
        assert time.monotonic() < deadline
    assert receive_within(probe, "jobs", 5)[0].receive_count == 2


# the local queues only: how fast a waiting receiver wakes ----------------------------------------


@pytest.fixture
def local(tmp_path: Any) -> Iterator[LocalProbe]:
    probe = LocalProbe(str(tmp_path / "state.db"))
    try:
        yield probe
    finally:
        probe.close()


def test_a_waiting_receiver_wakes_as_soon_as_a_message_is_sent(local: LocalProbe) -> None:
    from infra.local.sqlite.queues import JOBS

    latencies = []
    woke: list[float] = []

    def wait_for_one() -> None:
        received = local.queues.receive(JOBS, 10, wait_seconds=5)
        woke.append(time.perf_counter() if received else float("inf"))

    for _ in range(20):
        woke.clear()
        waiter = threading.Thread(target=wait_for_one)
        waiter.start()
        deadline = time.monotonic() + 5
        while not local.queues.waiting(JOBS):
            assert time.monotonic() < deadline, "the receiver never waited"
            time.sleep(0.001)
        sent = time.perf_counter()
        local.job_queue.send(LAUNCH)
        waiter.join(5)
        latencies.append(woke[0] - sent)
        for message in local.queues.receive(JOBS, 10, visibility_timeout=0):
            local.queues.delete(JOBS, message.receipt_handle)
    latencies.sort()
    assert latencies[len(latencies) // 2] < 0.01, latencies


def test_a_waiting_receiver_wakes_when_a_delayed_message_becomes_visible(local: LocalProbe) -> None:
    from infra.local.sqlite.queues import JOBS

    local.job_queue.send(LAUNCH, delay_seconds=1)
    sent = time.monotonic()
    received = local.queues.receive(JOBS, 10, wait_seconds=5)
    waited = time.monotonic() - sent
    assert received and 0.95 <= waited < 1.1


def test_a_delete_with_the_receipt_of_an_earlier_receive_deletes_nothing(local: LocalProbe) -> None:
    from infra.local.sqlite.queues import JOBS

    local.job_queue.send(LAUNCH)
    first = local.queues.receive(JOBS, 1, visibility_timeout=0)[0]
    second = local.queues.receive(JOBS, 1)[0]
    assert not local.queues.delete(JOBS, first.receipt_handle)
    assert local.queues.delete(JOBS, second.receipt_handle)
