"""The bodies of the event handlers: SQS batches (one bad record fails alone) and schedules."""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

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


def _due(record: dict[str, Any]) -> float:
    try:
        return float(json.loads(record.get("body") or "{}").get("dueAt") or 0)
    except (ValueError, TypeError, AttributeError):
        return 0.0


def dispatch_jobs(event: dict[str, Any]) -> dict[str, Any]:
    """Jobs queue: launches and timeout checks. A batch is handled soonest due first: a firing
    that arrived early waits for its second in the handler, so records due now must not queue
    behind it, and waits of several early records then add up to the latest one's, not their sum."""
    engine = wiring.get_engine()
    records = sorted(event.get("Records") or [], key=_due)
    return _batch({**event, "Records": records}, engine.handle_message)


def monitor_tasks(event: dict[str, Any]) -> dict[str, Any]:
    """Events queue: ECS task state changes delivered by the EventBridge rule."""
    from . import live_handlers

    engine = wiring.get_engine()

    def handle(body: dict[str, Any], _count: int) -> None:
        engine.handle_task_event(body)
        live_handlers.task_event(body)  # a stopped task ends its execution's live log streams

    return _batch(event, handle)


def send_notifications(event: dict[str, Any]) -> dict[str, Any]:
    """Notify queue: webhooks and e-mails of started and ended executions (docs/notifications.md)."""
    sender = wiring.get_notification_sender()
    return _batch(event, sender.handle)


def sweep() -> dict[str, int]:
    counts = wiring.get_engine().sweep()
    if any(counts.values()):
        logger.info("sweep repaired executions", extra=counts)
    return counts
