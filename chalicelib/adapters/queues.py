"""SQS: the jobs queue that drives launches."""
from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..domain.errors import DependencyDown
from ..domain.model import Execution


def launch_message(execution: Execution) -> dict[str, str]:
    return {"taskId": execution.task_id, "jobId": execution.job_id, "executionId": execution.execution_id}


class SqsJobQueue:
    def __init__(self, client: Any, queue_url: str) -> None:
        self._sqs = client
        self._url = queue_url

    def send_launch(self, execution: Execution, delay_seconds: int = 0) -> str:
        try:
            response = self._sqs.send_message(
                QueueUrl=self._url,
                MessageBody=json.dumps(launch_message(execution)),
                DelaySeconds=max(0, min(900, int(delay_seconds))),
            )
        except (BotoCoreError, ClientError) as error:
            raise DependencyDown(f"SQS: {error}") from error
        return response["MessageId"]

    def ping(self) -> None:
        self._sqs.get_queue_attributes(QueueUrl=self._url, AttributeNames=["QueueArn"])
