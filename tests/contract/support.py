"""What the contract tests share: the ports of one backend, builders of jobs and executions, a
way to run writers at the same time, and a way to make the store's calls fail."""
from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
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


class Rounds:
    """Requests of the threads that joined go in rounds: none sends its (k+1)th request to the store
    before the kth of every other has been answered (or it left). So reads that writers make at
    once are all answered before any of their writes, as when a store serves them in parallel;
    without it, a store that answers one request at a time (moto behind a lock) answers most reads
    after the write they race with, and hides races that DynamoDB has."""

    def __init__(self) -> None:
        self._answered: dict[int, int] = {}
        self._changed = threading.Condition()

    def join(self) -> None:
        with self._changed:
            self._answered[threading.get_ident()] = 0

    def leave(self) -> None:
        with self._changed:
            self._answered.pop(threading.get_ident(), None)
            self._changed.notify_all()

    @contextmanager
    def request(self) -> Iterator[None]:
        """One request of this thread, sent in its turn (at once for a thread that never joined)."""
        me = threading.get_ident()
        with self._changed:
            mine = self._answered.get(me)
            if mine is not None:
                # The timeout only keeps a test that lost a thread from hanging; a round never needs it.
                self._changed.wait_for(lambda: min(self._answered.values()) >= mine, timeout=60)
        try:
            yield
        finally:
            with self._changed:
                if me in self._answered:
                    self._answered[me] += 1
                    self._changed.notify_all()


BEFORE, PART_WAY, AFTER, CONFLICT = "before", "part-way", "after", "conflict"


@dataclass
class Faults:
    """Which of the store's calls fail, and how, while a backend's `faulty` is on: `before` it
    takes effect (nothing changes), `after` (it took effect, the caller is told it failed), on
    SQLite `part-way` (the transaction has run and is rolled back before its commit), on DynamoDB
    with a `conflict` (a transaction met another one: nothing changes, the adapter tries again).
    Either at random (`rate`, from a seed), or the next transactions as `transactions` lists
    (on DynamoDB a TransactWriteItems; on SQLite every write is one)."""

    rate: float = 0.0
    seed: int = 0
    transactions: list[str] = field(default_factory=list)
    injected: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)
        self._lock = threading.Lock()

    def draw(self, kinds: tuple[str, ...], transaction: bool) -> str | None:
        """How the call about to be made fails, among `kinds` (those the call can meet), or None."""
        with self._lock:
            kind: str | None = None
            if self.transactions:
                if transaction:
                    kind = self.transactions.pop(0)
            elif self._random.random() < self.rate:
                kind = self._random.choice(kinds)
            if kind is not None:
                self.injected[kind] += 1
            return kind


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
    faulty: Callable[[Faults], AbstractContextManager[None]]  # the store's calls fail as `Faults` says
    rounds: Rounds | None = None  # how racing writers' requests are answered, on a store with requests
    # Makes a stored execution unreadable by this version of the service, as another version or a
    # hand edit could (a status it does not know, a field it cannot parse).
    spoil: Callable[[Execution], None] | None = None


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


def at_once(count: int, work: Callable[[int], T], rounds: Rounds | None = None) -> list[T]:
    """Run `work(0..count-1)` on as many threads released together, their requests in `rounds`
    when given; every result, or the first error raised."""
    start = threading.Barrier(count)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def run(index: int) -> None:
        if rounds is not None:
            rounds.join()
        start.wait()
        try:
            results[index] = work(index)
        except BaseException as error:  # noqa: BLE001 - handed to the test below
            errors.append(error)
        finally:
            if rounds is not None:
                rounds.leave()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a writer never finished"
    if errors:
        raise errors[0]
    return results


def racing(ports: Ports, count: int, work: Callable[[int], T]) -> list[T]:
    """`at_once`, with the backend's requests answered in rounds (see Rounds)."""
    return at_once(count, work, ports.rounds)


def outcomes(count: int, work: Callable[[int], T], rounds: Rounds | None = None) -> list[T | BaseException]:
    """As `at_once`, but what each call returned or raised, in order."""

    def caught(index: int) -> T | BaseException:
        try:
            return work(index)
        except Exception as error:  # noqa: BLE001 - the test looks at each
            return error

    return at_once(count, caught, rounds)


def counts(ports: Ports) -> dict[str, int]:
    """The statistics, with every counter present (a backend may leave out those never written)."""
    found = ports.statistics.stats()
    names = ("tasks", "jobs", "scheduled", *(status.value for status in ExecutionStatus))
    return {name: found.get(name, 0) for name in names}


def changed(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {name: after[name] - before[name] for name in after if after[name] != before[name]}
