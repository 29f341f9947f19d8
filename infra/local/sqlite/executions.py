"""Executions on SQLite (the Executions port): reads, and the lifecycle's conditional
transitions, each one transaction with the counts it changes and the retry it may add."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Unpack

from chalicelib.domain.errors import all_readable, read_each
from chalicelib.domain.lifecycle import LAUNCHABLE, sources
from chalicelib.domain.listing import MAX_LISTED, ListedExecution, prefix_bounds
from chalicelib.domain.model import FINAL_STATUSES, Execution, ExecutionStatus, Job, Page, now, seq_range
from chalicelib.ports import ExecutionChanges, MakeExecution

from . import rows
from .db import Database
from .pools import give_back
from .statistics import bump

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS executions (
    execution_id TEXT PRIMARY KEY,
    job_id TEXT NOT NULL REFERENCES jobs (job_id),
    task_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    status TEXT NOT NULL,
    status_at REAL NOT NULL,  -- when it entered its status: creation, then the write that set it
    image TEXT NOT NULL,
    command TEXT NOT NULL,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    exit_code INTEGER,
    request_ip TEXT,
    metadata TEXT NOT NULL,
    log TEXT,
    error TEXT,
    due_at REAL,
    launched_at REAL,
    task_arn TEXT,
    pool TEXT,
    notified TEXT NOT NULL,
    notifications TEXT NOT NULL,
    envs TEXT NOT NULL,
    timeout REAL,
    expiration REAL,
    placement TEXT,
    launches INTEGER NOT NULL DEFAULT 0,
    resends INTEGER NOT NULL DEFAULT 0,
    announcing INTEGER NOT NULL DEFAULT 0,
    notifies INTEGER NOT NULL,
    job_retries INTEGER NOT NULL,
    watched INTEGER NOT NULL DEFAULT 0,
    concurrency TEXT,
    waiting_for TEXT,
    timeline TEXT NOT NULL DEFAULT '[]',
    UNIQUE (job_id, seq)
) STRICT;

-- the reconciler's worklists: executions of one status that is not final, oldest first
CREATE INDEX IF NOT EXISTS executions_active ON executions (status, created_at) WHERE {rows.ACTIVE_CONDITION};
-- a job's active set
CREATE INDEX IF NOT EXISTS executions_active_by_job ON executions (job_id) WHERE {rows.ACTIVE_CONDITION};
-- executions across tasks: by status, newest first
CREATE INDEX IF NOT EXISTS executions_by_status ON executions (status, status_at);
"""

# Launchable executions that hold no slot, by when their launch is due: the reconciler's worklist of
# lost launches reads those overdue, and never the ones still waiting out a delay.
WAITING = "status IN ({}) AND pool IS NULL".format(", ".join(f"'{s.value}'" for s in sorted(LAUNCHABLE)))
DUE = "COALESCE(due_at, created_at)"

# The reconciler's worklists: executions that hold a pool slot (final ones: their container not seen
# gone) or have an ending to announce, and those waiting for their launch.
WORKLIST = f"""
CREATE INDEX IF NOT EXISTS executions_reconciled ON executions (created_at) WHERE pool IS NOT NULL OR announcing = 1;
CREATE INDEX IF NOT EXISTS executions_due ON executions ({DUE}) WHERE {WAITING};
"""


_SOURCES = {status: sources(status) for status in ExecutionStatus}


class SqliteExecutions:
    def __init__(self, db: Database) -> None:
        self._db = db

    # reads ----------------------------------------------------------------------------------------

    def get_execution(self, job_id: str, execution_id: str) -> Execution | None:
        with self._db.read() as connection:
            return rows.load_execution(connection, job_id, execution_id)

    def list_executions(self, job_id: str, page: int, per_page: int, total: int | None = None) -> Page:
        with self._db.read() as connection:
            if total is None:
                job = connection.execute("SELECT execution_count FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
                total = job["execution_count"] if job is not None else 0
            low, high = seq_range(page, per_page, total, newest_first=True)
            found = connection.execute("SELECT * FROM executions WHERE job_id = ? AND seq BETWEEN ? AND ? "
                                       "ORDER BY seq DESC", (job_id, low, high)).fetchall()
        return Page(items=[rows.execution_of(row) for row in found], page=page, per_page=per_page, total=total)

    def list_all_executions(self, statuses: frozenset[ExecutionStatus], since: float | None, task_prefix: str | None,
                            page: int, per_page: int) -> Page:
        """Read through executions_by_status; the task prefix is a range of ids, checked per row."""
        condition = "status IN ({})".format(", ".join("?" * len(statuses)))
        values: list[Any] = [status.value for status in sorted(statuses)]
        if since is not None:
            condition += " AND status_at >= ?"
            values.append(since)
        if task_prefix is not None:
            condition += " AND task_id >= ? AND task_id < ?"
            values.extend(prefix_bounds(task_prefix))
        with self._db.read() as connection:
            total = connection.execute(f"SELECT COUNT(*) FROM (SELECT 1 FROM executions WHERE {condition} LIMIT ?)",
                                       [*values, MAX_LISTED]).fetchone()[0]
            found = connection.execute(f"SELECT * FROM executions WHERE {condition} "
                                       "ORDER BY status_at DESC, execution_id DESC LIMIT ? OFFSET ?",
                                       [*values, per_page, (page - 1) * per_page]).fetchall()
        return Page(items=[ListedExecution(rows.execution_of(row), row["status_at"]) for row in found], page=page,
                    per_page=per_page, total=total)

    def find_executions(self, execution_ids: Sequence[str]) -> dict[str, Execution]:
        ids = list(dict.fromkeys(execution_ids))
        if not ids:
            return {}
        with self._db.read() as connection:
            found = connection.execute("SELECT * FROM executions WHERE execution_id IN ({})".format(
                ", ".join("?" * len(ids))), ids).fetchall()
        return {row["execution_id"]: rows.execution_of(row) for row in found}

    def active_executions(self, status: ExecutionStatus, limit: int = 500) -> list[Execution]:
        if status in FINAL_STATUSES:
            return []
        with self._db.read() as connection:
            found = connection.execute(f"SELECT * FROM executions WHERE status = ? AND {rows.ACTIVE_CONDITION} "
                                       "ORDER BY created_at LIMIT ?", (status.value, limit)).fetchall()
        return all_readable(*read_each(found, rows.execution_of, _key))

    def overdue_launches(self, before: float, limit: int) -> list[Execution]:
        with self._db.read() as connection:
            found = connection.execute(f"SELECT * FROM executions WHERE {WAITING} AND {DUE} < ? ORDER BY {DUE} LIMIT ?",
                                       (before, limit)).fetchall()
        return all_readable(*read_each(found, rows.execution_of, _key))

    def prepared_executions(self, limit: int = 500) -> list[Execution]:
        launchable = ", ".join(f"'{status.value}'" for status in sorted(LAUNCHABLE))
        with self._db.read() as connection:
            # The condition of executions_reconciled first, word for word, so SQLite reads that index.
            found = connection.execute(f"SELECT * FROM executions WHERE (pool IS NOT NULL OR announcing = 1) "
                                       f"AND pool IS NOT NULL AND status IN ({launchable}) "
                                       "ORDER BY created_at LIMIT ?", (limit,)).fetchall()
        return all_readable(*read_each(found, rows.execution_of, _key))

    def held_executions(self, limit: int = 500) -> list[Execution]:
        with self._db.read() as connection:
            found = connection.execute(f"SELECT * FROM executions WHERE (pool IS NOT NULL OR announcing = 1) "
                                       f"AND NOT {rows.ACTIVE_CONDITION} "
                                       "ORDER BY created_at LIMIT ?", (limit,)).fetchall()
        return all_readable(*read_each(found, rows.execution_of, _key))

    # writes ---------------------------------------------------------------------------------------

    def transition(self, execution: Execution, target: ExecutionStatus, *, follow_up: MakeExecution | None = None,
                   release_slot: bool = False, unless_job_stopped: bool = False, job: Job | None = None,
                   **fields: Unpack[ExecutionChanges]) -> tuple[Execution, Execution | None] | None:
        if follow_up is not None and unless_job_stopped:
            raise TypeError("a transition that adds a retry cannot also check that its job is not stopped")
        allowed = _SOURCES[target]
        with self._db.write() as connection:
            # The condition is the stored status, never the caller's snapshot of it.
            row = connection.execute("SELECT * FROM executions WHERE execution_id = ? AND job_id = ?",
                                     (execution.execution_id, execution.job_id)).fetchone()
            if row is None or ExecutionStatus(row["status"]) not in allowed:
                return None
            columns, model = rows.changes(rows.with_timeline(fields, row))
            if unless_job_stopped:
                job = connection.execute("SELECT stopped FROM jobs WHERE job_id = ?", (execution.job_id,)).fetchone()
                if job is not None and job["stopped"]:
                    return None
            freed = row["pool"] if release_slot else None
            if freed is not None:
                columns, model = {**columns, "pool": None}, {**model, "pool": None}
                give_back(connection, freed, row["concurrency"])
            moved = rows.execution_of(row, status=target, **model)
            assignments = ", ".join(["status = ?", "status_at = ?", *(f"{name} = ?" for name in columns)])
            connection.execute(f"UPDATE executions SET {assignments} WHERE execution_id = ?",
                               [target.value, now(), *columns.values(), execution.execution_id])
            bump(connection, {row["status"]: -1, target.value: 1})
            added = None
            if follow_up is not None:
                job = rows.load_job(connection, execution.job_id)
                if job is not None and not job.stopped:
                    added = rows.add_execution(connection, job, follow_up(job), retry=True)
        return moved, added

    def update_execution(self, execution: Execution, expected: frozenset[ExecutionStatus] | None = None,
                         **fields: Unpack[ExecutionChanges]) -> bool:
        columns, _ = rows.changes(fields)
        condition, values = "execution_id = ? AND job_id = ?", [execution.execution_id, execution.job_id]
        if expected is not None:
            condition += " AND status IN ({})".format(", ".join("?" * len(expected)))
            values += [status.value for status in expected]
        with self._db.write() as connection:
            if not columns:
                return connection.execute(f"SELECT 1 FROM executions WHERE {condition}", values).fetchone() is not None
            assignments = ", ".join(f"{name} = ?" for name in columns)
            cursor = connection.execute(f"UPDATE executions SET {assignments} WHERE {condition}",
                                        [*columns.values(), *values])
            return cursor.rowcount == 1

    def renew_launch(self, execution: Execution, **fields: Unpack[ExecutionChanges]) -> Execution | None:
        with self._db.write() as connection:
            row = connection.execute("SELECT * FROM executions WHERE execution_id = ? AND job_id = ?",
                                     (execution.execution_id, execution.job_id)).fetchone()
            if row is None or row["launches"] != execution.launches or ExecutionStatus(row["status"]) not in LAUNCHABLE:
                return None
            columns, model = rows.changes(rows.with_timeline(fields, row))
            assignments = ", ".join(["launches = launches + 1", *(f"{name} = ?" for name in columns)])
            connection.execute(f"UPDATE executions SET {assignments} WHERE execution_id = ?",
                               [*columns.values(), execution.execution_id])
        return rows.execution_of(row, launches=row["launches"] + 1, **model)

    def record_notification(self, job_id: str, execution_id: str, entry: dict[str, Any], keep: int = 50) -> None:
        """An execution that does not exist records nothing."""
        with self._db.write() as connection:
            current = rows.load_execution(connection, job_id, execution_id)
            if current is None:
                return
            kept = [*current.notifications, entry][-keep:] if keep > 0 else []
            connection.execute("UPDATE executions SET notifications = ? WHERE execution_id = ?",
                               (rows.notifications_text(kept), execution_id))


def _key(row: Any) -> str:
    """A stored execution's key, for the log of one that cannot be read."""
    return f"{row['job_id']}/{row['execution_id']}"
