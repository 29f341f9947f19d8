"""A stand-in for ECS Fargate in virtual time: the Runner port in memory, containers whose
behaviour their command describes, and the "Task State Change" events they put on the events
queue. It keeps the record of every container (when it lived, for which execution, in which
pool, with which launch parameters, which stops it was asked) that the invariants read.

The command language of a simulated container (words after `sim`, each `key=value`):
    exit=<code>   the code it exits with when it ends by itself (default 0)
    after=<s>     seconds it runs before it ends by itself (default 10)
    pull=<s>      seconds from RunTask to RUNNING (default 1)
    term=ignore   it ignores SIGTERM: only the SIGKILL after the stop grace ends it
"""
from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from chalicelib.domain.ecs import CONTAINER, TaskState, started_by
from chalicelib.domain.errors import LaunchFailed
from chalicelib.domain.model import Execution, JobSpec
from chalicelib.domain.pools import Pool

PENDING, RUNNING, STOPPED = "PENDING", "RUNNING", "STOPPED"
SIGTERM_EXIT, SIGKILL_EXIT = 143, 137
TERM_SECONDS = 0.5  # a container that honours SIGTERM exits this long after it
PENDING_STOP_SECONDS = 1.0  # a task stopped before it ran is STOPPED this long after StopTask
ACCOUNT = "123456789012"


@dataclass(frozen=True)
class Behaviour:
    exit_code: int = 0
    run_seconds: float = 10.0
    pull_seconds: float = 1.0
    ignores_term: bool = False

    @classmethod
    def parse(cls, command: str) -> Behaviour:
        words = shlex.split(command)
        if not words or words[0] != "sim":
            raise ValueError(f"not a simulated container's command: {command!r}")
        values = dict(word.split("=", 1) for word in words[1:])
        return cls(exit_code=int(values.get("exit", 0)), run_seconds=float(values.get("after", 10)),
                   pull_seconds=float(values.get("pull", 1)), ignores_term=values.get("term") == "ignore")


def command_of(behaviour: Behaviour) -> str:
    """The command that asks for `behaviour`."""
    words = ["sim", f"exit={behaviour.exit_code}", f"after={behaviour.run_seconds:g}", f"pull={behaviour.pull_seconds:g}"]
    if behaviour.ignores_term:
        words.append("term=ignore")
    return " ".join(words)


@dataclass
class Container:
    """One ECS task: what it was launched with and what became of it, in virtual time."""

    arn: str
    execution_id: str
    job_id: str
    pool: str
    image: str
    command: str
    envs: dict[str, str]
    behaviour: Behaviour
    created_at: float
    missing_until: float  # DescribeTasks does not know it yet (ECS is eventually consistent)
    status: str = PENDING
    started_at: float | None = None
    ended_at: float | None = None
    exit_code: int | None = None
    reason: str | None = None
    stop_requests: list[float] = field(default_factory=list)
    end_due: float | None = None  # when it ends, as things stand
    end_exit: int | None = None
    end_reason: str = "Essential container in task exited"
    key: str | None = None  # the concurrency key whose slot its execution took

    @property
    def live(self) -> bool:
        return self.status != STOPPED

    def state(self) -> TaskState:
        return TaskState(arn=self.arn, last_status=self.status, exit_code=self.exit_code, reason=self.reason,
                         started_at=self.started_at, stopped_at=self.ended_at)


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def task_event(container: Container, at: float) -> dict[str, Any]:
    """The event the EventBridge rule on `aws.ecs` / `ECS Task State Change` delivers."""
    item: dict[str, Any] = {"name": CONTAINER, "lastStatus": container.status, "taskArn": container.arn,
                            "image": container.image}
    if container.exit_code is not None:
        item["exitCode"] = container.exit_code
    detail: dict[str, Any] = {"taskArn": container.arn, "lastStatus": container.status,
                              "desiredStatus": STOPPED if container.stop_requests or not container.live else RUNNING,
                              "startedBy": started_by(container.job_id, container.execution_id),
                              "containers": [item], "launchType": "FARGATE",
                              "createdAt": _iso(container.created_at), "updatedAt": _iso(at)}
    if container.started_at is not None:
        detail["startedAt"] = _iso(container.started_at)
    if container.status == STOPPED:
        detail["stoppedAt"] = _iso(container.ended_at or at)
        detail["stoppedReason"] = container.reason or container.end_reason
    return {"version": "0", "detail-type": "ECS Task State Change", "source": "aws.ecs", "time": _iso(at),
            "resources": [container.arn], "detail": detail}


class SimulatedRunner:
    """The Runner port. `emit(event)` puts a task state change on the events queue (through the
    fault layer, which may lose, delay or duplicate it); `advance()` plays every container
    transition due by the clock's time; `next_due()` says when the next one is."""

    def __init__(self, clock: Callable[[], float], emit: Callable[[dict[str, Any]], None], *,
                 stop_grace_seconds: float, missing_seconds: Callable[[], float], region: str = "us-east-1",
                 note: Callable[[str], None] = lambda line: None) -> None:
        self._clock = clock
        self._note = note
        self._emit = emit
        self.stop_grace_seconds = stop_grace_seconds
        self._missing_seconds = missing_seconds
        self._region = region
        self.containers: list[Container] = []
        self._by_execution: dict[str, Container] = {}
        self._by_arn: dict[str, Container] = {}
        self.max_live: dict[str, int] = {}  # per pool, the most containers alive at once
        self._live: dict[str, int] = {}
        self.over_limit: list[tuple[float, str, int]] = []  # (time, pool, live count) above the pool's limit
        self.limits: dict[str, int] = {}
        self._live_keys: dict[str, int] = {}
        self.key_over_limit: list[tuple[float, str, int, int]] = []  # (time, key, live count, its limit)

    # the port -----------------------------------------------------------------------------------

    def run(self, execution: Execution, spec: JobSpec, pool: Pool) -> str:
        """RunTask with clientToken = execution id: a second call returns the first task. What
        the container runs is what EcsRunner asks ECS for: the task definition of the job's
        image, the execution's command, the job's envs."""
        known = self._by_execution.get(execution.execution_id)
        if known is not None:
            return known.arn
        try:
            behaviour = Behaviour.parse(execution.command)
        except ValueError as error:
            raise LaunchFailed(str(error), retryable=False) from error
        at = self._clock()
        arn = f"arn:aws:ecs:{self._region}:{ACCOUNT}:task/{pool.cluster}/{len(self.containers) + 1:032x}"
        container = Container(arn=arn, execution_id=execution.execution_id, job_id=execution.job_id, pool=pool.name,
                              image=spec.image, command=execution.command, envs=dict(spec.envs), behaviour=behaviour,
                              created_at=at, missing_until=at + self._missing_seconds(),
                              key=execution.concurrency.key if execution.concurrency is not None else None)
        container.end_due = at + behaviour.pull_seconds
        self.containers.append(container)
        self._by_execution[execution.execution_id] = container
        self._by_arn[arn] = container
        self.limits.setdefault(pool.name, pool.max_running)
        live = self._live[pool.name] = self._live.get(pool.name, 0) + 1
        self.max_live[pool.name] = max(self.max_live.get(pool.name, 0), live)
        if pool.max_running and live > pool.max_running:
            self.over_limit.append((at, pool.name, live))
        if execution.concurrency is not None:
            key = execution.concurrency
            holding = self._live_keys[key.key] = self._live_keys.get(key.key, 0) + 1
            if holding > key.limit:
                self.key_over_limit.append((at, key.key, holding, key.limit))
        self._note(f"ecs run execution={execution.execution_id[-8:]} pool={pool.name} live={live}")
        self._emit(task_event(container, at))
        return arn

    def stop(self, task_arn: str, reason: str) -> None:
        """StopTask: SIGTERM, then SIGKILL after the stop grace. A task that is gone needs nothing."""
        container = self._by_arn.get(task_arn)
        if container is None or not container.live:
            return
        at = self._clock()
        first = not container.stop_requests
        container.stop_requests.append(at)
        self._note(f"ecs stop execution={container.execution_id[-8:]} ({container.status})")
        if not first:
            return  # ECS: a task already stopping goes on stopping
        container.end_reason = reason
        if container.status == PENDING:
            self._reschedule(container, at + PENDING_STOP_SECONDS, None)
        elif container.behaviour.ignores_term:
            self._reschedule(container, at + self.stop_grace_seconds, SIGKILL_EXIT)
        else:
            self._reschedule(container, at + TERM_SECONDS, SIGTERM_EXIT)

    def describe(self, task_arns: Sequence[str]) -> dict[str, TaskState | None]:
        at = self._clock()
        answer: dict[str, TaskState | None] = {}
        for arn in task_arns:
            container = self._by_arn.get(arn)
            answer[arn] = None if container is None or at < container.missing_until else container.state()
        return answer

    def find(self, execution: Execution, pool: Pool | None = None) -> TaskState | None:
        """The task started for the execution (its client token), whatever its status."""
        container = self._by_execution.get(execution.execution_id)
        return container.state() if container is not None else None

    def ping(self) -> None:
        return None

    # time ---------------------------------------------------------------------------------------

    def _reschedule(self, container: Container, due: float, exit_code: int | None) -> None:
        if container.end_due is not None and container.status != PENDING and container.end_due <= due:
            return  # it ends by itself before the stop would end it
        container.end_due = due  # a pending task goes straight to STOPPED then
        container.end_exit = exit_code

    def next_due(self) -> float | None:
        dues = [c.end_due for c in self.containers if c.live and c.end_due is not None]
        return min(dues) if dues else None

    def advance(self) -> int:
        """Play every transition due by now, oldest first; returns how many."""
        at = self._clock()
        played = 0
        while True:
            due = [c for c in self.containers if c.live and c.end_due is not None and c.end_due <= at]
            if not due:
                return played
            container = min(due, key=lambda c: c.end_due or 0.0)
            self._transition(container)
            played += 1

    def _transition(self, container: Container) -> None:
        moment = container.end_due or self._clock()
        if container.status == PENDING and not container.stop_requests:
            container.status = RUNNING
            container.started_at = moment
            container.end_due = moment + container.behaviour.run_seconds
            container.end_exit = container.behaviour.exit_code
        else:
            if container.status == PENDING:
                container.end_exit = None  # stopped before it ran: no exit code
            container.status = STOPPED
            container.ended_at = moment
            container.exit_code = container.end_exit
            container.reason = container.end_reason if container.stop_requests else None
            container.end_due = None
            self._live[container.pool] -= 1
            if container.key is not None:
                self._live_keys[container.key] -= 1
        self._note(f"ecs {container.status} exit={container.exit_code} execution={container.execution_id[-8:]}")
        self._emit(task_event(container, moment))

    # what the invariants read -------------------------------------------------------------------

    def of_execution(self, execution_id: str) -> Container | None:
        return self._by_execution.get(execution_id)
