"""What the contract tests share: the ports of one backend, builders of jobs and executions, and
a way to run writers at the same time."""
from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from hypothesis import HealthCheck, Phase, settings

from chalicelib.domain.model import Execution, ExecutionStatus, Job, JobSpec, new_id, now
from chalicelib.ports import Connections, Deliveries, Executions, IdempotencyKeys, Jobs, Pools, Schedules, Statistics

T = TypeVar("T")


def randomized(ports: Ports) -> settings:
    """Hypothesis settings for a randomized test on `ports`. Its examples share the test's backend
    (a fresh database per example would cost a moto account each): each works on ids of its own
    and compares counters before and after it. moto costs milliseconds a call, so the aws
    backend runs fewer examples than the local one, and reports a failing example as found
    (shrinking it there takes minutes; the local backend shrinks in seconds)."""
    if ports.name == "local":
        return settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
    return settings(max_examples=10, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow],
                    phases=[Phase.explicit, Phase.reuse, Phase.generate])


class FakeClock:
    """The time the delivery log measures leases on, and the idempotency keys their leases and
    expiry; a test moves it forward."""

    def __init__(self, start: float) -> None:
        self.value = start

    def __call__(self) -> float:
        return self.value

    def advance(self, seconds: float) -> None:
        self.value += seconds


@dataclass
class Ports:
    """The storage ports of one backend, as the services receive them."""

    name: str
    jobs: Jobs
    executions: Executions
    pools: Pools
    schedules: Schedules
    statistics: Statistics
    deliveries: Deliveries
    connections: Connections
    idempotency_keys: IdempotencyKeys
    clock: FakeClock
    unreachable: Callable[[], Ports]  # the same backend with its store out of reach


def a_spec(**fields: Any) -> JobSpec:
    return JobSpec(image="ubuntu", command="echo hello", **fields)


def a_job(task_id: str | None = None, spec: JobSpec | None = None, **fields: Any) -> Job:
    at = now()
    return Job(task_id=task_id or f"task-{new_id()}", job_id=new_id(), spec=spec or a_spec(), created_at=at,
               last_modified_at=at, **fields)


def an_execution(job: Job, status: ExecutionStatus = ExecutionStatus.ENQUEUED, **fields: Any) -> Execution:
    fields.setdefault("created_at", now())
    return Execution(task_id=job.task_id, job_id=job.job_id, execution_id=new_id(), image=job.spec.image,
                     command=job.spec.command, status=status, **fields)


def maker(status: ExecutionStatus = ExecutionStatus.ENQUEUED, **fields: Any) -> Callable[[Job], Execution]:
    """A MakeExecution that records the job it was given."""

    def make(job: Job) -> Execution:
        make.seen.append(job)  # type: ignore[attr-defined]
        return an_execution(job, status, **fields)

    make.seen = []  # type: ignore[attr-defined]
    return make


def post(ports: Ports, task_id: str | None = None, status: ExecutionStatus = ExecutionStatus.ENQUEUED, *,
         spec: JobSpec | None = None, job_fields: dict[str, Any] | None = None,
         **execution_fields: Any) -> tuple[Job, Execution]:
    """A new job with its first execution, moved to `status` the way the engine moves it."""
    job = a_job(task_id, spec, **(job_fields or {}))
    saved, first = ports.jobs.save_new_job(job, an_execution(job, **execution_fields))
    assert first is not None
    if status is not ExecutionStatus.ENQUEUED:
        moved = ports.executions.transition(first, status)
        assert moved is not None
        first = moved[0]
        current = ports.jobs.get_job(job.job_id)
        assert current is not None
        saved = current
    return saved, first


def at_once(count: int, work: Callable[[int], T]) -> list[T]:
    """Run `work(0..count-1)` on as many threads released together; every result, or the first
    error raised."""
    start = threading.Barrier(count)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def run(index: int) -> None:
        start.wait()
        try:
            results[index] = work(index)
        except BaseException as error:  # noqa: BLE001 - handed to the test below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a writer never finished"
    if errors:
        raise errors[0]
    return results


def counts(ports: Ports) -> dict[str, int]:
    """The statistics, with every counter present (a backend may leave out those never written)."""
    found = ports.statistics.stats()
    names = ("tasks", "jobs", "scheduled", *(status.value for status in ExecutionStatus))
    return {name: found.get(name, 0) for name in names}


def changed(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {name: after[name] - before[name] for name in after if after[name] != before[name]}
