"""Every JSON shape of the API and of webhook bodies, in one place: nothing else knows the key
names. It sits in the domain so that the HTTP layer and the notifications both build on it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from . import timeline as timelines
from .lifecycle import LAUNCHABLE
from .listing import MAX_LISTED, ListedExecution, RetryOutcome
from .model import Execution, Job, Page, Task, now
from .payload import DEFAULT_CATCHUP_WINDOW
from .redaction import redact_envs, redact_headers, redact_url, redact_urls
from .schedule import jitter_offset, next_runs


class Urls:
    """Absolute URLs without trailing slashes, from one base."""

    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")

    def tasks(self, page: int | None = None, prefix: str | None = None) -> str:
        return f"{self.base}/tasks" + _query(prefix=prefix, page=page)

    def executions(self, filters: dict[str, str], page: int | None = None) -> str:
        """The listing of executions across tasks, with its filters (query parameter -> value)."""
        return f"{self.base}/executions" + _query(**filters, page=page)

    def task(self, task_id: str, page: int | None = None) -> str:
        return f"{self.base}/tasks/{task_id}" + (f"?page={page}" if page is not None else "")

    def job(self, task_id: str, job_id: str, page: int | None = None) -> str:
        return f"{self.task(task_id)}/jobs/{job_id}" + (f"?page={page}" if page is not None else "")

    def execution(self, task_id: str, job_id: str, execution_id: str) -> str:
        return f"{self.job(task_id, job_id)}/executions/{execution_id}"


def _query(**values: Any) -> str:
    given = {name: value for name, value in values.items() if value is not None}
    return "?" + urlencode(given, safe=",:") if given else ""


def pagination(page: Page, url_for_page: Any) -> dict[str, Any]:
    return {
        "total": page.total,
        "page": page.page,
        "pages": page.pages,
        "perPage": page.per_page,
        "hasNext": page.has_next,
        "hasPrev": page.has_prev,
        "nextUrl": url_for_page(page.page + 1) if page.has_next else None,
        "prevUrl": url_for_page(page.page - 1) if page.has_prev else None,
    }


def error(message: str, operation: str, **extra: Any) -> dict[str, Any]:
    body = {"error": message, "operation": operation}
    body.update({k: v for k, v in extra.items() if v is not None})
    return body


def enqueued(urls: Urls, job: Job, execution: Execution | None, queue_job_id: str | None) -> dict[str, Any]:
    return {
        "taskId": job.task_id,
        "jobId": job.job_id,
        "executionId": execution.execution_id if execution else None,
        "executionUrl": urls.execution(job.task_id, job.job_id, execution.execution_id) if execution else None,
        "queueJobId": queue_job_id,
        "jobUrl": urls.job(job.task_id, job.job_id),
        "taskUrl": urls.task(job.task_id),
    }


def task_list(urls: Urls, page: Page, prefix: str | None = None) -> dict[str, Any]:
    """The task list; with a `prefix`, the tasks whose id starts with it, and whether `total`
    stopped counting at the listing's depth."""
    items = [
        {
            "taskId": task.task_id,
            "createdAt": task.created_at,
            "lastModifiedAt": task.last_modified_at,
            "jobsCount": task.jobs_count,
            "url": urls.task(task.task_id),
        }
        for task in page.items
    ]
    if prefix is None:
        return {"items": items, **pagination(page, urls.tasks)}
    return {"items": items, **pagination(page, lambda n: urls.tasks(n, prefix)), "totalCapped": page.total >= MAX_LISTED}


def task_details(urls: Urls, task: Task, jobs: Page) -> dict[str, Any]:
    return {
        "taskId": task.task_id,
        "createdAt": task.created_at,
        "lastModifiedAt": task.last_modified_at,
        "jobs": [
            {"id": job.job_id, "createdAt": job.created_at, "url": urls.job(job.task_id, job.job_id)}
            for job in jobs.items
        ],
        **pagination(jobs, lambda n: urls.task(task.task_id, n)),
    }


def job_metadata(job: Job, secret_patterns: tuple[str, ...]) -> dict[str, Any]:
    spec = job.spec
    metadata: dict[str, Any] = {
        "retries": spec.retries,
        "retry_count": job.retry_count,
        **({"retry": spec.retry.to_dict()} if spec.retry is not None else {}),
        "notify": spec.notify,
        "webhooks": {k: [{**h.to_dict(), "url": redact_url(h.url), "headers": redact_headers(h.headers)} for h in v]
                     for k, v in spec.webhooks.items()},
        "expiration": spec.expiration,
        "timeout": spec.timeout,
        "envs": redact_envs(spec.envs, secret_patterns),
        "custom": spec.metadata,
    }
    if spec.cron:
        metadata["cron"] = spec.cron
        metadata["timezone"] = spec.timezone or "UTC"
    if spec.start_at is not None:
        metadata["startAt"] = spec.start_at
    if spec.start_in is not None:
        metadata["startIn"] = spec.start_in
    return metadata


def next_runs_of(job: Job, at: float, count: int = 5) -> list[float]:
    """The job's next `count` fire times after `at` (epoch seconds, each cron tick plus its jitter
    offset) in its time zone's rules; none while it is paused or has nothing pending."""
    spec = job.spec
    if job.paused or job.schedule_version is None or job.next_run_at is None:
        return []
    if not spec.cron:
        return [job.next_run_at]
    ticks = next_runs(spec.cron, max(at, job.next_run_at - 0.001), spec.timezone, count)
    return [round(tick + jitter_offset(job.job_id, job.schedule_version, tick, spec.jitter), 3) for tick in ticks]


def schedule(job: Job, at: float | None = None) -> dict[str, Any] | None:
    """When and how a scheduled job runs; None for a job that runs once, now."""
    spec = job.spec
    if not spec.scheduled:
        return None
    shape: dict[str, Any] = {"type": "cron" if spec.cron else "once", "pending": job.schedule_version is not None,
                             "nextRunAt": job.next_run_at if job.schedule_version and not job.paused else None}
    if spec.cron:
        shape.update(cron=spec.cron, timezone=spec.timezone or "UTC", overlap=spec.overlap, jitter=spec.jitter)
    elif spec.start_at is not None:
        shape["startAt"] = spec.start_at
    else:
        shape["startIn"] = spec.start_in
    shape.update(
        catchupWindow=DEFAULT_CATCHUP_WINDOW if spec.catchup_window is None else spec.catchup_window,
        paused=job.paused, pausedAt=job.paused_at, skippedTicks=job.skipped_ticks, lastSkippedAt=job.last_skipped_at,
        lastSkipReason=job.last_skip_reason, nextRuns=next_runs_of(job, now() if at is None else at))
    if spec.overlap == "buffer":
        shape["waitingTick"] = job.buffered_tick
    return shape


def notification_attempt(entry: dict[str, Any]) -> dict[str, Any]:
    """One recorded notification attempt as shown: its webhook URL, and any URL its error quotes,
    redacted (entries recorded before URLs were redacted when written hold them whole)."""
    shown = dict(entry)
    if isinstance(shown.get("url"), str):
        shown["url"] = redact_url(shown["url"])
    if isinstance(shown.get("error"), str):
        shown["error"] = redact_urls(shown["error"])
    return shown


@dataclass(frozen=True)
class OutputTail:
    """The end of an execution's stdout and stderr, as execution details show them."""

    stdout: str
    stderr: str
    stdout_truncated: bool
    stderr_truncated: bool
    limit_bytes: int


def _error_text(item: Execution, output: OutputTail | None) -> str | None:
    """stderr, then the platform's reason on a line of its own; only the reason without output."""
    if output is None:
        return item.error
    parts = [output.stderr] if output.stderr else []
    if item.error:
        if parts and not parts[0].endswith("\n"):
            parts.append("\n")
        parts.append(item.error)
    return "".join(parts)


def execution(urls: Urls, item: Execution, output: OutputTail | None = None,
              output_error: str | None = None) -> dict[str, Any]:
    """An execution. With `output` (execution details) `log` is its stdout and `error` its stderr
    then the platform's reason, both bounded; without (job details, webhooks) `log` is null and
    `error` only the reason. The reason is always in `reason` too. `output_error`: why execution
    details hold no output this time (the log store could not be read)."""
    url = urls.execution(item.task_id, item.job_id, item.execution_id)
    shape = {
        "executionId": item.execution_id,
        "createdAt": item.created_at,
        "startedAt": item.started_at,
        "finishedAt": item.finished_at,
        "image": item.image,
        "command": item.command,
        "status": item.status.value,
        "exitCode": item.exit_code,
        "requestIPAddress": item.request_ip,
        "metadata": item.metadata,
        "log": output.stdout if output is not None else None,
        "error": _error_text(item, output),
        "reason": item.error,
        "logTruncated": bool(output and output.stdout_truncated),
        "errorTruncated": bool(output and output.stderr_truncated),
        "outputLimitBytes": output.limit_bytes if output is not None else None,
        "outputError": output_error,
        "stdoutUrl": f"{url}/stdout",
        "stderrUrl": f"{url}/stderr",
        "notifications": [notification_attempt(entry) for entry in item.notifications],
        "waitingFor": item.waiting_for if item.status in LAUNCHABLE else None,  # what a launched one waited for is past
        "concurrency": item.concurrency.to_dict() if item.concurrency is not None else None,
        "url": url,
    }
    return shape


def job_details(urls: Urls, job: Job, executions: Page, secret_patterns: tuple[str, ...]) -> dict[str, Any]:
    return {
        "task": {"id": job.task_id, "url": urls.task(job.task_id)},
        "job": {
            "jobId": job.job_id,
            "url": urls.job(job.task_id, job.job_id),
            "createdAt": job.created_at,
            "lastModifiedAt": job.last_modified_at,
            "image": job.spec.image,
            "command": job.spec.command,
            "taskId": job.task_id,
            "scheduled": job.spec.scheduled,
            "schedule": schedule(job),
            "executionCount": job.execution_count,
            "requestIPAddress": job.request_ip,
            "metadata": job_metadata(job, secret_patterns),
            "executions": [execution(urls, item) for item in executions.items],
        },
        **pagination(executions, lambda n: urls.job(job.task_id, job.job_id, n)),
    }


def execution_details(urls: Urls, job: Job, item: Execution, output: OutputTail | None = None,
                      output_error: str | None = None) -> dict[str, Any]:
    return {
        "task": {"id": job.task_id, "url": urls.task(job.task_id)},
        "job": {"id": job.job_id, "url": urls.job(job.task_id, job.job_id)},
        "execution": {**execution(urls, item, output, output_error),
                      "timeline": timelines.shown(item.timeline, item.task_arn, item.metadata)},
    }


def webhook_body(urls: Urls, event: str, job: Job, item: Execution, secret_patterns: tuple[str, ...]) -> dict[str, Any]:
    """What a webhook POSTs: the execution details, the event that caused it, and the job with its
    client `metadata` (as `metadata.custom`) and its envs redacted. Never the job's hooks or
    e-mail recipients, nor the results of other notifications: a receiver sees only its own."""
    body = execution_details(urls, job, item)
    body["execution"].pop("notifications", None)
    metadata = job_metadata(job, secret_patterns)
    metadata.pop("webhooks", None)
    metadata.pop("notify", None)
    body["job"].update(image=job.spec.image, command=job.spec.command, metadata=metadata)
    return {"event": event, **body}


def stream_token(task_id: str, job_id: str, execution_id: str | None, token: str | None,
                 expires_at: int | None) -> dict[str, Any]:
    """A stream page's live-log token (null when live logs need none)."""
    return {"taskId": task_id, "jobId": job_id, "executionId": execution_id, "token": token, "expiresAt": expires_at}


def notifications_status(webhooks: bool, mail: bool, warnings: list[str]) -> dict[str, Any]:
    return {"webhooks": "on" if webhooks else "off", "mail": "on" if mail else "off", "warnings": warnings}


def health(checks: dict[str, str], errors: list[dict[str, str]]) -> dict[str, Any]:
    return {"healthy": not errors, "checks": checks, "errors": errors}


def job_stopped(urls: Urls, job: Job) -> dict[str, Any]:
    return {"taskId": job.task_id, "jobId": job.job_id, "jobUrl": urls.job(job.task_id, job.job_id),
            "taskUrl": urls.task(job.task_id)}


def schedule_changed(urls: Urls, job: Job) -> dict[str, Any]:
    """The answer to a pause or a resume: the job and its schedule as it is now."""
    return {"taskId": job.task_id, "jobId": job.job_id, "jobUrl": urls.job(job.task_id, job.job_id),
            "schedule": schedule(job)}


def execution_stopped(urls: Urls, item: Execution) -> dict[str, Any]:
    return {
        "task": {"id": item.task_id, "url": urls.task(item.task_id)},
        "job": {"id": item.job_id, "url": urls.job(item.task_id, item.job_id)},
        "execution": {"id": item.execution_id, "url": urls.execution(item.task_id, item.job_id, item.execution_id)},
    }


def farm_status(urls: Urls, status: dict[str, Any], queues: dict[str, Any], version: str,
                notifications: dict[str, Any] | None = None) -> dict[str, Any]:
    upcoming = [{"taskId": job.task_id, "jobId": job.job_id, "url": urls.job(job.task_id, job.job_id),
                 **(schedule(job) or {})} for job in status.get("scheduledJobs", [])]
    return {
        "version": version,
        "tasks": status["tasks"],
        "jobs": status["jobs"],
        "executions": status["executions"],
        "scheduled": {"count": status["scheduled"], "jobs": upcoming},
        "queues": queues,
        "pools": status["pools"],
        "concurrency": status["concurrency"],
        "backend": status["backend"],
        "isolation": status["isolation"],
        **({"notifications": notifications} if notifications is not None else {}),
    }


def execution_list(urls: Urls, page: Page, filters: dict[str, str]) -> dict[str, Any]:
    """Executions across tasks: each as job details show it, with its task, job and the time it
    entered its status; `totalCapped` when `total` stopped counting at the listing's depth."""
    items = []
    for listed in page.items:
        assert isinstance(listed, ListedExecution)
        item = listed.execution
        items.append({**execution(urls, item), "taskId": item.task_id, "jobId": item.job_id,
                      "statusAt": listed.status_at, "jobUrl": urls.job(item.task_id, item.job_id),
                      "taskUrl": urls.task(item.task_id)})
    return {"items": items, **pagination(page, lambda n: urls.executions(filters, n)),
            "totalCapped": page.total >= MAX_LISTED}


def executions_retried(urls: Urls, outcomes: list[RetryOutcome]) -> dict[str, Any]:
    """A bulk retry's answer, one result per id asked, in order: the status the single retry
    route answers for its job, and that route's answer (`retry`) or its error (`error`)."""
    results = []
    for outcome in outcomes:
        result: dict[str, Any] = {"executionId": outcome.execution_id, "status": outcome.status,
                                  "taskId": outcome.task_id, "jobId": outcome.job_id}
        if outcome.job is not None and outcome.execution is not None:
            result["retry"] = enqueued(urls, outcome.job, outcome.execution, outcome.queue_job_id)
        else:
            result.update(error(outcome.error or "not retried", "retry_job", field=outcome.field))
        results.append(result)
    return {"results": results}
