"""Listings across tasks on DynamoDB, each a Query of the index partitions laid out for it, never
a Scan: executions by status and time (`by_status`, every shard of each status, merged),
executions by id alone (`by_id`), listed tasks by id prefix (the tasks' `by_id`).
docs/storage.md#executions-across-tasks."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ...domain.listing import MAX_LISTED, ListedExecution
from ...domain.model import Execution, ExecutionStatus, Page
from .mapping import execution_from_item, status_shards, task_from_item
from .tables import TASK_LIST_BUCKET, Tables


def _count(model: Any, index: str, key: str, condition: Any, matches: Any, start: Any, most: int, *,
           forward: bool) -> int:
    """Entries of one index partition after `start` (a read's last key, in its direction),
    counted with Select=COUNT queries until `most` are (a filter applies after a query's Limit,
    so a filtered count goes page by page)."""
    connection = model._get_connection()
    counted = 0
    while counted < most:
        answer = connection.query(key, range_key_condition=condition, filter_condition=matches, index_name=index,
                                  select="COUNT", exclusive_start_key=start, scan_index_forward=forward,
                                  limit=None if matches is not None else most - counted)
        counted += int(answer.get("Count", 0))
        start = answer.get("LastEvaluatedKey")
        if not start:
            break
    return counted


def list_all_executions(t: Tables, statuses: frozenset[ExecutionStatus], since: float | None,
                        task_prefix: str | None, page: int, per_page: int) -> Page:
    """Each partition (status and shard) is read newest first up to the page's end, the entries
    merged and cut to the page, then the page's executions read whole (the index holds keys
    and the task id only). Counting goes on from where each partition's read stopped."""
    ExecM = t.Execution
    reach = page * per_page
    condition = ExecM.status_at >= since if since is not None else None
    matches = ExecM.task_id.startswith(task_prefix) if task_prefix is not None else None
    entries: list[tuple[float, str, str]] = []
    total = 0
    unfinished = []
    for status in sorted(statuses):
        for shard in status_shards(status):
            query = ExecM.by_status.query(shard, condition, filter_condition=matches, scan_index_forward=False,
                                          limit=reach)
            found = [(float(item.status_at), item.execution_id, item.job_id) for item in query]
            entries.extend(found)
            total += len(found)
            if query.last_evaluated_key:
                unfinished.append((shard, query.last_evaluated_key))
    for shard, start in unfinished:
        if total >= MAX_LISTED:
            break
        total += _count(ExecM, "by_status", shard, condition, matches, start, MAX_LISTED - total, forward=False)
    chosen = sorted(entries, reverse=True)[(page - 1) * per_page:reach]
    read = {item.execution_id: item for item in ExecM.batch_get([(job_id, execution_id)
                                                                  for _, execution_id, job_id in chosen])}
    items = [ListedExecution(execution_from_item(read[execution_id]), at)
             for at, execution_id, _ in chosen if execution_id in read]
    return Page(items=items, page=page, per_page=per_page, total=min(total, MAX_LISTED))


def find_executions(t: Tables, execution_ids: Sequence[str]) -> dict[str, Execution]:
    """One Query of `by_id` per id for its job, then one BatchGetItem for the executions."""
    ExecM = t.Execution
    keys = [(item.job_id, item.execution_id) for execution_id in dict.fromkeys(execution_ids)
            for item in ExecM.by_id.query(execution_id, limit=1)]
    return {item.execution_id: execution_from_item(item) for item in ExecM.batch_get(keys)} if keys else {}


def list_tasks_by_prefix(t: Tables, prefix: str, page: int, per_page: int) -> Page:
    """`begins_with` on the sort key of `by_id`'s one partition, up to the page's end; the page's
    tasks read whole with one BatchGetItem (the index holds keys only)."""
    TaskM = t.Task
    reach = page * per_page
    condition = TaskM.task_id.startswith(prefix)
    query = TaskM.by_id.query(TASK_LIST_BUCKET, condition, limit=reach)
    ids = [item.task_id for item in query]
    total = len(ids)
    if query.last_evaluated_key and total < MAX_LISTED:
        total += _count(TaskM, "by_id", TASK_LIST_BUCKET, condition, None, query.last_evaluated_key,
                        MAX_LISTED - total, forward=True)
    chosen = ids[(page - 1) * per_page:reach]
    read = {item.task_id: item for item in TaskM.batch_get(chosen)} if chosen else {}
    items = [task_from_item(read[task_id]) for task_id in chosen if task_id in read]
    return Page(items=items, page=page, per_page=per_page, total=min(total, MAX_LISTED))
