"""The bodies of the routes on executions across tasks: GET /executions (by status and time) and
POST /executions/retry (the jobs of many executions, each retried once)."""
from __future__ import annotations

from chalice.app import Request, Response

from .. import wiring
from ..config import get_settings
from ..domain import contract as shapes
from ..domain.listing import retry_request, since_of, statuses_of, task_prefix_of
from ..domain.model import ExecutionStatus
from ..services import across_tasks
from . import idempotency
from .http import base_url, json_body, json_response, operation, page_number, query


def _urls(request: Request) -> shapes.Urls:
    return shapes.Urls(base_url(request, get_settings()))


@operation("list_executions")
def list_executions(request: Request) -> Response:
    page = page_number(request)
    statuses = statuses_of(query(request, "status"))
    since = since_of(query(request, "since"))
    task_prefix = task_prefix_of(query(request, "task"), "task")
    listed = across_tasks.list_executions(wiring.backend().executions, statuses, since, task_prefix, page,
                                          get_settings().per_page)
    # The next and previous pages carry the same filters, as this request's checks read them.
    filters = {"status": ",".join(s.value for s in ExecutionStatus if s in statuses)
               if statuses != frozenset(ExecutionStatus) else None,
               "since": query(request, "since") if since is not None else None, "task": task_prefix}
    given = {name: value for name, value in filters.items() if value is not None}
    return json_response(shapes.execution_list(_urls(request), listed, given))


def _retry(request: Request) -> Response:
    execution_ids, task_prefix = retry_request(json_body(request, get_settings()))
    outcomes = across_tasks.retry_executions(wiring.get_job_service(), wiring.backend().executions, execution_ids,
                                             task_prefix)
    return json_response(shapes.executions_retried(_urls(request), outcomes))


@operation("retry_executions")
def retry_executions(request: Request) -> Response:
    return idempotency.once(request, lambda: _retry(request))
