"""AWS's public list prices (us-east-1, on-demand, without free tiers) that turn figure 4's
counts into dollars per million jobs. A model, not a bill: what each service charges for, from
the counts the bench measured and the assumptions written next to each line
(docs/performance.md#what-a-million-jobs-cost)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Dollars, per unit named.
DYNAMODB_WRITE_UNIT = 0.625 / 1e6  # on-demand write request unit
DYNAMODB_READ_UNIT = 0.125 / 1e6  # on-demand read request unit
SQS_REQUEST = 0.40 / 1e6  # standard queue, per request (64 KB chunk)
LAMBDA_REQUEST = 0.20 / 1e6
LAMBDA_GB_SECOND = 0.0000166667  # x86
API_GATEWAY_REST_REQUEST = 3.50 / 1e6  # REST API (Chalice deploys one), first 333 million a month
CLOUDWATCH_LOGS_GB = 0.50  # ingestion
FARGATE_VCPU_HOUR = 0.04048
FARGATE_GB_HOUR = 0.004445
FARGATE_MINIMUM_SECONDS = 60  # Fargate bills by the second, with a one-minute minimum


@dataclass(frozen=True)
class JobModel:
    """What a job is assumed to be besides what the bench counts."""

    lambda_memory_gb: float = 0.5  # .chalice/config.json: lambda_memory_size 512
    invocations: int = 4  # the API's, one dispatch, two monitor (RUNNING, STOPPED): batches of 1 at low traffic
    invocation_seconds: float = 0.1  # billed duration of each (a few DynamoDB calls each)
    # SQS requests the app does not make: per message sent, Lambda's event source receives and
    # deletes it (one request each at low traffic, fewer in batches); EventBridge sends the two
    # task events.
    event_source_requests_per_message: int = 2
    events_per_job: int = 2
    output_bytes: int = 10 * 1024  # the job's stdout and stderr, ingested into CloudWatch Logs
    function_log_bytes: int = 4 * 1024  # the functions' structured logs per job
    vcpu: float = 0.25  # TASK_CPU 256
    memory_gb: float = 0.5  # TASK_MEMORY 512
    run_seconds: float = 60.0  # billed: the one-minute minimum covers a short job


def per_million(counted: dict[str, Any], model: JobModel = JobModel()) -> dict[str, float]:
    """Dollars per million jobs like the counted one, by service; `fargate` apart (compute, the
    same under AWS Batch, which adds no charge of its own)."""
    by_operation = counted["byOperation"]
    app_sends = sum(calls for name, calls in by_operation.items() if name.startswith("sqs:Send"))
    sqs_requests = sum(calls for name, calls in by_operation.items() if name.startswith("sqs:"))
    messages = app_sends + model.events_per_job
    sqs_requests += model.events_per_job + messages * model.event_source_requests_per_message
    log_gb = (model.output_bytes + model.function_log_bytes) / 2**30
    billed = max(FARGATE_MINIMUM_SECONDS, model.run_seconds) / 3600
    dollars = {
        "dynamodb": counted["writeUnits"] * DYNAMODB_WRITE_UNIT + counted["readUnits"] * DYNAMODB_READ_UNIT,
        "sqs": sqs_requests * SQS_REQUEST,
        "lambda": model.invocations * (LAMBDA_REQUEST + model.invocation_seconds * model.lambda_memory_gb
                                       * LAMBDA_GB_SECOND),
        "apiGateway": API_GATEWAY_REST_REQUEST,
        "logs": log_gb * CLOUDWATCH_LOGS_GB,
        "ecs": 0.0,  # RunTask and the other ECS calls are free
        "fargate": billed * (model.vcpu * FARGATE_VCPU_HOUR + model.memory_gb * FARGATE_GB_HOUR),
    }
    return {name: round(value * 1e6, 2) for name, value in dollars.items()}
