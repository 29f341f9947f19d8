"""Creates the AWS resources the app needs in an emulated account (moto), for the local runtime
and the tests. In AWS the deployment template creates the same resources."""
from __future__ import annotations

import json
from typing import Any

QUEUES = ("jobs", "events", "notify")


def local_environment(prefix: str = "fastlane") -> dict[str, str]:
    """The environment variables that name this deployment's resources (queue URLs are added
    by provision, once the queues exist)."""
    return {
        "FASTLANE_PREFIX": prefix,
        "TASKS_TABLE": f"{prefix}-tasks",
        "JOBS_TABLE": f"{prefix}-jobs",
        "EXECUTIONS_TABLE": f"{prefix}-executions",
        "DELIVERIES_TABLE": f"{prefix}-deliveries",
        "CONNECTIONS_TABLE": f"{prefix}-connections",
        "IDEMPOTENCY_TABLE": f"{prefix}-idempotency",
    }


def provision(sqs: Any, prefix: str = "fastlane", max_receive_count: int = 5, logs: Any = None,
              visibility_timeout: int = 60) -> dict[str, str]:
    """Create the tables and the queues (each with a dead-letter queue); return the variables
    that point the app at them. Call with the environment already set for the app's settings."""
    from chalicelib.adapters.dynamo.tables import Tables
    from chalicelib.config import Settings

    settings = Settings.from_environment()
    Tables(settings).create()
    from chalicelib.adapters.connections import DynamoConnectionStore

    DynamoConnectionStore(settings).create_table()  # live logs' websocket connections
    import boto3

    from chalicelib.adapters.deliveries import create_deliveries_table
    from chalicelib.adapters.idempotency import create_idempotency_table

    dynamodb = boto3.client("dynamodb", region_name=settings.region)
    create_deliveries_table(dynamodb, settings.deliveries_table)
    create_idempotency_table(dynamodb, settings.idempotency_table)  # Idempotency-Key
    env: dict[str, str] = {}
    from .sqlite.queues import max_receives

    for name in QUEUES:
        receives = max_receives(name, max_receive_count)
        dlq_url = sqs.create_queue(QueueName=f"{prefix}-{name}-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        url = sqs.create_queue(
            QueueName=f"{prefix}-{name}",
            Attributes={
                "VisibilityTimeout": str(visibility_timeout),
                "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(receives)}),
            },
        )["QueueUrl"]
        env[f"{name.upper()}_QUEUE_URL"] = url
        env[f"{name.upper()}_DLQ_URL"] = dlq_url
        env[f"{name.upper()}_QUEUE_NAME"] = f"{prefix}-{name}"
        env[f"{name.upper()}_QUEUE_ARN"] = sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    import boto3

    scheduler = boto3.client("scheduler", region_name=sqs.meta.region_name)
    scheduler.create_schedule_group(Name=prefix)
    env["SCHEDULE_GROUP"] = prefix
    # The emulator does not check roles; in AWS the deployment creates this one for Scheduler.
    env["SCHEDULER_ROLE_ARN"] = f"arn:aws:iam::123456789012:role/{prefix}-scheduler"
    if logs is not None:
        group = f"/{prefix}/jobs"
        if not logs.describe_log_groups(logGroupNamePrefix=group).get("logGroups"):
            logs.create_log_group(logGroupName=group)
        env["LOG_GROUP"] = group
    return env
