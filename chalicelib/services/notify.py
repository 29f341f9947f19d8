"""Notifications of started and ended executions: the webhooks and e-mails an event calls for are
published by the engine, one message each, on the notify queue; the notify handler delivers
them once per (execution, notification, attempt) and retries failed webhooks through SQS
delays. Message format, signature, safety rules and settings: docs/notifications.md."""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from ..config import Settings
from ..domain.errors import MailRejected
from ..domain.lifecycle import STARTS, backoff, events_for
from ..domain.limits import SQS_MAX_DELAY_SECONDS
from ..domain.messages import EMAIL, WEBHOOK, Notification
from ..domain.model import Execution, Hook, Job
from ..domain.model import ExecutionStatus as S
from ..domain.redaction import redact_url, redact_urls
from ..domain.webhooks import request_headers
from ..observability import MetricUnit, logger, metrics
from ..ports import ClaimState, Deliveries, Executions, Jobs, Mailer, NotifyQueue, WebhookPoster

MAIL_OFF = "E-mail notifications are off: no sender is configured (MAIL_SENDER)."
NOTIFY_OFF = "Notifications are off: no notify queue is configured (NOTIFY_QUEUE_URL)."
# An ending's notifications wait for the execution's `starts` ones to be attempted, looking again
# every START_ORDER_DELAY seconds, for at most START_ORDER_WAIT seconds after the end.
START_ORDER_DELAY = 5.0
START_ORDER_WAIT = 900.0
# What handling a message takes besides its attempt (the delivery log, the job and the execution,
# a retry's message), with room for AWS calls that are retried; an e-mail's attempt is one SES call.
BOOKKEEPING_SECONDS = 5.0
EMAIL_SECONDS = 10.0
# A message postponed for want of the function's time is looked at again this much later.
POSTPONE_DELAY = 1.0


class DeliveryInProgress(Exception):
    """Another worker is sending this very notification now; the queue brings it back later."""


def notification_messages(announced: str, job: Job, execution: Execution, base_url: str = "") -> list[Notification]:
    """One notify-queue message per webhook hook and per e-mail recipient list that applies."""
    def message(kind: str, event: str, index: int, **rest: Any) -> Notification:
        return Notification(kind=kind, event=event, task_id=execution.task_id, job_id=execution.job_id,
                            execution_id=execution.execution_id, status=execution.status.value, index=index,
                            base_url=base_url.rstrip("/"), **rest)

    messages: list[Notification] = []
    for event in events_for(announced, execution.status):
        for index, hook in enumerate(job.spec.webhooks.get(event) or ()):
            messages.append(message(WEBHOOK, event, index, hook=hook))
        recipients = job.spec.notify.get(event) or []
        if recipients:
            messages.append(message(EMAIL, event, 0, to=tuple(recipients)))
    return messages


def retry_delay(attempt: int, backoff_min: float) -> float:
    """Seconds between failed attempt `attempt` (1 is the first) of a webhook and the next one:
    backoff_min × 2^(attempt-1), at most the 15 minutes an SQS delay allows."""
    return backoff(attempt - 1, backoff_min, 2.0, float(SQS_MAX_DELAY_SECONDS))


def notification_status(settings: Settings) -> dict[str, Any]:
    """What /status says about notifications, with a warning for anything switched off."""
    from ..domain import contract as shapes

    queue = bool(settings.notify_queue_url)
    warnings = [NOTIFY_OFF] if not queue else ([] if settings.mail_sender else [MAIL_OFF])
    return shapes.notifications_status(queue, queue and bool(settings.mail_sender), warnings)


# publishing (the engine's side) -------------------------------------------------------------------


class NotificationPublisher:
    """What the engine calls when an execution starts running and when it ends."""

    def __init__(self, queue: NotifyQueue, settings: Settings) -> None:
        self._queue = queue
        self._settings = settings

    def owes(self, event: str, job: Job, execution: Execution) -> bool:
        """Whether announcing `event` of the execution publishes anything."""
        return bool(notification_messages(event, job, execution))

    def publish(self, event: str, job: Job, execution: Execution) -> int:
        """Put one message per notification on the notify queue; raises when SQS did not take
        them all (the engine publishes again when the event is redelivered)."""
        base = self._settings.public_base_url or self._settings.notify_base_url or ""
        messages = notification_messages(event, job, execution, base)
        if messages:
            self._queue.send_all(messages)
            metrics.add_metric(name="NotificationsPublished", unit=MetricUnit.Count, value=len(messages))
            logger.info("notifications published", extra={"execution_id": execution.execution_id, "announced": event,
                                                          "count": len(messages)})
        return len(messages)


# e-mail content -----------------------------------------------------------------------------------


def outcome(event: str, execution: Execution) -> str:
    """How a subject line says what happened."""
    if event == STARTS:
        return "started"
    status = execution.status
    if status is S.TIMEDOUT:
        return "timed out"
    if status in (S.EXPIRED, S.STOPPED):
        return str(status.value)
    if execution.exit_code is not None:
        return f"{status.value}, exit code {execution.exit_code}"
    return str(status.value)


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def mail_content(event: str, job: Job, execution: Execution, base_url: str) -> tuple[str, str, str]:
    """Subject, text body and HTML body of a notification e-mail."""
    from html import escape

    from ..domain.contract import Urls

    urls = Urls(base_url)
    execution_url = urls.execution(execution.task_id, execution.job_id, execution.execution_id)
    subject = f"[fastlane] task {execution.task_id}, job {execution.job_id}: {outcome(event, execution)}"
    rows = [
        ("Task", execution.task_id),
        ("Job", execution.job_id),
        ("Execution", execution.execution_id),
        ("Event", event),
        ("Status", execution.status.value),
        ("Exit code", "-" if execution.exit_code is None else str(execution.exit_code)),
        ("Image", execution.image),
        ("Command", execution.command),
        ("Created", _when(execution.created_at)),
        ("Started", _when(execution.started_at)),
        ("Finished", _when(execution.finished_at)),
    ]
    if execution.error:
        rows.append(("Error", execution.error))
    if job.spec.metadata:
        rows.append(("Metadata", json.dumps(job.spec.metadata, sort_keys=True)))
    links = [("Execution", execution_url), ("Job", urls.job(execution.task_id, execution.job_id)),
             ("Output", f"{execution_url}/logs")]
    headline = subject.removeprefix("[fastlane] ")
    headline = headline[:1].upper() + headline[1:]
    width = max(len(name) for name, _ in rows + links) + 2
    text = "\n".join(
        [headline, ""]
        + [f"{name + ':':<{width}}{value}" for name, value in rows] + [""]
        + [f"{name + ':':<{width}}{url}" for name, url in links] + ["", "-- fastlane"]
    ) + "\n"
    table = "".join(f"<tr><th align=\"left\">{escape(name)}</th><td>{escape(value)}</td></tr>" for name, value in rows)
    link_items = "".join(f"<li>{escape(name)}: <a href=\"{escape(url)}\">{escape(url)}</a></li>" for name, url in links)
    html = (f"<!doctype html><html><body><h2>{escape(headline)}</h2>"
            f"<table cellpadding=\"4\">{table}</table><ul>{link_items}</ul><p>-- fastlane</p></body></html>")
    return subject, text, html


# delivery (the notify handler's side) -------------------------------------------------------------


class NotificationSender:
    """Delivers one notify-queue message: claims its delivery key, sends, records the attempt on
    the execution, queues the next attempt of a failed webhook, and marks the key done. A copy
    of a message that was delivered already finds its key done and sends nothing."""

    def __init__(self, jobs: Jobs, executions: Executions, queue: NotifyQueue | None, deliveries: Deliveries,
                 mailer: Mailer | None, settings: Settings, post: WebhookPoster,
                 clock: Callable[[], float] = time.time) -> None:
        self._jobs = jobs
        self._executions = executions
        self._queue = queue
        self._deliveries = deliveries
        self._mailer = mailer
        self._settings = settings
        self._post = post
        self._clock = clock

    def budget(self, kind: str) -> float:
        """The longest handling one message of this kind takes: its attempt (a webhook's is cut at
        WEBHOOK_TIMEOUT, all told) and its bookkeeping."""
        attempt = self._settings.webhook_timeout if kind == WEBHOOK else EMAIL_SECONDS
        return attempt + BOOKKEEPING_SECONDS

    def _lease(self, kind: str) -> float:
        # The claim outlives a webhook's longest attempt and its bookkeeping, with room to spare.
        return self.budget(kind) + 30.0 if kind == WEBHOOK else 60.0

    def handle(self, message: Notification, time_left: Callable[[], float] | None = None) -> None:
        """Deliver one message. `time_left`: seconds the function has left; a message that may not
        be done in them is postponed rather than cut short by the function's timeout."""
        logger.append_keys(execution_id=message.execution_id)
        key = message.delivery_key
        if time_left is not None and (left := time_left()) < self.budget(message.kind):
            self._postpone(message, left)
            return
        lease = self._lease(message.kind)
        claim = self._deliveries.claim(key, lease)
        if claim.state is ClaimState.DONE:
            logger.info("notification already delivered; duplicate dropped", extra={"delivery": key})
            return
        if claim.state is ClaimState.BUSY:
            # Another worker holds the key, or one died holding it: look again when its lease
            # ends, without spending one of the message's receives (they lead to the DLQ).
            if self._queue is None:
                raise DeliveryInProgress(f"notification {key} is being delivered by another worker")
            self._queue.send(message, delay_seconds=min(lease, SQS_MAX_DELAY_SECONDS))
            return
        if claim.state is ClaimState.CLAIMED:
            try:
                job = self._jobs.get_job(message.job_id)
                execution = self._executions.get_execution(message.job_id, message.execution_id)
                if job is None or execution is None:
                    logger.warning("the execution of a notification no longer exists; dropped",
                                   extra={"delivery": key})
                    self._deliveries.complete(key)
                    return
                if self._waits_for_starts(message, job, execution):
                    self._deliveries.release(key)
                    if self._queue is None:
                        raise DeliveryInProgress(f"notification {key} waits for the execution's starts notifications")
                    self._queue.send(message, delay_seconds=START_ORDER_DELAY)
                    return
                entry = self._webhook(message, key, job, execution) if message.kind == WEBHOOK else \
                    self._email(message, key, job, execution)
            except BaseException:
                self._deliveries.release(key)  # nothing was sent: the redelivery tries again
                raise
            self._deliveries.mark_sent(key, entry, lease)
        else:  # an earlier worker sent it and stopped before the bookkeeping below
            entry = claim.outcome
            execution = self._executions.get_execution(message.job_id, message.execution_id)
        if execution is not None and not any(e.get("delivery") == key for e in execution.notifications):
            self._executions.record_notification(message.job_id, message.execution_id, entry)
        if entry.get("retryIn") is not None and self._queue is not None:
            self._queue.send(replace(message, attempt=message.attempt + 1), delay_seconds=float(entry["retryIn"]))
        self._deliveries.complete(key)

    def _postpone(self, message: Notification, left: float) -> None:
        """Put the message back on the queue as a new one, a moment later, and let this copy
        succeed: the function would time out in the middle of it, and then every message of the
        batch not yet done would come back with one more receive, nearer the dead-letter queue,
        behind whatever held the batch up. Nothing is claimed yet; its attempt is not counted."""
        if self._queue is None:
            raise DeliveryInProgress(f"notification {message.delivery_key}: too little of the function's time left")
        self._queue.send(message, delay_seconds=POSTPONE_DELAY)
        metrics.add_metric(name="NotificationsPostponed", unit=MetricUnit.Count, value=1)
        logger.info("notification postponed: too little of the function's time left for it",
                    extra={"delivery": message.delivery_key, "time_left": round(left, 1)})

    def _waits_for_starts(self, message: Notification, job: Job, execution: Execution) -> bool:
        """An ending's notification of one kind waits until every `starts` one of that kind has
        settled (recorded on the execution as delivered, or failed for good): notifications reach
        receivers in lifecycle order.
        A `starts` that does not come within START_ORDER_WAIT of the end is not waited for."""
        if message.event == STARTS or execution.started_at is None:
            return False
        due = len(job.spec.webhooks.get(STARTS, ())) if message.kind == WEBHOOK else \
            int(bool(job.spec.notify.get(STARTS)))
        if not due:
            return False
        # Settled: delivered, or failed with no attempt left (one still to retry is not).
        settled = {e["delivery"].split("/")[3] for e in execution.notifications
                   if e.get("event") == STARTS and e.get("kind") == message.kind and e.get("delivery")
                   and (e.get("ok") or e.get("retryIn") is None)}
        if len(settled) >= due:
            return False
        return self._clock() < (execution.finished_at or self._clock()) + START_ORDER_WAIT

    def _webhook(self, message: Notification, key: str, job: Job, execution: Execution) -> dict[str, Any]:
        from ..domain.contract import Urls, webhook_body

        settings = self._settings
        hook = message.hook or Hook(url="")
        attempt = message.attempt
        event = message.event
        shape = webhook_body(Urls(message.base_url), event, job, execution, settings.secret_env_patterns)
        body = json.dumps(shape, separators=(",", ":")).encode("utf-8")
        headers = request_headers(dict(hook.headers), event=event, delivery=key, body=body,
                                           secret=settings.webhook_signing_secret,
                                           user_agent=f"fastlane-webhooks/{settings.version}")
        result = self._post(hook.url, body, headers, timeout=settings.webhook_timeout,
                      allow_private=settings.webhook_allow_private)
        retry_in = None
        if not result.ok and not result.permanent and attempt <= hook.retries:
            retry_in = retry_delay(attempt, settings.webhook_backoff_min)
        metrics.add_metric(name="WebhookAttempts", unit=MetricUnit.Count, value=1)
        if not result.ok:
            metrics.add_metric(name="WebhookFailures", unit=MetricUnit.Count, value=1)
        # The URL's path or query is often the hook's credential: only its redacted form is
        # recorded or logged; the message on the queue and the job keep it whole, to deliver to.
        url = redact_url(hook.url)
        error = redact_urls(result.error) if result.error else result.error
        log = logger.info if result.ok else logger.warning
        log("webhook attempted", extra={"delivery": key, "url": url, "status_code": result.status_code,
                                        "error": error, "retry_in": retry_in})
        return {"at": round(self._clock(), 3), "kind": WEBHOOK, "event": event, "attempt": attempt,
                "url": url, "statusCode": result.status_code, "ok": result.ok, "error": error,
                "retryIn": retry_in, "delivery": key}

    def _email(self, message: Notification, key: str, job: Job, execution: Execution) -> dict[str, Any]:
        event = message.event
        to = list(message.to)
        entry: dict[str, Any] = {"at": round(self._clock(), 3), "kind": EMAIL, "event": event, "attempt": 1,
                                 "to": to, "ok": False, "error": None, "delivery": key}
        if self._mailer is None:
            logger.warning(MAIL_OFF + " A notification e-mail was skipped.", extra={"delivery": key, "to": to})
            metrics.add_metric(name="EmailsSkipped", unit=MetricUnit.Count, value=1)
            return {**entry, "skipped": True, "error": MAIL_OFF}
        subject, text, html = mail_content(event, job, execution, message.base_url)
        try:
            entry["messageId"] = self._mailer.send(to, subject, text, html)  # DependencyDown: the queue retries
            entry["ok"] = True
            metrics.add_metric(name="EmailsSent", unit=MetricUnit.Count, value=1)
            logger.info("notification e-mail sent", extra={"delivery": key, "to": to})
        except MailRejected as rejected:
            entry["error"] = str(rejected)
            logger.warning("notification e-mail refused by SES", extra={"delivery": key, "error": str(rejected)})
        return entry
