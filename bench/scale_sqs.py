"""A stand-in for SQS in virtual time (delays, visibility timeouts, receive counts, redrive to a
dead-letter queue) and Lambda's SQS event source mapping over it (batches, pollers that scale
up while a backlog lasts, a concurrency cap, partial batch responses), for the scale simulation."""
from __future__ import annotations

import hashlib
import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from .scale_fargate import ACCOUNT, REGION

# As infra/fastlane.yaml deploys the queues: 6 x the 60 s function timeout, and 5 receives (the
# MaxReceiveCount parameter's default) before a message goes to the dead-letter queue.
VISIBILITY_TIMEOUT = 360.0
MAX_RECEIVE_COUNT = 5
MAX_DELAY_SECONDS = 900


def queue_url(name: str) -> str:
    return f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{name}"


@dataclass
class Message:
    message_id: str
    body: str
    sent_at: float
    visible_at: float
    receive_count: int = 0
    receipt: str = ""
    version: int = 0


@dataclass
class VirtualQueue:
    name: str
    dead_letter: VirtualQueue | None = None
    messages: dict[str, Message] = field(default_factory=dict)
    _heap: list[tuple[float, int, int, str]] = field(default_factory=list)  # (visible at, seq, version, id)
    _by_receipt: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return queue_url(self.name)

    @property
    def arn(self) -> str:
        return f"arn:aws:sqs:{REGION}:{ACCOUNT}:{self.name}"

    def put(self, message: Message) -> None:
        self.messages[message.message_id] = message
        self._push(message)

    def _push(self, message: Message) -> None:
        message.version += 1
        heapq.heappush(self._heap, (message.visible_at, next(_SEQ), message.version, message.message_id))

    def _top(self) -> Message | None:
        while self._heap:
            _, _, version, message_id = self._heap[0]
            message = self.messages.get(message_id)
            if message is not None and message.version == version:
                return message
            heapq.heappop(self._heap)  # deleted, or made invisible again since
        return None

    def next_visible(self) -> float | None:
        top = self._top()
        return top.visible_at if top is not None else None

    def has_visible(self, at: float) -> bool:
        top = self._top()
        return top is not None and top.visible_at <= at

    def receive(self, at: float, limit: int) -> list[Message]:
        """Up to `limit` visible messages, each hidden for the visibility timeout; one received
        more than the redrive count goes to the dead-letter queue instead."""
        received: list[Message] = []
        while len(received) < limit and (top := self._top()) is not None and top.visible_at <= at:
            heapq.heappop(self._heap)
            if self.dead_letter is not None and top.receive_count >= MAX_RECEIVE_COUNT:
                del self.messages[top.message_id]
                top.visible_at, top.receive_count = at, 0
                self.dead_letter.put(top)
                continue
            top.receive_count += 1
            top.visible_at = at + VISIBILITY_TIMEOUT
            top.receipt = f"{top.message_id}#{top.receive_count}"
            self._by_receipt[top.receipt] = top.message_id
            self._push(top)
            received.append(top)
        return received

    def delete(self, receipt: str) -> None:
        message_id = self._by_receipt.pop(receipt, None)
        if message_id is not None:
            self.messages.pop(message_id, None)

    def depth(self, at: float) -> dict[str, int]:
        visible = sum(1 for m in self.messages.values() if m.visible_at <= at)
        delayed = sum(1 for m in self.messages.values() if m.visible_at > at and m.receive_count == 0)
        return {"visible": visible, "delayed": delayed, "inFlight": len(self.messages) - visible - delayed}


_SEQ = itertools.count()


class FakeSqs:
    """The methods of a boto3 SQS client that the app's queue adapters call, on virtual queues.
    `clock()` is the virtual time of a call, `spend(operation)` charges the calling invocation."""

    def __init__(self, clock: Callable[[], float], spend: Callable[[str], None] = lambda _operation: None) -> None:
        self._clock, self._spend = clock, spend
        self.queues: dict[str, VirtualQueue] = {}
        self._ids = itertools.count(1)
        self.sent = 0

    def create(self, name: str, with_dead_letter: bool = True) -> VirtualQueue:
        dead_letter = self.create(f"{name}-dlq", with_dead_letter=False) if with_dead_letter else None
        queue = VirtualQueue(name, dead_letter)
        self.queues[queue.url] = queue
        return queue

    def _queue(self, url: str, operation: str) -> VirtualQueue:
        if url not in self.queues:
            raise ClientError({"Error": {"Code": "AWS.SimpleQueueService.NonExistentQueue",
                                         "Message": "The specified queue does not exist."}}, operation)
        return self.queues[url]

    def put(self, url: str, body: str, at: float, delay: float = 0.0) -> str:
        """A message sent at virtual time `at` (also EventBridge's deliveries, which are no call of the app's)."""
        message_id = f"{next(self._ids):08d}-0000-4000-8000-000000000000"
        self._queue(url, "SendMessage").put(Message(message_id, body, at, at + delay))
        self.sent += 1
        return message_id

    def send_message(self, QueueUrl: str, MessageBody: str, DelaySeconds: int = 0,  # noqa: N803 - boto3's names
                     **_: Any) -> dict[str, Any]:
        self._spend("sqs:SendMessage")
        delay = max(0, min(MAX_DELAY_SECONDS, int(DelaySeconds)))
        return {"MessageId": self.put(QueueUrl, MessageBody, self._clock(), delay)}

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]], **_: Any) -> dict[str, Any]:  # noqa: N803
        self._spend("sqs:SendMessageBatch")
        successful = [{"Id": entry["Id"], "MessageId": self.put(QueueUrl, entry["MessageBody"], self._clock(),
                                                                int(entry.get("DelaySeconds", 0)))}
                      for entry in Entries]
        return {"Successful": successful, "Failed": []}

    def get_queue_attributes(self, QueueUrl: str, AttributeNames: list[str], **_: Any) -> dict[str, Any]:  # noqa: N803
        self._spend("sqs:GetQueueAttributes")
        queue = self._queue(QueueUrl, "GetQueueAttributes")
        depth = queue.depth(self._clock())
        return {"Attributes": {"QueueArn": queue.arn, "ApproximateNumberOfMessages": str(depth["visible"]),
                               "ApproximateNumberOfMessagesNotVisible": str(depth["inFlight"]),
                               "ApproximateNumberOfMessagesDelayed": str(depth["delayed"])}}


def sqs_record(queue: VirtualQueue, message: Message, at: float) -> dict[str, Any]:
    """A message as Lambda hands it to a function in an SQS event."""
    return {
        "messageId": message.message_id,
        "receiptHandle": message.receipt,
        "body": message.body,
        "attributes": {"ApproximateReceiveCount": str(message.receive_count),
                       "SentTimestamp": str(int(message.sent_at * 1000)), "SenderId": ACCOUNT,
                       "ApproximateFirstReceiveTimestamp": str(int(at * 1000))},
        "messageAttributes": {},
        "md5OfBody": hashlib.md5(message.body.encode()).hexdigest(),  # noqa: S324 - what SQS sends
        "eventSource": "aws:sqs",
        "eventSourceARN": queue.arn,
        "awsRegion": REGION,
    }


# Lambda's SQS event source mapping, as AWS documents it for standard queues: five concurrent
# batches when messages appear, up to 300 more concurrent invocations a minute while messages
# remain, at most 1,000 batches at once per mapping, and never more than the function may run.
START_CONCURRENCY = 5
SCALE_UP_PER_SECOND = 300 / 60
MAPPING_MAX_CONCURRENCY = 1000


class EventSourceMapping:
    """Delivers one queue to one handler. `invoke(records, at)` runs the handler and returns its
    response and when it ended (virtual seconds); invocations overlap in virtual time up to the
    current concurrency, so a slow handler drains its queue more slowly."""

    def __init__(self, queue: VirtualQueue, invoke: Callable[[list[dict[str, Any]], float], tuple[dict[str, Any], float]],
                 *, batch_size: int = 10, max_concurrency: int = MAPPING_MAX_CONCURRENCY,
                 free_concurrency: Callable[[], int] = lambda: 1 << 30) -> None:
        self.queue = queue
        self._invoke = invoke
        self._batch_size = batch_size
        self._max = max_concurrency
        self._free_concurrency = free_concurrency
        self.level = float(START_CONCURRENCY)
        self._level_at = 0.0
        self._backlog = False
        self.busy: list[float] = []  # heap of the end times of invocations in flight
        self.invocations = 0
        self.records = 0
        self.failed_records = 0
        self.peak = 0

    def in_flight(self, at: float) -> int:
        while self.busy and self.busy[0] <= at:
            heapq.heappop(self.busy)
        return len(self.busy)

    def _scale(self, at: float) -> None:
        elapsed = max(0.0, at - self._level_at)
        if self._backlog:
            self.level = min(self._max, self.level + elapsed * SCALE_UP_PER_SECOND)
        else:
            self.level = max(START_CONCURRENCY, self.level - elapsed * SCALE_UP_PER_SECOND)
        self._level_at = max(self._level_at, at)

    def poll(self, at: float) -> None:
        """Start every invocation the current concurrency allows on what is visible at `at`."""
        self._scale(at)
        while self.in_flight(at) < int(self.level) and self._free_concurrency() > 0 and self.queue.has_visible(at):
            messages = self.queue.receive(at, self._batch_size)
            if not messages:
                break
            records = [sqs_record(self.queue, m, at) for m in messages]
            response, ended = self._invoke(records, at)
            failed = {item["itemIdentifier"] for item in response.get("batchItemFailures") or []}
            for message in messages:
                if message.message_id not in failed:
                    self.queue.delete(message.receipt)
            # A failed record stays in flight: it is received again when its visibility timeout ends.
            heapq.heappush(self.busy, max(ended, at + 1e-3))
            self.invocations += 1
            self.records += len(messages)
            self.failed_records += len(failed)
        self.peak = max(self.peak, self.in_flight(at))
        self._backlog = self.queue.has_visible(at)

    def next_wake(self, at: float) -> float | None:
        """When polling again may start more: an invocation ends, a message becomes visible, or
        (with a backlog) the concurrency grows by one."""
        times = []
        visible = self.queue.next_visible()
        if visible is not None:
            if visible > at:
                times.append(visible)
            elif self.busy:
                times.append(self.busy[0])
            if visible <= at and self.level < self._max:
                times.append(at + 1 / SCALE_UP_PER_SECOND)
        return min(times) if times else None
