"""SQS: the jobs queue (launches, timeout checks, schedule firings, cron ticks) and the notify
queue, carrying the typed messages of domain/messages.py, and the depths /status shows."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..domain.errors import DependencyDown
from ..domain.limits import SQS_MAX_BATCH, SQS_MAX_DELAY_SECONDS
from ..domain.messages import JobMessage, Notification, encode
from ..ports import QueueDepth


def whole_delay(delay_seconds: float) -> int:
    """SQS delays are whole seconds, at most 15 minutes."""
    return max(0, min(SQS_MAX_DELAY_SECONDS, int(round(delay_seconds))))


PENDING_ATTRIBUTES = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                      "ApproximateNumberOfMessagesDelayed"]


class SqsQueue:
    """One SQS queue of JSON messages."""

    def __init__(self, client: Any, queue_url: str) -> None:
        self._sqs = client
        self._url = queue_url

    def _send(self, body: str, delay_seconds: float) -> str:
        try:
            response = self._sqs.send_message(QueueUrl=self._url, MessageBody=body,
                                              DelaySeconds=whole_delay(delay_seconds))
        except (BotoCoreError, ClientError) as error:
            raise DependencyDown.of("SQS", error) from error
        return str(response["MessageId"])

    def ping(self) -> None:
        try:
            self._sqs.get_queue_attributes(QueueUrl=self._url, AttributeNames=["QueueArn"])
        except (BotoCoreError, ClientError) as error:
            raise DependencyDown.of("SQS", error) from error


class SqsJobQueue(SqsQueue):
    def send(self, message: JobMessage, delay_seconds: float = 0) -> str:
        return self._send(encode(message), delay_seconds)

    def pending(self) -> int:
        try:
            attributes = self._sqs.get_queue_attributes(QueueUrl=self._url, AttributeNames=PENDING_ATTRIBUTES)
        except (BotoCoreError, ClientError) as error:
            raise DependencyDown.of("SQS", error) from error
        return sum(int(attributes["Attributes"].get(name, 0)) for name in PENDING_ATTRIBUTES)


class SqsNotifyQueue(SqsQueue):
    def send(self, message: Notification, delay_seconds: float = 0) -> str:
        return self._send(encode(message), delay_seconds)

    def send_all(self, messages: Sequence[Notification]) -> None:
        """Send every message, or raise: the engine then publishes again on redelivery."""
        for start in range(0, len(messages), SQS_MAX_BATCH):
            chunk = messages[start:start + SQS_MAX_BATCH]
            entries = [{"Id": str(i), "MessageBody": encode(m)} for i, m in enumerate(chunk)]
            try:
                response = self._sqs.send_message_batch(QueueUrl=self._url, Entries=entries)
            except (BotoCoreError, ClientError) as error:
                raise DependencyDown.of("SQS", error) from error
            failed = response.get("Failed") or []
            if failed:
                raise DependencyDown.of("SQS", f"refused {len(failed)} notification message(s): {failed[0].get('Message')}")


class SqsQueueDepths:
    """Approximate depths of the deployment's queues, by role."""

    def __init__(self, client: Any, urls: dict[str, str]) -> None:
        self._sqs = client
        self._urls = {role: url for role, url in urls.items() if url}

    def depths(self) -> dict[str, QueueDepth]:
        result: dict[str, QueueDepth] = {}
        for role, url in self._urls.items():
            try:
                attributes = self._sqs.get_queue_attributes(
                    QueueUrl=url,
                    AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                                    "ApproximateNumberOfMessagesDelayed"],
                )["Attributes"]
            except (BotoCoreError, ClientError) as error:
                raise DependencyDown.of("SQS", error) from error
            result[role] = {
                "visible": int(attributes.get("ApproximateNumberOfMessages", 0)),
                "inFlight": int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
                "delayed": int(attributes.get("ApproximateNumberOfMessagesDelayed", 0)),
            }
        return result
