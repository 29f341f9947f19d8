"""The Statistics port: exact counts of tasks, jobs, scheduled jobs and executions by status,
whatever writes ran, one after another or at once."""
from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chalicelib.domain.errors import Conflict, DependencyDown
from chalicelib.domain.lifecycle import RETRYABLE
from chalicelib.domain.model import Execution, Job, new_id
from chalicelib.domain.model import ExecutionStatus as S
from tests.contract.support import (
    Faults,
    Ports,
    a_job,
    a_spec,
    an_execution,
    at_once,
    changed,
    counts,
    maker,
    post,
    racing,
    randomized,
)


def test_an_empty_store_counts_nothing(backend: Ports) -> None:
    assert set(counts(backend).values()) == {0}


def test_tasks_jobs_and_executions_are_counted(backend: Ports) -> None:
    post(backend, "one")
    post(backend, "one", status=S.RUNNING)
    job, _ = post(backend, "two", status=S.DONE)
    backend.jobs.add_execution(job.job_id, maker())

    found = counts(backend)

    assert (found["tasks"], found["jobs"]) == (2, 3)
    assert (found["enqueued"], found["running"], found["done"]) == (2, 1, 1)
    assert sum(found[s.value] for s in S) == 4


def test_scheduled_jobs_are_counted_and_a_replacement_changes_the_count(backend: Ports) -> None:
    job = a_job(spec=a_spec(cron="* * * * *"), schedule_version="v1", next_run_at=2_000_000_000.0)
    backend.jobs.save_new_job(job, None)
    other = a_job(spec=a_spec(start_in="5m"))
    backend.jobs.save_new_job(other, None)
    assert counts(backend)["scheduled"] == 2

    now_only = a_job(job.task_id).with_changes(job_id=job.job_id)
    backend.jobs.replace_job(now_only, an_execution(now_only))

    found = counts(backend)
    assert (found["scheduled"], found["jobs"], found["enqueued"]) == (1, 2, 1)


def test_counts_stay_true_under_concurrent_writers(backend: Ports) -> None:
    """Eight clients each post jobs to a shared task and drive every execution to its end, some
    through a retry; the counts then equal what the executions say."""

    def client(index: int) -> list[tuple[str, str]]:
        made = []
        for n in range(3):
            job, execution = post(backend, "shared")
            made.append((job.job_id, execution.execution_id))
            running = backend.executions.transition(execution, S.RUNNING)
            assert running is not None
            end = [S.DONE, S.FAILED, S.TIMEDOUT][(index + n) % 3]
            moved = backend.executions.transition(running[0], end, follow_up=maker() if end in RETRYABLE else None)
            assert moved is not None
            if moved[1] is not None:
                made.append((job.job_id, moved[1].execution_id))
        return made

    made = [pair for pairs in at_once(8, client) for pair in pairs]

    statuses = [backend.executions.get_execution(job_id, execution_id) for job_id, execution_id in made]
    truth = {s.value: sum(e is not None and e.status is s for e in statuses) for s in S}
    found = counts(backend)
    assert {s.value: found[s.value] for s in S} == truth
    assert (found["tasks"], found["jobs"]) == (1, 24)
    assert truth["enqueued"] == 16  # the retries


def test_counts_stay_true_when_writers_race_on_one_job(backend: Ports) -> None:
    """Eight executions of one job end at once, the failed ones with a retry, while a client asks
    for another run: every write is made, and the counts are what the executions say."""
    job, first = post(backend, "racing")
    executions = [first] + [backend.jobs.add_execution(job.job_id, maker(S.RUNNING))[1] for _ in range(7)]
    ends = [S.DONE, S.FAILED, S.TIMEDOUT, S.STOPPED] * 2

    def end(index: int) -> Any:
        if index == len(executions):
            return backend.jobs.add_execution(job.job_id, maker())
        target = ends[index]
        return backend.executions.transition(executions[index], target,
                                             follow_up=maker() if target in RETRYABLE else None)

    results = racing(backend, len(executions) + 1, end)

    assert all(result is not None for result in results)
    stored = backend.jobs.get_job(job.job_id)
    assert stored is not None and (stored.execution_count, stored.retry_count) == (8 + 4 + 1, 4)
    listed = backend.executions.list_executions(job.job_id, 1, 50).items
    truth = {s.value: sum(e.status is s for e in listed) for s in S}
    assert {s.value: counts(backend)[s.value] for s in S} == truth
    assert (truth["enqueued"], truth["done"], truth["failed"]) == (4 + 1, 2, 2)
    assert stored.active == {e.execution_id for e in listed if not e.status.is_final}


# A step of the randomized test below: what it does, and the numbers it picks with.
STEPS = st.one_of(
    st.tuples(st.just("post"), st.integers(0, 2), st.sampled_from(["now", "cron", "once"])),
    st.tuples(st.just("post again"), st.integers(0, 50)),
    st.tuples(st.just("replace"), st.integers(0, 50), st.sampled_from(["now", "cron", "once"])),
    st.tuples(st.just("move"), st.integers(0, 50), st.sampled_from(list(S)), st.booleans()),
    st.tuples(st.just("run again"), st.integers(0, 50), st.booleans()),
    st.tuples(st.just("fire"), st.integers(0, 50), st.booleans()),
)


def _specified(task_id: str, kind: str, job_id: str | None = None) -> tuple[Job, Execution | None]:
    spec = {"now": a_spec(), "cron": a_spec(cron="* * * * *"), "once": a_spec(start_in="5m")}[kind]
    job = a_job(task_id, spec=spec)
    if job_id is not None:
        job = job.with_changes(job_id=job_id)
    if spec.scheduled:
        return job.with_changes(schedule_version=new_id(), next_run_at=2_000_000_000.0), None
    return job, an_execution(job)


def _stored_truth(backend: Ports, task_ids: list[str], job_ids: list[str]) -> dict[str, int]:
    """The counts that the stored tasks, jobs and executions call for, read without faults."""
    truth = dict.fromkeys(counts(backend), 0)
    for job_id in dict.fromkeys(job_ids):
        job = backend.jobs.get_job(job_id)
        if job is None:
            continue
        truth["jobs"] += 1
        truth["scheduled"] += int(job.spec.scheduled)
        executions = backend.executions.list_executions(job_id, 1, 1000).items
        assert len(executions) == job.execution_count  # a job's executions are numbered without holes
        for execution in executions:
            truth[execution.status.value] += 1
    first = backend.jobs.list_tasks(1, 100)
    pages = [first] + [backend.jobs.list_tasks(page, 100) for page in range(2, first.pages + 1)]
    truth["tasks"] = sum(task.task_id in task_ids for page in pages for task in page.items)
    return truth


def test_counts_equal_what_is_stored_after_writes_that_fail_at_any_point(backend: Ports) -> None:
    """Creates, replacements, transitions with and without retries, client retries and schedule
    firings, while the store's calls fail at random before, part-way through or after they take
    effect (or meet another transaction): afterwards the counts are what the stored tasks, jobs
    and executions call for, whatever failed."""

    @randomized(backend)
    @given(steps=st.lists(STEPS, min_size=1, max_size=30), seed=st.integers(0, 2**32 - 1))
    def check(steps: list[tuple[Any, ...]], seed: int) -> None:
        before = counts(backend)
        task_ids = [f"stats-{new_id()}" for _ in range(3)]
        job_ids: list[str] = []
        executions: list[Execution] = []
        ticks = iter(range(1, 1000))

        def step(action: str, pick: int, *more: Any) -> None:
            if action == "post":
                job, execution = _specified(task_ids[pick], more[0])
                job_ids.append(job.job_id)
                _, first = backend.jobs.save_new_job(job, execution)
                executions.extend([first] if first else [])
            elif not job_ids:
                return
            elif action == "post again":
                stored = backend.jobs.get_job(job_ids[pick % len(job_ids)])
                if stored is not None:
                    again, execution = _specified(stored.task_id, "now", stored.job_id)
                    backend.jobs.save_new_job(again, execution)
            elif action == "replace":
                stored = backend.jobs.get_job(job_ids[pick % len(job_ids)])
                if stored is not None:
                    replacement, execution = _specified(stored.task_id, more[0], stored.job_id)
                    _, added = backend.jobs.replace_job(replacement, execution)
                    executions.extend([added] if added else [])
            elif action == "move" and executions:
                target, retry = more
                moved = backend.executions.transition(executions[pick % len(executions)], target,
                                                      follow_up=maker() if retry else None)
                executions.extend([moved[0], moved[1]] if moved and moved[1] else [moved[0]] if moved else [])
            elif action == "run again":
                _, added = backend.jobs.add_execution(job_ids[pick % len(job_ids)], maker(), require_idle=more[0])
                executions.append(added)
            elif action == "fire":
                stored = backend.jobs.get_job(job_ids[pick % len(job_ids)])
                if stored is not None and stored.schedule_version is not None:
                    tick = None if stored.spec.cron is None else 1_900_000_000.0 + 60 * next(ticks)
                    taken = backend.schedules.take_schedule(stored.job_id, stored.schedule_version,
                                                            maker() if more[0] else None, tick_at=tick,
                                                            next_run_at=None if tick is None else tick + 60,
                                                            skipped=not more[0])
                    executions.extend([taken[1]] if taken and taken[1] else [])

        faults = Faults(rate=0.3, seed=seed)
        with backend.faulty(faults):
            for action in steps:
                try:
                    step(*action)
                except (DependencyDown, Conflict):
                    pass  # a fault of the test, or a write the store refuses (a job that exists, one that runs)

        truth = _stored_truth(backend, task_ids, job_ids)
        assert changed(before, counts(backend)) == {name: value for name, value in truth.items() if value}

    check()


def test_a_store_out_of_reach_is_a_dependency_down(backend: Ports) -> None:
    with pytest.raises(DependencyDown):
        backend.unreachable().statistics.stats()
