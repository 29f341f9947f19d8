"""Items to domain values and back, written once per model: the model attributes carry the
dataclass field names, so each mapping names only the fields that need a conversion."""
from __future__ import annotations

import zlib
from dataclasses import fields
from typing import Any

from ...domain import timeline as timelines
from ...domain.lifecycle import ACTIVE_STATUSES, LAUNCHABLE
from ...domain.model import Concurrency, Execution, ExecutionStatus, Job, JobSpec, Placement, Task
from .tables import SCHEDULE_BUCKET

_TASK_FIELDS = tuple(f.name for f in fields(Task))
_JOB_FIELDS = tuple(f.name for f in fields(Job))
_EXECUTION_FIELDS = tuple(f.name for f in fields(Execution))


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def task_from_item(item: Any) -> Task:
    values = {name: getattr(item, name) for name in _TASK_FIELDS}
    return Task(task_id=values["task_id"], created_at=float(values["created_at"]),
                last_modified_at=float(values["last_modified_at"]), jobs_count=int(values["jobs_count"] or 0),
                seq=int(values["seq"] or 0))


def job_from_item(item: Any) -> Job:
    values = {name: getattr(item, name) for name in _JOB_FIELDS}
    values.update(spec=JobSpec.from_dict(values["spec"]), created_at=float(values["created_at"]),
                  last_modified_at=float(values["last_modified_at"]), seq=int(values["seq"]),
                  execution_count=int(values["execution_count"] or 0), retry_count=int(values["retry_count"] or 0),
                  active=frozenset(values["active"] or ()), stopped=bool(values["stopped"]),
                  next_run_at=_number(values["next_run_at"]), last_tick=_number(values["last_tick"]),
                  skipped_ticks=int(values["skipped_ticks"] or 0),
                  last_skipped_at=_number(values["last_skipped_at"]), paused_at=_number(values["paused_at"]),
                  buffered_tick=_number(values["buffered_tick"]), buffered_at=_number(values["buffered_at"]))
    return Job(**values)


def job_to_item(model: Any, job: Job) -> Any:
    values: dict[str, Any] = {name: getattr(job, name) for name in _JOB_FIELDS}
    values.update(spec=job.spec.to_dict(), active=set(job.active) or None,
                  schedule_bucket=SCHEDULE_BUCKET if job.schedule_version and job.next_run_at is not None else None)
    return model(**values)


def execution_from_item(item: Any) -> Execution:
    values = {name: getattr(item, name) for name in _EXECUTION_FIELDS}
    values.update(status=ExecutionStatus(values["status"]), created_at=float(values["created_at"]),
                  seq=int(values["seq"]), exit_code=None if values["exit_code"] is None else int(values["exit_code"]),
                  started_at=_number(values["started_at"]), finished_at=_number(values["finished_at"]),
                  due_at=_number(values["due_at"]), launched_at=_number(values["launched_at"]),
                  metadata=values["metadata"] or {}, notified=frozenset(values["notified"] or ()),
                  notifications=tuple(values["notifications"] or ()), timeout=_number(values["timeout"]),
                  expiration=_number(values["expiration"]), launches=int(values["launches"] or 0),
                  resends=int(values["resends"] or 0), announcing=bool(values["announcing"]),
                  envs=dict(values["envs"]), notifies=bool(values["notifies"]), job_retries=int(values["job_retries"]),
                  watched=bool(values["watched"]), placement=Placement.from_dict(values["placement"]),
                  concurrency=Concurrency(**values["concurrency"]) if values["concurrency"] else None,
                  timeline=timelines.parse(values["timeline"]))
    return Execution(**values)


def execution_to_item(model: Any, execution: Execution, seq: int) -> Any:
    values: dict[str, Any] = {name: getattr(execution, name) for name in _EXECUTION_FIELDS}
    values.update(seq=seq, status=execution.status.value, metadata=execution.metadata or None,
                  notified=set(execution.notified) or None, notifications=list(execution.notifications) or None,
                  announcing=execution.announcing or None, watched=execution.watched or None,
                  placement=None if execution.placement is None else execution.placement.to_dict(),
                  concurrency=None if execution.concurrency is None else execution.concurrency.to_dict(),
                  timeline=list(execution.timeline) or None,
                  worklist=worklist_key(execution.status, execution.pool, execution.announcing),
                  check_at=check_at(execution.status, execution.due_at, execution.created_at),
                  status_shard=status_shard(execution.status, execution.execution_id), status_at=execution.created_at)
    return model(**values)


HELD = "held"  # the `by_active` key of final executions the reconciler still has work for
PREPARED = "prepared"  # the `by_active` key of launchable executions that hold a pool slot


def worklist_key(status: ExecutionStatus, pool: str | None = None, announcing: bool = False) -> str | None:
    """The sparse `by_active` index holds executions that are not final, keyed by status (a
    launchable one that holds a slot, `prepared`, so the holders the reconciler recounts are
    read without the backlog of those waiting), and final ones that still hold a pool slot or
    have an ending to announce, keyed `held`."""
    if status in LAUNCHABLE and pool is not None:
        return PREPARED
    if status in ACTIVE_STATUSES:
        return status.value
    return HELD if pool is not None or announcing else None


def worklist_keys(status: ExecutionStatus) -> tuple[str, ...]:
    """The `by_active` keys of the executions in `status`, whatever the slot they hold."""
    return (status.value, PREPARED) if status in LAUNCHABLE else (status.value,)


def check_at(status: ExecutionStatus, due_at: float | None, created_at: float) -> float | None:
    """When the launch of a launchable execution is due, the `by_check` index's key; None (no
    attribute, out of the index) for any other."""
    if status not in LAUNCHABLE:
        return None
    return due_at if due_at is not None else created_at


# Partitions of each status in the `by_status` index: an execution's shard is fixed by its id, so
# its entries of every status fall in the same shard number, and writes of one status spread
# evenly over them (docs/storage.md#executions-across-tasks).
STATUS_SHARDS = 4


def status_shard(status: ExecutionStatus, execution_id: str) -> str:
    """The `by_status` partition key of an execution in `status`: `<status>#<n>`."""
    return f"{status.value}#{zlib.crc32(execution_id.encode()) % STATUS_SHARDS}"


def status_shards(status: ExecutionStatus) -> list[str]:
    """Every `by_status` partition of `status`."""
    return [f"{status.value}#{n}" for n in range(STATUS_SHARDS)]
