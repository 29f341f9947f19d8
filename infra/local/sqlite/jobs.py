"""Tasks and jobs on SQLite (the Jobs port): creating, replacing and listing them, with dense
sequence numbers and exact counts kept in the transaction of each write."""
from __future__ import annotations

from chalicelib.domain.errors import Conflict, TooManyActive
from chalicelib.domain.listing import MAX_LISTED, prefix_bounds
from chalicelib.domain.model import Execution, Job, Page, Task, seq_range
from chalicelib.ports import MakeExecution

from . import rows
from .db import Database
from .statistics import JOBS, SCHEDULED, TASKS, bump, counter

# `seq` numbers tasks 1, 2, 3 ... in creation order and a task's jobs likewise, with no gaps (rows
# are never deleted), so a page is the range of numbers it covers, read through these keys.
SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    task_id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL UNIQUE,
    created_at REAL NOT NULL,
    last_modified_at REAL NOT NULL,
    jobs_count INTEGER NOT NULL
) STRICT;

CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    task_id TEXT NOT NULL REFERENCES tasks (task_id),
    seq INTEGER NOT NULL,
    created_at REAL NOT NULL,
    last_modified_at REAL NOT NULL,
    spec TEXT NOT NULL,
    request_ip TEXT,
    execution_count INTEGER NOT NULL,
    retry_count INTEGER NOT NULL,
    stopped INTEGER NOT NULL,
    schedule_version TEXT,
    next_run_at REAL,
    last_tick REAL,
    skipped_ticks INTEGER NOT NULL,
    last_skipped_at REAL,
    last_skip_reason TEXT,
    paused_at REAL,
    buffered_tick REAL,
    buffered_at REAL,
    UNIQUE (task_id, seq)
) STRICT;
"""


class SqliteJobs:
    def __init__(self, db: Database) -> None:
        self._db = db

    # writes ---------------------------------------------------------------------------------------

    def save_new_job(self, job: Job, execution: Execution | None, *,
                     known_absent: bool = False) -> tuple[Job, Execution | None]:
        # One transaction: the existence check costs nothing here, whatever the caller knows.
        with self._db.write() as connection:
            if connection.execute("SELECT 1 FROM jobs WHERE job_id = ?", (job.job_id,)).fetchone() is not None:
                raise Conflict(f"job {job.job_id} exists already", field="jobId")
            task = connection.execute("SELECT jobs_count FROM tasks WHERE task_id = ?", (job.task_id,)).fetchone()
            if task is None:
                connection.execute("INSERT INTO tasks (task_id, seq, created_at, last_modified_at, jobs_count) "
                                   "VALUES (?, ?, ?, ?, 1)",
                                   (job.task_id, counter(connection, TASKS) + 1, job.created_at, job.created_at))
                seq = 1
            else:
                seq = task["jobs_count"] + 1
                connection.execute("UPDATE tasks SET jobs_count = ?, last_modified_at = ? WHERE task_id = ?",
                                   (seq, job.created_at, job.task_id))
            saved = rows.with_fields(job, seq=seq, execution_count=int(execution is not None),
                                     active=frozenset({execution.execution_id} if execution is not None else ()))
            rows.insert_job(connection, saved)
            bump(connection, {TASKS: int(task is None), JOBS: 1, SCHEDULED: int(job.spec.scheduled)})
            first = rows.insert_execution(connection, execution, 1) if execution is not None else None
        return saved, first

    def replace_job(self, job: Job, execution: Execution | None, *,
                    max_active: int | None = None) -> tuple[Job, Execution | None]:
        with self._db.write() as connection:
            current = rows.load_job(connection, job.job_id)
            if current is None or current.task_id != job.task_id:
                raise Conflict(f"job {job.job_id} changed while it was being replaced; try again", field="jobId")
            if max_active is not None and len(current.active) >= max_active:
                raise TooManyActive(max_active)
            saved = job.with_changes(seq=current.seq, created_at=current.created_at,
                                     execution_count=current.execution_count, retry_count=0, active=current.active,
                                     stopped=False, last_tick=current.last_tick)
            values = rows.job_values(saved)
            columns = [c for c in rows.JOB_COLUMNS if c not in ("job_id", "task_id")]
            connection.execute(f"UPDATE jobs SET {', '.join(f'{c} = ?' for c in columns)} WHERE job_id = ?",
                               [*(values[c] for c in columns), job.job_id])
            connection.execute("UPDATE tasks SET last_modified_at = ? WHERE task_id = ?",
                               (job.last_modified_at, job.task_id))
            bump(connection, {SCHEDULED: int(job.spec.scheduled) - int(current.spec.scheduled)})
            added = None
            if execution is not None:
                added = rows.add_execution(connection, saved, execution)
                saved = saved.with_changes(execution_count=added.seq, active=saved.active | {added.execution_id})
        return saved, added

    def add_execution(self, job_id: str, make: MakeExecution, *, require_idle: bool = False,
                      clear_stopped: bool = False) -> tuple[Job, Execution]:
        with self._db.write() as connection:
            job = rows.load_job(connection, job_id)
            if job is None:
                raise Conflict(f"job {job_id} does not exist", field="jobId")
            if require_idle and job.active:
                raise Conflict("The job has an execution that is still running; stop it or wait for it to end.",
                               field="jobId")
            added = rows.add_execution(connection, job, make(job), clear_stopped=clear_stopped)
        changed = job.with_changes(execution_count=added.seq, active=job.active | {added.execution_id},
                                   stopped=job.stopped and not clear_stopped)
        return changed, added

    def set_job_stopped(self, job_id: str, stopped: bool) -> None:
        with self._db.write() as connection:
            connection.execute("UPDATE jobs SET stopped = ? WHERE job_id = ?", (int(stopped), job_id))

    # reads ----------------------------------------------------------------------------------------

    def get_job(self, job_id: str) -> Job | None:
        with self._db.read() as connection:
            return rows.load_job(connection, job_id)

    def get_task(self, task_id: str) -> Task | None:
        with self._db.read() as connection:
            row = connection.execute("SELECT * FROM tasks WHERE task_id = ?", (task_id,)).fetchone()
        return rows.task_of(row) if row is not None else None

    def list_tasks(self, page: int, per_page: int) -> Page:
        with self._db.read() as connection:
            total = counter(connection, TASKS)
            low, high = seq_range(page, per_page, total)
            found = connection.execute("SELECT * FROM tasks WHERE seq BETWEEN ? AND ? ORDER BY seq",
                                       (low, high)).fetchall()
        return Page(items=[rows.task_of(row) for row in found], page=page, per_page=per_page, total=total)

    def list_tasks_by_prefix(self, prefix: str, page: int, per_page: int) -> Page:
        """A range of the task key's index (a LIKE would not use it: it ignores case)."""
        low, high = prefix_bounds(prefix)
        with self._db.read() as connection:
            total = connection.execute("SELECT COUNT(*) FROM (SELECT 1 FROM tasks WHERE task_id >= ? AND task_id < ? "
                                       "LIMIT ?)", (low, high, MAX_LISTED)).fetchone()[0]
            found = connection.execute("SELECT * FROM tasks WHERE task_id >= ? AND task_id < ? ORDER BY task_id "
                                       "LIMIT ? OFFSET ?", (low, high, per_page, (page - 1) * per_page)).fetchall()
        return Page(items=[rows.task_of(row) for row in found], page=page, per_page=per_page, total=total)

    def list_jobs(self, task_id: str, page: int, per_page: int) -> Page:
        with self._db.read() as connection:
            task = connection.execute("SELECT jobs_count FROM tasks WHERE task_id = ?", (task_id,)).fetchone()
            total = task["jobs_count"] if task is not None else 0
            low, high = seq_range(page, per_page, total)
            found = connection.execute("SELECT * FROM jobs WHERE task_id = ? AND seq BETWEEN ? AND ? ORDER BY seq",
                                       (task_id, low, high)).fetchall()
            items = rows.jobs_of(connection, found)
        return Page(items=items, page=page, per_page=per_page, total=total)

    def ping(self) -> None:
        with self._db.read() as connection:
            connection.execute("SELECT 1 FROM tasks LIMIT 1").fetchall()
