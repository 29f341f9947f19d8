"""Executions across tasks: listing them by status and time, and retrying the jobs of many at
once, each as the single retry route would."""
from __future__ import annotations

from dataclasses import replace

from ..domain.errors import FastlaneError, ValidationError
from ..domain.listing import RetryOutcome, check_depth
from ..domain.model import Execution, ExecutionStatus, Page
from ..observability import logger
from ..ports import Executions
from .jobs import JobService, check_page


def list_executions(executions: Executions, statuses: frozenset[ExecutionStatus], since: float | None,
                    task_prefix: str | None, page: int, per_page: int) -> Page:
    """Newest first by the time each entered its status; a page past the listing's depth is a 400,
    one past the end (but the first) a 404."""
    check_depth(page, per_page, "newest executions", "narrow it with since, status or task")
    listed = executions.list_all_executions(statuses, since, task_prefix, page, per_page)
    check_page(listed)
    return listed


def retry_executions(service: JobService, executions: Executions, execution_ids: list[str],
                     task_prefix: str | None) -> list[RetryOutcome]:
    """Retry the job of each execution once, in the order of the ids, answering each id as the
    single retry route answers its job: ids of one job share its one retry, an unknown id is a
    404. With `task_prefix`, an id of an execution of another task refuses the whole request
    (ValidationError naming it) before anything is retried."""
    found = executions.find_executions(execution_ids)
    if task_prefix is not None:
        for index, execution_id in enumerate(execution_ids):
            execution = found.get(execution_id)
            if execution is not None and not execution.task_id.startswith(task_prefix):
                raise ValidationError(f"executions[{index}] is an execution of task '{execution.task_id}', whose id "
                                      f"does not start with '{task_prefix}'; nothing was retried.",
                                      field=f"executions[{index}]")
    by_job: dict[str, RetryOutcome] = {}
    outcomes = []
    for execution_id in execution_ids:
        execution = found.get(execution_id)
        if execution is None:
            outcomes.append(RetryOutcome(execution_id, 404, error=f"Execution '{execution_id}' was not found.",
                                         field="executionId"))
            continue
        if execution.job_id not in by_job:
            by_job[execution.job_id] = _retry(service, execution)
        outcomes.append(replace(by_job[execution.job_id], execution_id=execution_id))
    return outcomes


def _retry(service: JobService, execution: Execution) -> RetryOutcome:
    asked = RetryOutcome(execution.execution_id, 200, task_id=execution.task_id, job_id=execution.job_id)
    try:
        job = service.job(execution.task_id, execution.job_id)
        added, message_id = service.retry_job(job)
    except FastlaneError as error:
        if error.status >= 500:
            logger.warning("bulk retry: a job's retry failed", extra={"task_id": execution.task_id,
                                                                      "job_id": execution.job_id,
                                                                      "detail": error.message})
        return replace(asked, status=error.status, error=error.message, field=error.field)
    return replace(asked, job=job, execution=added, queue_job_id=message_id)
