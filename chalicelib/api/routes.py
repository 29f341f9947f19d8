"""The bodies of the HTTP routes: check the ids and the input, call one service, shape the answer."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chalice.app import Request, Response

from .. import wiring
from ..config import get_settings
from ..domain import contract as shapes
from ..domain.errors import DependencyDown, FastlaneError, NotFound, ValidationError
from ..domain.listing import task_prefix_of
from ..domain.model import Execution
from ..domain.payload import validate_uuid
from ..observability import logger, metrics
from . import auth, cross_site, idempotency
from .http import (
    base_url,
    client_ip,
    execution_id_of,
    job_id_of,
    json_body,
    json_response,
    operation,
    page_number,
    page_token,
    query,
    task_id_of,
)
from .output_tail import output_tail


def _urls(request: Request) -> shapes.Urls:
    return shapes.Urls(base_url(request, get_settings()))


def middleware(request: Request, get_response: Callable[[Request], Response]) -> Response:
    """Around every route: correlation ids in the logs, the cross-site rule, optional Basic auth, metrics flush."""
    context = request.context or {}
    logger.append_keys(request_id=context.get("requestId"), path=context.get("path"), method=request.method)
    try:
        # A browser's action from another site is refused whatever credentials it carries.
        refused = cross_site.guard(request) or auth.guard(wiring.get_basic_auth(), request.headers.get("authorization"))
        if refused is not None:
            return refused
        return get_response(request)
    finally:
        if metrics.metric_set:
            metrics.flush_metrics()
        logger.remove_keys(["request_id", "path", "method", "task_id", "job_id", "execution_id"])


@operation("get_tasks")
def get_tasks(request: Request) -> Response:
    number = page_number(request)
    prefix = task_prefix_of(query(request, "prefix"), "prefix")
    page = wiring.get_job_service().list_tasks(number, prefix)
    return json_response(shapes.task_list(_urls(request), page, prefix))


def _enqueue(request: Request, task_id: str, job_id: str | None) -> Response:
    settings = get_settings()
    task_id = task_id_of(task_id)
    if job_id is not None:
        job_id = validate_uuid(job_id, "jobId")
    service = wiring.get_job_service()
    spec = service.validate(task_id, json_body(request, settings))
    result = service.enqueue(task_id, spec, client_ip(request), job_id=job_id)
    return json_response(shapes.enqueued(_urls(request), result.job, result.execution, result.queue_job_id))


@operation("enqueue_job")
def enqueue_job(request: Request, task_id: str) -> Response:
    return idempotency.once(request, lambda: _enqueue(request, task_id, None))


@operation("update_job")
def update_job(request: Request, task_id: str, job_id: str) -> Response:
    return idempotency.once(request, lambda: _enqueue(request, task_id, job_id))


@operation("get_task")
def get_task(request: Request, task_id: str) -> Response:
    task, jobs = wiring.get_job_service().task(task_id_of(task_id), page_number(request))
    return json_response(shapes.task_details(_urls(request), task, jobs))


@operation("get_job")
def get_job(request: Request, task_id: str, job_id: str) -> Response:
    job, executions = wiring.get_job_service().job_with_executions(task_id_of(task_id), job_id_of(job_id),
                                                                   page_number(request))
    return json_response(shapes.job_details(_urls(request), job, executions, get_settings().secret_env_patterns))


def _execution(task_id: str, job_id: str, execution_id: str) -> tuple[Any, Execution]:
    result: tuple[Any, Execution] = wiring.get_job_service().execution(
        task_id_of(task_id), job_id_of(job_id), execution_id_of(execution_id))
    return result


@operation("get_execution")
def get_execution(request: Request, task_id: str, job_id: str, execution_id: str) -> Response:
    job, execution = _execution(task_id, job_id, execution_id)
    try:
        output, unread = output_tail(wiring.get_output_reader(), execution), None
    except DependencyDown as error:
        # The status is what pollers come for: the store answered it, so it is answered, with
        # the output left out and why, rather than a 503 for the whole execution.
        logger.warning("execution details without output", extra={"reason": error.detail or error.message})
        output, unread = None, f"The output could not be read: {error.message}"
    return json_response(shapes.execution_details(_urls(request), job, execution, output, unread))


def _check(name: str, probe: Callable[[], Any], checks: dict[str, str], errors: list[dict[str, str]]) -> None:
    try:
        probe()
        checks[name] = "ok"
    except Exception as error:  # noqa: BLE001 - any failure of a dependency is reported, not raised
        checks[name] = "failed"
        # As in a 503: the service's own words (account, role, table names) go to the log only.
        public = error.message if isinstance(error, FastlaneError) else f"{name} check failed ({type(error).__name__})"
        logger.warning("healthcheck: a dependency failed", extra={"source": name, "detail": str(error)})
        errors.append({"source": name, "message": public})


@operation("healthcheck")
def healthcheck(request: Request) -> Response:
    checks: dict[str, str] = {}
    errors: list[dict[str, str]] = []
    backend = wiring.backend()
    _check("dynamodb", backend.jobs.ping, checks, errors)
    _check("sqs", backend.job_queue.ping, checks, errors)
    if errors:
        logger.warning("healthcheck failed", extra={"errors": errors})
    return json_response(shapes.health(checks, errors), 503 if errors else 200)


# the execution engine's routes -----------------------------------------------------------------


@operation("stop_job")
def stop_job(request: Request, task_id: str, job_id: str) -> Response:
    job = wiring.get_job_service().job(task_id_of(task_id), job_id_of(job_id))
    stopped = wiring.get_job_service().stop_job(job)
    logger.info("job stopped", extra={"job_id": job.job_id, "stopped_executions": stopped})
    return json_response(shapes.job_stopped(_urls(request), job))


@operation("stop_execution")
def stop_execution(request: Request, task_id: str, job_id: str, execution_id: str) -> Response:
    execution = wiring.get_job_service().stop_execution(task_id_of(task_id), job_id_of(job_id),
                                                        execution_id_of(execution_id))
    return json_response(shapes.execution_stopped(_urls(request), execution))


@operation("pause_job")
def pause_job(request: Request, task_id: str, job_id: str) -> Response:
    service = wiring.get_job_service()
    job = service.pause_job(service.job(task_id_of(task_id), job_id_of(job_id)))
    return json_response(shapes.schedule_changed(_urls(request), job))


@operation("resume_job")
def resume_job(request: Request, task_id: str, job_id: str) -> Response:
    service = wiring.get_job_service()
    job = service.resume_job(service.job(task_id_of(task_id), job_id_of(job_id)))
    return json_response(shapes.schedule_changed(_urls(request), job))


def _retry(request: Request, task_id: str, job_id: str) -> Response:
    job = wiring.get_job_service().job(task_id_of(task_id), job_id_of(job_id))
    execution, message_id = wiring.get_job_service().retry_job(job)
    return json_response(shapes.enqueued(_urls(request), job, execution, message_id))


@operation("retry_job")
def retry_job(request: Request, task_id: str, job_id: str) -> Response:
    return idempotency.once(request, lambda: _retry(request, task_id, job_id), reads_body=False)


def _output(request: Request, execution: Execution, which: str) -> Response:
    from urllib.parse import quote

    page = wiring.get_output_reader().read(execution, which, page_token(request))
    headers: dict[str, str | list[str]] = {"Content-Type": "text/plain; charset=utf-8",
               "Fastlane-Exit-Code": "" if execution.exit_code is None else str(execution.exit_code),
               "Fastlane-Execution-Id": execution.execution_id,
               "Fastlane-Execution-Status": execution.status.value}
    if page.next_token:
        # The next page names the execution, so a newer execution cannot change what it continues.
        url = f"{_urls(request).execution(execution.task_id, execution.job_id, execution.execution_id)}/{which}"
        headers["Link"] = f'<{url}?token={quote(page.next_token)}>; rel="next"'
        headers["Fastlane-Next-Token"] = page.next_token
    return Response(body=page.text, status_code=200, headers=headers)


def _latest(task_id: str, job_id: str) -> Execution:
    job, executions = wiring.get_job_service().job_with_executions(task_id_of(task_id), job_id_of(job_id), 1)
    if not executions.items:
        raise NotFound(f"Job '{job.job_id}' has not run yet; it has no output.", field="jobId")
    latest: Execution = executions.items[0]
    return latest


def job_output(which: str) -> Callable[..., Response]:
    @operation(f"get_job_{which}")
    def view(request: Request, task_id: str, job_id: str) -> Response:
        return _output(request, _latest(task_id, job_id), which)

    return view


def execution_output(which: str) -> Callable[..., Response]:
    @operation(f"get_execution_{which}")
    def view(request: Request, task_id: str, job_id: str, execution_id: str) -> Response:
        _, execution = _execution(task_id, job_id, execution_id)
        return _output(request, execution, which)

    return view


def _presented_token(request: Request) -> str | None:
    """The `token` a renewal's body presents, if any (no body: a new token is asked for)."""
    if not (request.raw_body or b"").strip():
        return None
    presented = json_body(request, get_settings()).get("token")
    if presented is not None and not isinstance(presented, str):
        raise ValidationError("token must be the string a stream page was given.", field="token")
    return presented


@operation("renew_stream_token")
def renew_stream_token(request: Request, task_id: str, job_id: str, execution_id: str | None = None) -> Response:
    """A live-log token for a stream page. With {"token": ...} it renews that token, keeping its
    page's issue time and lifetime limit (403 once reached); without, a new one, as serving the
    page again would (the caller passed the REST API's auth, which a leaked token does not)."""
    if execution_id is None:
        job = wiring.get_job_service().job(task_id_of(task_id), job_id_of(job_id))
        execution = None
    else:
        job, found = _execution(task_id, job_id, execution_id)
        execution = found.execution_id
    basic = wiring.get_basic_auth()
    token: str | None = None
    expires: int | None = None
    if basic.tokens_required:
        presented = _presented_token(request)
        key = basic.signing_key()
        token, expires = auth.issue_token(key, job.task_id, job.job_id, execution) if presented is None else \
            auth.renew_token(key, presented, target=(job.task_id, job.job_id, execution))
    return json_response(shapes.stream_token(job.task_id, job.job_id, execution, token, expires),
                         headers={"Cache-Control": "no-store"})


@operation("get_openapi")
def openapi(request: Request) -> Response:
    from .openapi import document

    return json_response(document(base_url(request, get_settings())))


@operation("status")
def status(request: Request) -> Response:
    settings = get_settings()
    queues: dict[str, Any] = dict(wiring.backend().queue_depths.depths())
    from ..services.notify import notification_status

    backend = wiring.backend()
    farm = {**wiring.get_engine().status(), "scheduledJobs": wiring.get_scheduling().upcoming(),
            "backend": backend.name, "isolation": backend.isolation}
    return json_response(shapes.farm_status(_urls(request), farm, queues, settings.version,
                                            notifications=notification_status(settings)))
