"""How tasks, jobs and executions are written to and read from their SQLite rows: each model's
field mapping once, and the few statements that several aggregates' transactions share."""
from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from chalicelib.domain import timeline as timelines
from chalicelib.domain.model import (
    ACTIVE_STATUSES,
    Concurrency,
    Execution,
    ExecutionStatus,
    Job,
    JobSpec,
    Placement,
    Task,
)

from .statistics import bump

T = TypeVar("T")

# The one condition that says an execution is not final. Partial indexes are written with it, and
# SQLite uses such an index only for a query that repeats its condition word for word.
ACTIVE_CONDITION = "status IN ({})".format(", ".join(f"'{s.value}'" for s in sorted(ACTIVE_STATUSES)))

# Columns of an execution row that a write may set besides its status (ports.ExecutionChanges):
# names are put into SQL, so nothing else passes.
_CHANGEABLE = {"started_at", "finished_at", "exit_code", "error", "due_at", "launched_at", "task_arn", "notified",
               "resends", "announcing", "watched", "waiting_for", "timeline"}


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _loads(text: str) -> Any:
    # Most executions carry no metadata, notifications or announcements: skip the parser for them.
    if text == "[]":
        return []
    if text == "{}":
        return {}
    return json.loads(text)


def with_fields(model: T, **changes: Any) -> T:
    """`dataclasses.replace` for the frozen models, at half its cost (these run in every write)."""
    return type(model)(**{**model.__dict__, **changes})


# tasks --------------------------------------------------------------------------------------------


def task_of(row: sqlite3.Row) -> Task:
    return Task(task_id=row["task_id"], created_at=row["created_at"], last_modified_at=row["last_modified_at"],
                jobs_count=row["jobs_count"], seq=row["seq"])


# jobs ---------------------------------------------------------------------------------------------

JOB_COLUMNS = ("job_id", "task_id", "seq", "created_at", "last_modified_at", "spec", "request_ip",
               "execution_count", "retry_count", "stopped", "schedule_version", "next_run_at", "last_tick",
               "skipped_ticks", "last_skipped_at", "last_skip_reason", "paused_at", "buffered_tick", "buffered_at")


def job_values(job: Job) -> dict[str, Any]:
    """The job's row; its active set is not stored: it is the job's executions that are not final."""
    return {
        "job_id": job.job_id, "task_id": job.task_id, "seq": job.seq, "created_at": job.created_at,
        "last_modified_at": job.last_modified_at, "spec": _json(job.spec.to_dict()), "request_ip": job.request_ip,
        "execution_count": job.execution_count, "retry_count": job.retry_count, "stopped": int(job.stopped),
        "schedule_version": job.schedule_version, "next_run_at": job.next_run_at, "last_tick": job.last_tick,
        "skipped_ticks": job.skipped_ticks, "last_skipped_at": job.last_skipped_at,
        "last_skip_reason": job.last_skip_reason, "paused_at": job.paused_at, "buffered_tick": job.buffered_tick,
        "buffered_at": job.buffered_at,
    }


def job_of(row: sqlite3.Row, active: Iterable[str]) -> Job:
    return Job(
        task_id=row["task_id"], job_id=row["job_id"], spec=JobSpec.from_dict(_loads(row["spec"])),
        created_at=row["created_at"], last_modified_at=row["last_modified_at"], request_ip=row["request_ip"],
        execution_count=row["execution_count"], retry_count=row["retry_count"], seq=row["seq"],
        active=frozenset(active), stopped=bool(row["stopped"]), schedule_version=row["schedule_version"],
        next_run_at=row["next_run_at"], last_tick=row["last_tick"], skipped_ticks=row["skipped_ticks"],
        last_skipped_at=row["last_skipped_at"], last_skip_reason=row["last_skip_reason"], paused_at=row["paused_at"],
        buffered_tick=row["buffered_tick"], buffered_at=row["buffered_at"],
    )


_INSERT_JOB = f"INSERT INTO jobs ({', '.join(JOB_COLUMNS)}) VALUES ({', '.join('?' * len(JOB_COLUMNS))})"


def insert_job(connection: sqlite3.Connection, job: Job) -> None:
    values = job_values(job)
    connection.execute(_INSERT_JOB, [values[c] for c in JOB_COLUMNS])


def active_of(connection: sqlite3.Connection, job_ids: list[str]) -> dict[str, set[str]]:
    """The ids of each job's executions that are not final (the job's active set)."""
    found: dict[str, set[str]] = {job_id: set() for job_id in job_ids}
    if job_ids:
        marks = ", ".join("?" * len(job_ids))
        for row in connection.execute(f"SELECT job_id, execution_id FROM executions WHERE job_id IN ({marks}) "
                                      f"AND {ACTIVE_CONDITION}", job_ids):
            found[row["job_id"]].add(row["execution_id"])
    return found


def load_job(connection: sqlite3.Connection, job_id: str) -> Job | None:
    row = connection.execute("SELECT * FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
    if row is None:
        return None
    return job_of(row, active_of(connection, [job_id])[job_id])


def jobs_of(connection: sqlite3.Connection, rows: list[sqlite3.Row]) -> list[Job]:
    active = active_of(connection, [row["job_id"] for row in rows])
    return [job_of(row, active[row["job_id"]]) for row in rows]


# executions ---------------------------------------------------------------------------------------

EXECUTION_COLUMNS = ("execution_id", "job_id", "task_id", "seq", "status", "image", "command", "created_at",
                     "started_at", "finished_at", "exit_code", "request_ip", "metadata", "log", "error", "due_at",
                     "launched_at", "task_arn", "pool", "notified", "notifications", "envs", "timeout", "expiration",
                     "launches", "resends", "announcing", "notifies", "job_retries", "watched", "placement",
                     "concurrency", "waiting_for", "timeline")


# `status_at`, when the execution entered its status (the order of listings across tasks), is the
# store's column, not a field of the model: an execution is inserted in the status it was made in.
_INSERT_EXECUTION = (f"INSERT INTO executions ({', '.join(EXECUTION_COLUMNS)}, status_at) "
                     f"VALUES ({', '.join('?' * (len(EXECUTION_COLUMNS) + 1))})")


def execution_values(execution: Execution) -> dict[str, Any]:
    return {
        "execution_id": execution.execution_id, "job_id": execution.job_id, "task_id": execution.task_id,
        "seq": execution.seq, "status": execution.status.value, "image": execution.image,
        "command": execution.command, "created_at": execution.created_at, "started_at": execution.started_at,
        "finished_at": execution.finished_at, "exit_code": execution.exit_code, "request_ip": execution.request_ip,
        "metadata": _json(execution.metadata or {}), "log": execution.log, "error": execution.error,
        "due_at": execution.due_at, "launched_at": execution.launched_at, "task_arn": execution.task_arn,
        "pool": execution.pool, "notified": _json(sorted(execution.notified)),
        "notifications": notifications_text(execution.notifications),
        "envs": _json(execution.envs), "timeout": execution.timeout,
        "expiration": execution.expiration, "launches": execution.launches, "resends": execution.resends,
        "announcing": int(execution.announcing),
        "notifies": int(execution.notifies),
        "job_retries": execution.job_retries, "watched": int(execution.watched),
        "placement": None if execution.placement is None else _json(execution.placement.to_dict()),
        "concurrency": None if execution.concurrency is None else _json(execution.concurrency.to_dict()),
        "waiting_for": execution.waiting_for,
        "timeline": _json(list(execution.timeline)),
    }


def execution_of(row: sqlite3.Row, **overrides: Any) -> Execution:
    """The execution a row holds, with `overrides` (model fields) applied."""
    fields = {
        "task_id": row["task_id"], "job_id": row["job_id"], "execution_id": row["execution_id"], "image": row["image"],
        "command": row["command"], "status": ExecutionStatus(row["status"]), "created_at": row["created_at"],
        "seq": row["seq"], "started_at": row["started_at"], "finished_at": row["finished_at"],
        "exit_code": row["exit_code"], "request_ip": row["request_ip"], "metadata": _loads(row["metadata"]),
        "log": row["log"], "error": row["error"], "due_at": row["due_at"], "launched_at": row["launched_at"],
        "task_arn": row["task_arn"], "pool": row["pool"], "notified": frozenset(_loads(row["notified"])),
        "notifications": tuple(_loads(row["notifications"])),
        "envs": _loads(row["envs"]), "timeout": row["timeout"],
        "expiration": row["expiration"], "launches": row["launches"], "resends": row["resends"],
        "announcing": bool(row["announcing"]),
        "notifies": bool(row["notifies"]), "job_retries": row["job_retries"],
        "watched": bool(row["watched"]),
        "placement": None if row["placement"] is None else Placement.from_dict(_loads(row["placement"])),
        "concurrency": None if row["concurrency"] is None else Concurrency(**_loads(row["concurrency"])),
        "waiting_for": row["waiting_for"],
        "timeline": timelines.parse(_loads(row["timeline"])),
    }
    fields.update(overrides)
    return Execution(**fields)


def insert_execution(connection: sqlite3.Connection, execution: Execution, seq: int) -> Execution:
    """Insert an execution as its job's `seq`th and count it by its status, in the caller's write."""
    values = execution_values(execution)
    values["seq"] = seq
    connection.execute(_INSERT_EXECUTION, [*(values[c] for c in EXECUTION_COLUMNS), execution.created_at])
    bump(connection, {execution.status.value: 1})
    return with_fields(execution, seq=seq)


def changes(fields: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """ExecutionChanges as column values to store, and as model fields (None removes a field)."""
    unknown = set(fields) - _CHANGEABLE
    if unknown:
        raise TypeError(f"not a field an execution write may set: {sorted(unknown)}")
    columns = {name: (_json(sorted(value or ())) if name == "notified" else _json(list(value)) if name == "timeline"
                      else value) for name, value in fields.items()}
    model = {name: (frozenset(value or ()) if name == "notified" else value) for name, value in fields.items()}
    return columns, model


def with_timeline(fields: Mapping[str, Any], row: sqlite3.Row) -> dict[str, Any]:
    """ExecutionChanges with its `timeline_entry` added to the timeline the row holds."""
    changes = dict(fields)
    entry = changes.pop("timeline_entry", None)
    if entry is not None:
        changes["timeline"] = timelines.add(timelines.parse(_loads(row["timeline"])), entry)
    return changes


def notifications_text(entries: Iterable[dict[str, Any]]) -> str:
    return _json(list(entries))


def load_execution(connection: sqlite3.Connection, job_id: str, execution_id: str) -> Execution | None:
    row = connection.execute("SELECT * FROM executions WHERE execution_id = ? AND job_id = ?",
                             (execution_id, job_id)).fetchone()
    return execution_of(row) if row is not None else None


def add_execution(connection: sqlite3.Connection, job: Job, execution: Execution, *, retry: bool = False,
                  clear_stopped: bool = False) -> Execution:
    """Add an execution to a job as its next one (dense sequence numbers), counting it and, for a
    retry, the job's retries. Called inside the write that decided to add it."""
    seq = job.execution_count + 1
    added = insert_execution(connection, execution, seq)
    connection.execute("UPDATE jobs SET execution_count = ?, retry_count = retry_count + ?, "
                       "stopped = CASE WHEN ? THEN 0 ELSE stopped END WHERE job_id = ?",
                       (seq, int(retry), int(clear_stopped), job.job_id))
    return added


__all__ = ["ACTIVE_CONDITION", "task_of", "job_of", "job_values", "insert_job", "load_job", "jobs_of", "active_of",
           "execution_of", "execution_values", "insert_execution", "load_execution", "changes", "add_execution",
           "with_fields", "notifications_text", "with_timeline"]
