"""The Runner port as local processes, standing in for ECS Fargate without an ECS API: each
execution runs as one process (in a bubblewrap sandbox where available, or through the docker
CLI with DOCKER_HOST), its stdout and stderr go into the local log streams as they are written,
and its state changes go onto the local events queue as the ECS "Task State Change" events the
EventBridge rule delivers in AWS, so the monitor handles them with the same code.

ECS tasks are rows of the local database, written with their event in one transaction. A row
that is not STOPPED when a runner starts was left by a previous process of the runtime, whose
processes died with it (what they left is killed): the runner puts a STOPPED event without an
exit code for it, and the engine finalises its execution the normal way (failed with that
reason, retried if the job has retries left)."""
from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from chalicelib.domain.ecs import CONTAINER, TaskState, ecs_task_id, started_by
from chalicelib.domain.errors import LaunchFailed
from chalicelib.domain.limits import ECS_MAX_REASON_CHARS
from chalicelib.domain.model import Execution, JobSpec
from chalicelib.domain.pools import Pool

from .commands import CannotStart, Sandbox, docker_quietly
from .containers import TASK_DIRECTORY_PREFIX, Containers, join, live, running
from .ecs_tasks import ACCOUNT, REGION, EcsTask, ecs_arn
from .leftovers import kill_leftovers, process_identity
from .output import OutputShipper
from .processes import ProcessRun
from .sqlite.db import Database
from .sqlite.logs import LocalLogStore
from .sqlite.queues import EVENTS, LocalQueues

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS ecs_tasks (
    ecs_task_id TEXT PRIMARY KEY,
    arn TEXT NOT NULL UNIQUE,
    execution_id TEXT NOT NULL UNIQUE,
    image TEXT NOT NULL,
    last_status TEXT NOT NULL,
    desired_status TEXT NOT NULL,
    exit_code INTEGER,
    container_reason TEXT,
    stop_code TEXT,
    stopped_reason TEXT,
    created_at REAL NOT NULL,
    started_at REAL,
    pull_started_at REAL,
    pull_stopped_at REAL,
    stopping_at REAL,
    stopped_at REAL,
    version INTEGER NOT NULL DEFAULT 1,
    pid INTEGER,
    pid_started TEXT,
    directory TEXT,
    job_id TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ecs_tasks_by_status ON ecs_tasks (last_status);
"""

RESTARTED = "The local runtime restarted; the process of this ECS task is gone."
SHUT_DOWN = "The local runtime stopped while this ECS task ran; its process was killed."
JOIN_SECONDS = 5.0
# The columns of a task's ECS state, as EcsTask names them.
STATE_COLUMNS = ("last_status", "desired_status", "exit_code", "container_reason", "stop_code", "stopped_reason",
                 "started_at", "pull_started_at", "pull_stopped_at", "stopping_at", "stopped_at", "version")


@dataclass
class _Supervised:
    """An ECS task this runner started, while its thread watches it."""

    ecs_task_id: str
    arn: str
    command: list[str]
    env: dict[str, str]
    image: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    process: ProcessRun | None = None
    stop: tuple[str, str] | None = None  # (stop code, reason) once a stop was asked
    thread: threading.Thread | None = None


def describe_tasks(db: Database, task_arns: Sequence[str]) -> dict[str, TaskState | None]:
    """DescribeTasks on the ECS task rows: None for an ARN the runner never started."""
    found: dict[str, TaskState] = {}
    arns = list(dict.fromkeys(task_arns))
    with db.read() as connection:
        for start in range(0, len(arns), 500):
            chunk = arns[start:start + 500]
            rows = connection.execute(
                f"SELECT * FROM ecs_tasks WHERE arn IN ({','.join('?' * len(chunk))})", chunk).fetchall()
            for row in rows:
                found[row["arn"]] = TaskState(
                    arn=row["arn"], last_status=row["last_status"], exit_code=row["exit_code"],
                    reason=row["container_reason"] or row["stopped_reason"], started_at=row["started_at"],
                    stopped_at=row["stopped_at"], stop_code=row["stop_code"] or None,
                    stopped_reason=row["stopped_reason"] or None, pull_started_at=row["pull_started_at"],
                    pull_stopped_at=row["pull_stopped_at"])
    return {arn: found.get(arn) for arn in task_arns}


def find_task(db: Database, execution: Execution) -> TaskState | None:
    """The ECS task started for the execution (ListTasks by startedBy), if any."""
    with db.read() as connection:
        row = connection.execute("SELECT arn FROM ecs_tasks WHERE execution_id = ?",
                                 (execution.execution_id,)).fetchone()
    return None if row is None else describe_tasks(db, [row["arn"]])[row["arn"]]


class _TaskRows:
    """The Runner port's reads, on the ECS task rows of the state file."""

    _db: Database

    def describe(self, task_arns: Sequence[str]) -> dict[str, TaskState | None]:
        return describe_tasks(self._db, task_arns)

    def find(self, execution: Execution, pool: Pool) -> TaskState | None:
        return find_task(self._db, execution)

    def ping(self) -> None:
        self._db.ping()


class LocalRunner(_TaskRows):
    def __init__(self, db: Database, queues: LocalQueues, logs: LocalLogStore, *, events_queue: str = EVENTS,
                 stop_grace_seconds: float = 2.0, engine: str | None = None, sandbox: Sandbox | None = None,
                 region: str = REGION, account: str = ACCOUNT, clock: Callable[[], float] = time.time) -> None:
        self._containers = Containers(engine, sandbox)
        self.sandbox = self._containers.sandbox
        self._db = db
        self._queues = queues
        self._logs = logs
        self._events_queue = events_queue
        self._grace = stop_grace_seconds
        self._region = region
        self._account = account
        self._clock = clock
        self._db.ensure_schema(SCHEMA)
        self._lock = threading.Lock()
        self._supervised: dict[str, _Supervised] = {}
        self._closing = False

    @property
    def isolation(self) -> str:
        """How jobs are isolated from the host, as /status says it."""
        return self._containers.isolation

    # the port -----------------------------------------------------------------------------------

    def run(self, execution: Execution, spec: JobSpec, pool: Pool) -> str:
        """Launch; idempotent per execution id, as ECS is per clientToken."""
        try:
            argv = shlex.split(execution.command)
        except ValueError as error:
            raise LaunchFailed(f"the command cannot be split into arguments: {error}", retryable=False) from error
        env = {**spec.envs, "FASTLANE_TASK_ID": execution.task_id, "FASTLANE_JOB_ID": execution.job_id,
               "FASTLANE_EXECUTION_ID": execution.execution_id}
        task_id = uuid.uuid4().hex
        arn = ecs_arn(self._region, self._account, f"task/{pool.cluster}/{task_id}")
        with self._lock:
            if self._closing:
                raise LaunchFailed("the local runtime is stopping", retryable=True)
            with self._db.write() as connection:
                row = connection.execute("SELECT arn FROM ecs_tasks WHERE execution_id = ?",
                                         (execution.execution_id,)).fetchone()
                if row is not None:
                    return str(row[0])  # the same client token: the task it started
                connection.execute(
                    "INSERT INTO ecs_tasks (ecs_task_id, arn, execution_id, job_id, image, last_status,"
                    " desired_status, created_at) VALUES (?, ?, ?, ?, ?, 'PENDING', 'RUNNING', ?)",
                    (task_id, arn, execution.execution_id, execution.job_id, execution.image, self._clock()))
            supervised = _Supervised(task_id, arn, argv, env, execution.image)
            self._supervised[task_id] = supervised
        supervised.thread = threading.Thread(target=self._supervise, args=(supervised,), name=f"ecs-task-{task_id[:8]}",
                                             daemon=True)
        supervised.thread.start()
        return arn

    def stop(self, task_arn: str, reason: str) -> None:
        """SIGTERM (docker stop), then SIGKILL after the grace; a task that is gone needs nothing."""
        with self._lock:
            supervised = self._supervised.get(ecs_task_id(task_arn))
        if supervised is None or supervised.arn != task_arn:
            return  # stopped already, or never ours
        process = self._ask_stop(supervised, "UserInitiated", reason[:ECS_MAX_REASON_CHARS])
        if process is not None:
            self._containers.terminate(supervised.ecs_task_id, process, self._grace)

    # start and shutdown -------------------------------------------------------------------------

    def recover(self) -> int:
        """Put a STOPPED event for every ECS task a previous process of the runtime left
        unfinished (and kill what may be left of its process); returns how many."""
        with self._db.read() as connection:
            rows = connection.execute("SELECT ecs_task_id, execution_id, pid, pid_started, directory FROM ecs_tasks"
                                      " WHERE last_status != 'STOPPED'").fetchall()
        with self._lock:
            left = [row for row in rows if row["ecs_task_id"] not in self._supervised]
        for row in left:
            # A job's process dies with the runtime, but not what it started in the background;
            # a pid it recorded may be another process's by now.
            kill_leftovers(f"FASTLANE_EXECUTION_ID={row['execution_id']}", row["pid"], row["pid_started"])
            name = self._containers.docker_name(row["ecs_task_id"])
            if name is not None:
                docker_quietly(["rm", "-f", name], timeout=10)
            if row["directory"] and os.path.basename(row["directory"]).startswith(TASK_DIRECTORY_PREFIX):
                shutil.rmtree(row["directory"], ignore_errors=True)  # the task's /tmp, left by the crash
            now = self._clock()

            def restarted(state: EcsTask, now: float = now) -> None:
                state.stop_code, state.stopped_reason, state.stopping_at = "TerminationNotice", RESTARTED, now
                state.stopped(now, None)

            self._change(row["ecs_task_id"], restarted, event=True, pid=None)
        if left:
            log.warning("local runner: %d ECS task(s) of a previous run were stopped", len(left))
        return len(left)

    def close(self) -> None:
        """Kill every running process; each task's STOPPED event says the runtime stopped."""
        with self._lock:
            self._closing = True
            supervised = list(self._supervised.values())
        for task in supervised:
            process = self._ask_stop(task, "TerminationNotice", SHUT_DOWN)
            if process is not None:
                self._containers.kill(task.ecs_task_id, process)
        join([task.thread for task in supervised], JOIN_SECONDS)

    def running_count(self) -> int:
        with self._lock:
            return running(task.process for task in self._supervised.values())

    # one ECS task ---------------------------------------------------------------------------------

    def _ask_stop(self, task: _Supervised, code: str, reason: str) -> ProcessRun | None:
        """Record the stop; the running process to end, if there is one."""
        with task.lock:
            if task.stop is not None:
                return None
            task.stop = (code, reason)
            process = live(task.process)
        now = self._clock()
        self._change(task.ecs_task_id, lambda state: state.ask_stop(code, reason, now), event=False)
        return process

    def _supervise(self, task: _Supervised) -> None:
        """Start the process, ship its output while it runs, and report how it ended. Runs in
        the task's own thread; never raises."""
        failure: str | None = None

        def launch(directory: str | None) -> tuple[ProcessRun, OutputShipper] | None:
            nonlocal failure
            with task.lock:
                if task.stop is not None:
                    return None
                try:
                    command = self._containers.command(task.ecs_task_id, task.image, task.command, task.env, directory)
                    task.process = process = ProcessRun(command)
                except CannotStart as error:
                    failure = error.reason
                    return None
            now = self._clock()
            self._change(task.ecs_task_id, lambda state: state.running(now), event=True,
                         pid=process.pid, pid_started=process_identity(process.pid), directory=directory)
            streams = {stream: f"{task.ecs_task_id}/{stream}" for stream in ("stdout", "stderr")}
            return process, OutputShipper(self._put_logs, streams)

        exit_code, error = self._containers.supervise(task.ecs_task_id, launch, lambda: task.process)
        if error is not None:
            failure = failure or f"CannotStartContainerError: {error}"
        self._finish(task, exit_code, failure)

    def _put_logs(self, stream: str, events: list[dict[str, Any]]) -> None:
        self._logs.put(stream, [(event["timestamp"], event["message"]) for event in events])

    def _finish(self, task: _Supervised, exit_code: int | None, failure: str | None) -> None:
        now = self._clock()
        with task.lock:
            stop = task.stop
        started = task.process is not None

        def end(state: EcsTask) -> None:
            if failure is not None and not started:
                state.failed_to_start(failure, now)
            elif failure is not None and stop is None:
                state.container_reason = failure  # the runner failed while the process ran
            if not started:
                state.stopping_at = now
            # Killed because the runtime stops, not by the job: no exit code of its own.
            shut_down = stop is not None and stop[0] == "TerminationNotice"
            state.stopped(now, None if shut_down else exit_code)

        self._change(task.ecs_task_id, end, event=True, pid=None)
        with self._lock:
            self._supervised.pop(task.ecs_task_id, None)

    # records and events ---------------------------------------------------------------------------

    def _change(self, task_id: str, change: Callable[[EcsTask], Any], *, event: bool, **columns: Any) -> None:
        """Apply a change of state to the task's row (and set `columns`) and, with `event`, put its
        state change on the events queue, in one transaction."""
        with self._db.write() as connection:
            row = connection.execute("SELECT * FROM ecs_tasks WHERE ecs_task_id = ?", (task_id,)).fetchone()
            if row is None:
                return
            state = self._state(row)
            change(state)
            fields = {**{name: getattr(state, name) for name in STATE_COLUMNS}, **columns}
            assignments = ", ".join(f"{name} = ?" for name in fields)
            connection.execute(f"UPDATE ecs_tasks SET {assignments} WHERE ecs_task_id = ?", (*fields.values(), task_id))
            if event:
                message = state.state_change(self._account, self._region, self._clock())
                self._queues.send_in(connection, self._events_queue, json.dumps(message))
        if event:
            self._queues.wake(self._events_queue)

    def _state(self, row: sqlite3.Row) -> EcsTask:
        cluster = row["arn"].split("/")[-2]
        named = started_by(row["job_id"], row["execution_id"])
        return EcsTask(
            arn=row["arn"], cluster_arn=ecs_arn(self._region, self._account, f"cluster/{cluster}"),
            definition_arn=ecs_arn(self._region, self._account, f"task-definition/{cluster}-local:1"),
            group=f"family:{cluster}-local", container_arn=f"{row['arn'].replace(':task/', ':container/')}/{CONTAINER}",
            container_name=CONTAINER, image=row["image"], created_at=row["created_at"], updated_at=self._clock(),
            started_by=named, last_status=row["last_status"], desired_status=row["desired_status"],
            started_at=row["started_at"], stopping_at=row["stopping_at"], stopped_at=row["stopped_at"],
            pull_started_at=row["pull_started_at"], pull_stopped_at=row["pull_stopped_at"],
            stop_code=row["stop_code"] or None, stopped_reason=row["stopped_reason"] or None,
            exit_code=row["exit_code"], container_reason=row["container_reason"] or None, version=row["version"])


class FrontRunner(_TaskRows):
    """The Runner port in an HTTP front of the runtime (fronts.py): it reads the ECS task rows, and
    hands StopTask to the engine, whose runner holds the processes. RunTask is the engine's alone
    (only its queue handlers launch)."""

    def __init__(self, db: Database, stop: Callable[[str, str], None], isolation: str) -> None:
        self._db = db
        self._stop = stop
        self.isolation = isolation

    def run(self, execution: Execution, spec: JobSpec, pool: Pool) -> str:
        raise LaunchFailed("an HTTP front of the local runtime does not launch; its engine does", retryable=True)

    def stop(self, task_arn: str, reason: str) -> None:
        self._stop(task_arn, reason[:ECS_MAX_REASON_CHARS])

