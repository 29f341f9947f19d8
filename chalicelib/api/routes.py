"""The bodies of the HTTP routes: parse, call one service, shape the answer."""
from __future__ import annotations

from typing import Any, Callable

from chalice.app import Request, Response

from .. import wiring
from ..config import get_settings
from ..observability import logger, metrics
from . import shapes
from .http import base_url, client_ip, json_body, json_response, operation, query


def _urls(request: Request) -> shapes.Urls:
    return shapes.Urls(base_url(request, get_settings()))


def _page(request: Request) -> int:
    from ..services.jobs import parse_page

    return parse_page(query(request, "page"))


def middleware(request: Request, get_response: Callable[[Request], Response]) -> Response:
    """Around every route: correlation ids in the logs, optional Basic auth, metrics flush."""
    context = request.context or {}
    logger.append_keys(request_id=context.get("requestId"), path=context.get("path"), method=request.method)
    try:
        auth = wiring.get_basic_auth()
        if auth.enabled and not auth.allows(request.headers.get("authorization")):
            return auth.challenge()
        return get_response(request)
    finally:
        if metrics.metric_set:
            metrics.flush_metrics()
        logger.remove_keys(["request_id", "path", "method", "task_id", "job_id", "execution_id"])


@operation("get_tasks")
def get_tasks(request: Request) -> Response:
    page = wiring.get_job_service().list_tasks(_page(request))
    return json_response(shapes.task_list(_urls(request), page))


def _enqueue(request: Request, task_id: str, job_id: str | None) -> Response:
    body = json_body(request, get_settings())
    result = wiring.get_job_service().enqueue(task_id, body, client_ip(request), job_id=job_id)
    return json_response(shapes.enqueued(_urls(request), result.job, result.execution, result.queue_job_id))


@operation("enqueue_job")
def enqueue_job(request: Request, task_id: str) -> Response:
    return _enqueue(request, task_id, None)


@operation("update_job")
def update_job(request: Request, task_id: str, job_id: str) -> Response:
    return _enqueue(request, task_id, job_id)


@operation("get_task")
def get_task(request: Request, task_id: str) -> Response:
    task, jobs = wiring.get_job_service().task(task_id, _page(request))
    return json_response(shapes.task_details(_urls(request), task, jobs))


@operation("get_job")
def get_job(request: Request, task_id: str, job_id: str) -> Response:
    job, executions = wiring.get_job_service().job_with_executions(task_id, job_id, _page(request))
    return json_response(shapes.job_details(_urls(request), job, executions, get_settings().secret_env_patterns))


@operation("get_execution")
def get_execution(request: Request, task_id: str, job_id: str, execution_id: str) -> Response:
    job, execution = wiring.get_job_service().execution(task_id, job_id, execution_id)
    return json_response(shapes.execution_details(_urls(request), job, execution))


def _check(name: str, probe: Callable[[], Any], checks: dict[str, str], errors: list[dict[str, str]]) -> None:
    try:
        probe()
        checks[name] = "ok"
    except Exception as error:  # noqa: BLE001 - any failure of a dependency is reported, not raised
        checks[name] = "failed"
        errors.append({"source": name, "message": str(error) or type(error).__name__})


@operation("healthcheck")
def healthcheck(request: Request) -> Response:
    checks: dict[str, str] = {}
    errors: list[dict[str, str]] = []
    _check("dynamodb", lambda: wiring.get_store().ping(), checks, errors)
    _check("sqs", lambda: wiring.get_job_queue().ping(), checks, errors)
    if errors:
        logger.warning("healthcheck failed", extra={"errors": errors})
    return json_response(shapes.health(checks, errors), 503 if errors else 200)
