"""The bodies of the event handlers: SQS batches (one bad record fails alone) and schedules."""
from __future__ import annotations

import json
from typing import Any, Callable

from . import wiring
from .observability import logger, metrics


def _batch(event: dict[str, Any], handle: Callable[[dict[str, Any], int], None]) -> dict[str, Any]:
    from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

    def record_handler(record: Any) -> None:
        body = json.loads(record.body)
        receive_count = int(record.attributes.approximate_receive_count or 1)
        handle(body, receive_count)

    try:
        return process_partial_response(event=event, record_handler=record_handler,
                                        processor=BatchProcessor(event_type=EventType.SQS))
    finally:
        if metrics.metric_set:
            metrics.flush_metrics()
        logger.remove_keys(["execution_id"])


def dispatch_jobs(event: dict[str, Any]) -> dict[str, Any]:
    """Jobs queue: launches and timeout checks."""
    engine = wiring.get_engine()
    return _batch(event, engine.handle_message)


def monitor_tasks(event: dict[str, Any]) -> dict[str, Any]:
    """Events queue: ECS task state changes delivered by the EventBridge rule."""
    engine = wiring.get_engine()
    return _batch(event, lambda body, _count: engine.handle_task_event(body))


def sweep() -> dict[str, int]:
    counts = wiring.get_engine().sweep()
    if any(counts.values()):
        logger.info("sweep repaired executions", extra=counts)
    return counts
