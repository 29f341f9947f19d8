"""Local stand-ins for Lambda's event sources: pollers that deliver queue batches to the app's
handlers in the event Lambda's SQS event source sends (deleting what succeeded; partial batch
failures, visibility timeouts and dead-lettering left to the queue, as in AWS), over the local
backend's queues (LocalQueue) or over SQS (SqsQueue, for the aws backend), and timers for
scheduled handlers."""
from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol

from chalice.local import LambdaContext

from chalicelib.observability import logger

from .sqlite.queues import LocalQueues
from .timestamps import iso


def sqs_event(messages: list[dict[str, Any]], queue_arn: str, region: str) -> dict[str, Any]:
    """The event Lambda's SQS event source sends for a batch of received messages."""
    records = []
    for message in messages:
        attributes = message.get("Attributes", {})
        records.append({
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": {
                "ApproximateReceiveCount": attributes.get("ApproximateReceiveCount", "1"),
                "SentTimestamp": attributes.get("SentTimestamp", str(int(time.time() * 1000))),
                "SenderId": attributes.get("SenderId", "local"),
                "ApproximateFirstReceiveTimestamp": attributes.get("ApproximateFirstReceiveTimestamp",
                                                                   str(int(time.time() * 1000))),
            },
            "messageAttributes": {},
            "md5OfBody": message.get("MD5OfBody") or hashlib.md5(message["Body"].encode()).hexdigest(),
            "eventSource": "aws:sqs",
            "eventSourceARN": queue_arn,
            "awsRegion": region,
        })
    return {"Records": records}


def _context(name: str) -> LambdaContext:
    return LambdaContext(function_name=name, memory_size=512, max_runtime_ms=60_000)


class LocalQueue:
    """One queue of the local backend, as the poller reads it (receives wait on the queue itself)."""

    def __init__(self, queues: LocalQueues, queue: str, region: str = "us-east-1",
                 account: str = "123456789012") -> None:
        self._queues, self._queue = queues, queue
        self._arn = f"arn:aws:sqs:{region}:{account}:{queue}"

    def receive(self, batch_size: int, wait_seconds: float) -> list[dict[str, Any]]:
        return [m.to_sqs() for m in self._queues.receive(self._queue, batch_size, wait_seconds=wait_seconds)]

    def arn(self) -> str:
        return self._arn

    def delete(self, receipt_handles: list[str]) -> None:
        self._queues.delete_batch(self._queue, receipt_handles)


class SqsQueue:
    """One SQS queue, as the poller reads it (long polls of whole seconds)."""

    def __init__(self, sqs: Any, queue_url: str) -> None:
        self._sqs, self._url = sqs, queue_url

    def receive(self, batch_size: int, wait_seconds: float) -> list[dict[str, Any]]:
        answer = self._sqs.receive_message(QueueUrl=self._url, MaxNumberOfMessages=batch_size,
                                           WaitTimeSeconds=int(wait_seconds), AttributeNames=["All"])
        return list(answer.get("Messages", []))

    def arn(self) -> str:
        return str(self._sqs.get_queue_attributes(QueueUrl=self._url, AttributeNames=["QueueArn"])
                   ["Attributes"]["QueueArn"])

    def delete(self, receipt_handles: list[str]) -> None:
        if receipt_handles:
            self._sqs.delete_message_batch(QueueUrl=self._url, Entries=[
                {"Id": str(i), "ReceiptHandle": handle} for i, handle in enumerate(receipt_handles)])


class Queue(Protocol):
    def receive(self, batch_size: int, wait_seconds: float) -> list[dict[str, Any]]: ...
    def arn(self) -> str: ...
    def delete(self, receipt_handles: list[str]) -> None: ...


def deliver_once(sqs: Any, queue_url: str, handler: Callable[[dict[str, Any], Any], Any], *,
                 batch_size: int = 10, wait_seconds: int = 0, region: str = "us-east-1", name: str = "handler") -> int:
    """Receive one batch of an SQS queue and hand it to the handler as Lambda would; delete what
    succeeded. Returns how many messages were received."""
    poller = QueuePoller(SqsQueue(sqs, queue_url), handler, name=name, batch_size=batch_size, region=region)
    return poller.deliver_once(wait_seconds)


def handle_batch(handler: Callable[[dict[str, Any], Any], Any], received: list[dict[str, Any]], queue_arn: str,
                 region: str, name: str) -> list[str]:
    """Hand received messages (as ReceiveMessage answers them) to the handler as Lambda would;
    the receipt handles of those that succeeded, to delete. A handler that raises fails the
    whole batch, which comes back after the visibility timeout."""
    try:
        response = handler(sqs_event(received, queue_arn, region), _context(name)) or {}
    except Exception:  # noqa: BLE001 - as in Lambda, the whole batch comes back after the visibility timeout
        logger.exception("local event source: handler failed", extra={"handler": name})
        return []
    failed = {item.get("itemIdentifier") for item in response.get("batchItemFailures", [])}
    return [m["ReceiptHandle"] for m in received if m["MessageId"] not in failed]


class QueuePoller:
    """Delivers one queue's batches to one handler, in a few threads, each waiting on the queue
    for the next message."""

    def __init__(self, queue: Queue, handler: Callable[[dict[str, Any], Any], Any], *,
                 name: str, concurrency: int = 2, batch_size: int = 10, region: str = "us-east-1") -> None:
        self._queue, self._handler = queue, handler
        self._name, self._batch_size, self._region = name, batch_size, region
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, name=f"{name}-{i}", daemon=True) for i in range(concurrency)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def deliver_once(self, wait_seconds: float = 0.0) -> int:
        """Receive one batch and hand it to the handler; returns how many messages were received."""
        received = self._queue.receive(self._batch_size, wait_seconds)
        if received:
            self._queue.delete(handle_batch(self._handler, received, self._queue.arn(), self._region, self._name))
        return len(received)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.deliver_once(wait_seconds=1.0)
            except Exception:  # noqa: BLE001 - a poller must outlive a passing error
                if not self._stop.is_set():
                    logger.exception("local event source: poll failed", extra={"handler": self._name})
                    self._stop.wait(0.5)

    def stop(self) -> None:
        """Stop after the batches being handled (local queues must be closed to wake waiting threads)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)


def scheduled_event(rule_name: str, region: str = "us-east-1", account: str = "123456789012") -> dict[str, Any]:
    return {
        "version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event", "source": "aws.events",
        "account": account, "time": iso(time.time()), "region": region,
        "resources": [f"arn:aws:events:{region}:{account}:rule/{rule_name}"], "detail": {},
    }


class Periodic:
    """Runs `tick` every `interval` seconds in a daemon thread until stopped. A failing tick is
    logged (and followed by `pause` seconds of rest) and the next one runs: the local stand-ins
    must outlive a passing error, as the AWS services they stand in for do."""

    def __init__(self, tick: Callable[[], Any], interval: float, name: str, pause: float = 0.0,
                 at_start: bool = False) -> None:
        self._tick, self._interval, self._name, self._pause = tick, interval, name, pause
        self._at_start = at_start  # the first tick comes at once, not after an interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        wait = 0.0 if self._at_start else self._interval
        while not self._stop.wait(wait):
            wait = self._interval
            try:
                self._tick()
            except Exception:  # noqa: BLE001 - the next tick tries again
                if not self._stop.is_set():
                    logger.exception("local stand-in: a round failed", extra={"worker": self._name})
                    self._stop.wait(self._pause)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class Timer(Periodic):
    """Calls a scheduled handler every `interval` seconds, as an EventBridge rate rule would."""

    def __init__(self, handler: Callable[[dict[str, Any], Any], Any], interval: float, name: str) -> None:
        super().__init__(lambda: handler(scheduled_event(name), _context(name)), interval, name)
