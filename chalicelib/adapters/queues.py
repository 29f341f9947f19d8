"""SQS: the jobs queue that drives launches and timeout checks."""
from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..domain.errors import DependencyDown
from ..domain.model import Execution

LAUNCH = "launch"
TIMEOUT = "timeout"


def execution_message(execution: Execution, kind: str = LAUNCH, due_at: float | None = None,
                      attempt: int = 0) -> dict[str, Any]:
    message: dict[str, Any] = {"taskId": execution.task_id, "jobId": execution.job_id,
                               "executionId": execution.execution_id}
    if kind != LAUNCH:
        message["kind"] = kind
    if due_at is not None:
        message["dueAt"] = due_at
    if attempt:
        message["attempt"] = attempt
    return message


class SqsQueue:
    """One SQS queue of JSON messages. SQS delays are whole seconds, at most 15 minutes."""

    MAX_DELAY = 900

    def __init__(self, client: Any, queue_url: str) -> None:
        self._sqs = client
        self._url = queue_url

    def send(self, message: dict[str, Any], delay_seconds: float = 0) -> str:
        delay = max(0, min(self.MAX_DELAY, int(round(delay_seconds))))
        try:
            response = self._sqs.send_message(QueueUrl=self._url, MessageBody=json.dumps(message), DelaySeconds=delay)
        except (BotoCoreError, ClientError) as error:
            raise DependencyDown(f"SQS: {error}") from error
        return response["MessageId"]


class SqsJobQueue(SqsQueue):
    """The jobs queue: a launch due later than SQS can delay carries `dueAt` and the dispatcher
    sends it again until then."""

    def send_launch(self, execution: Execution, delay_seconds: float = 0, due_at: float | None = None,
                    attempt: int = 0) -> str:
        return self.send(execution_message(execution, LAUNCH, due_at, attempt), delay_seconds)

    def send_timeout(self, execution: Execution, due_at: float, delay_seconds: float) -> str:
        return self.send(execution_message(execution, TIMEOUT, due_at), delay_seconds)

    def ping(self) -> None:
        self._sqs.get_queue_attributes(QueueUrl=self._url, AttributeNames=["QueueArn"])

    def depth(self, url: str | None = None) -> dict[str, int]:
        attributes = self._sqs.get_queue_attributes(
            QueueUrl=url or self._url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                            "ApproximateNumberOfMessagesDelayed"],
        )["Attributes"]
        return {
            "visible": int(attributes.get("ApproximateNumberOfMessages", 0)),
            "inFlight": int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
            "delayed": int(attributes.get("ApproximateNumberOfMessagesDelayed", 0)),
        }
