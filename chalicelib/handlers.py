"""The bodies of the event handlers: SQS batches (one bad record fails alone) and schedules."""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from . import wiring
from .domain.ecs import parse_task_event
from .domain.messages import (
    CronTick,
    JobMessage,
    Launch,
    MalformedMessage,
    ScheduleFiring,
    TimeoutCheck,
    decode_job_message,
    decode_notification,
)
from .observability import MetricUnit, logger, metrics

# The functions' timeout (.chalice/config.json lambda_timeout), for a batch handed over without a
# Lambda context that says what is left of it.
FUNCTION_TIMEOUT_SECONDS = 60.0


def _batch(event: dict[str, Any], handle: Callable[[str], None]) -> dict[str, Any]:
    from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

    def record_handler(record: Any) -> None:
        # A body that is not one of our messages fails alone: it goes to the dead-letter queue
        # after the redrive count, where an operator sees it; nothing is dropped silently.
        handle(record.body)

    try:
        response = process_partial_response(event=event, record_handler=record_handler,
                                            processor=BatchProcessor(event_type=EventType.SQS))
        return dict(response)
    finally:
        if metrics.metric_set:
            metrics.flush_metrics()
        logger.remove_keys(["execution_id"])


def _due(record: dict[str, Any]) -> float:
    try:
        message = decode_job_message(record.get("body") or "{}")
    except MalformedMessage:
        return 0.0
    if isinstance(message, CronTick):
        return message.scheduled_at or 0.0
    return message.due_at or 0.0


def handle_job_message(message: JobMessage) -> None:
    """Route one jobs-queue message to the service that acts on it."""
    if isinstance(message, Launch):
        wiring.get_engine().dispatcher.dispatch(message)
    elif isinstance(message, TimeoutCheck):
        wiring.get_engine().timeouts.check(message)
    elif isinstance(message, (ScheduleFiring, CronTick)):
        wiring.get_scheduling().handle(message)


def dispatch_jobs(event: dict[str, Any]) -> dict[str, Any]:
    """Jobs queue: launches, timeout checks, schedule firings and cron ticks. A batch is handled
    soonest due first: a firing that arrived early waits for its second in the handler, so
    records due now must not queue behind it, and waits of several early records then add up to
    the latest one's, not their sum."""
    records = sorted(event.get("Records") or [], key=_due)
    return _batch({**event, "Records": records}, lambda body: handle_job_message(decode_job_message(body)))


def monitor_tasks(event: dict[str, Any]) -> dict[str, Any]:
    """Events queue: ECS task state changes delivered by the EventBridge rule."""
    from . import live_handlers

    engine = wiring.get_engine()

    def handle(body: str) -> None:
        try:
            task_event = json.loads(body)
        except (ValueError, RecursionError) as error:
            raise MalformedMessage("not JSON") from error
        if not isinstance(task_event, dict):
            raise MalformedMessage("not a JSON object")
        change = parse_task_event(task_event)  # parsed once, for the engine and the live logs
        if change is None:
            return  # not a task of ours
        execution = engine.monitor.task_changed(change)
        live_handlers.task_event(change, execution)  # a stopped task ends its execution's live log streams

    return _batch(event, handle)


def _time_left(context: Any) -> Callable[[], float]:
    """Seconds the function has left: what its Lambda context says, or else what is left of the
    configured timeout since the batch began."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if callable(remaining):
        return lambda: float(remaining()) / 1000.0
    started = time.monotonic()
    return lambda: FUNCTION_TIMEOUT_SECONDS - (time.monotonic() - started)


def send_notifications(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """Notify queue: webhooks and e-mails of started and ended executions (docs/notifications.md).
    A message the function has too little time left for is postponed, not cut short: one slow
    receiver cannot make the function time out with the rest of its batch undone. The first is
    always attempted: if the function's whole time were too short for one, postponing would hand
    it on for ever."""
    sender = wiring.get_notification_sender()
    time_left = _time_left(context)
    attempted: list[bool] = []

    def handle(body: str) -> None:
        message = decode_notification(body)
        sender.handle(message, time_left if attempted else None)
        attempted.append(True)

    return _batch(event, handle)


def reconcile() -> dict[str, int]:
    """The reconciler's pass: executions, then overdue schedules, each repaired on its own. A
    pass some of whose repairs failed still ends; `errors` counts them (each is logged with its
    ids), and the `ReconcileErrors` metric lets an alarm see a pass that keeps failing."""
    try:
        counts = wiring.get_engine().reconciler.reconcile()
        schedules = wiring.get_scheduling().reconcile()
        counts["schedules"] = schedules["schedules"]
        counts["errors"] += schedules["errors"]
        if any(counts.values()):
            logger.info("the reconciler repaired executions", extra=counts)
        if counts["errors"]:
            logger.error("the reconciler's pass left repairs undone; the next pass tries them again", extra=counts)
            metrics.add_metric(name="ReconcileErrors", unit=MetricUnit.Count, value=counts["errors"])
        return counts
    finally:
        if metrics.metric_set:
            metrics.flush_metrics()
