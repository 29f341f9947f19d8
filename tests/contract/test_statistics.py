"""The Statistics port: exact counts of tasks, jobs, scheduled jobs and executions by status,
whatever writes ran, one after another or at once."""
from __future__ import annotations

import pytest

from chalicelib.domain.errors import DependencyDown
from chalicelib.domain.lifecycle import RETRYABLE
from chalicelib.domain.model import ExecutionStatus as S
from tests.contract.support import Ports, a_job, a_spec, an_execution, at_once, counts, maker, post


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


def test_a_store_out_of_reach_is_a_dependency_down(backend: Ports) -> None:
    with pytest.raises(DependencyDown):
        backend.unreachable().statistics.stats()
