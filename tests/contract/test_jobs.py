"""The Jobs port: creating, replacing and listing tasks and jobs, their counts and sequence numbers."""
from __future__ import annotations

import pytest

from chalicelib.domain.errors import Conflict, DependencyDown, TooManyActive
from chalicelib.domain.model import ExecutionStatus as S
from chalicelib.domain.model import Hook, new_id
from tests.contract.support import (
    BEFORE,
    Faults,
    Ports,
    a_job,
    a_spec,
    an_execution,
    counts,
    maker,
    outcomes,
    post,
    racing,
)


def test_a_new_job_creates_its_task_and_is_stored_with_its_first_execution(backend: Ports) -> None:
    job = a_job(request_ip="10.0.0.7", retry_count=0)
    saved, first = backend.jobs.save_new_job(job, an_execution(job))

    assert first is not None and first.seq == 1
    assert (saved.seq, saved.execution_count, saved.active) == (1, 1, frozenset({first.execution_id}))
    assert backend.jobs.get_job(job.job_id) == saved
    task = backend.jobs.get_task(job.task_id)
    assert task is not None
    assert (task.seq, task.jobs_count, task.created_at, task.last_modified_at) == (1, 1, job.created_at, job.created_at)
    assert backend.executions.get_execution(job.job_id, first.execution_id) == first


def test_jobs_of_one_task_are_numbered_in_order_and_touch_the_task(backend: Ports) -> None:
    first, _ = post(backend, "numbered")
    later = a_job("numbered")
    later = later.with_changes(created_at=first.created_at + 5, last_modified_at=first.created_at + 5)
    saved, _ = backend.jobs.save_new_job(later, an_execution(later))

    assert (first.seq, saved.seq) == (1, 2)
    task = backend.jobs.get_task("numbered")
    assert task is not None
    assert (task.jobs_count, task.created_at, task.last_modified_at) == (2, first.created_at, later.created_at)


def test_a_scheduled_job_is_stored_without_an_execution(backend: Ports) -> None:
    job = a_job(spec=a_spec(cron="*/5 * * * *", timezone="Europe/Paris"), schedule_version="v1",
                next_run_at=2_000_000_000.0)
    saved, first = backend.jobs.save_new_job(job, None)

    assert first is None
    assert (saved.execution_count, saved.active) == (0, frozenset())
    stored = backend.jobs.get_job(job.job_id)
    assert stored == saved
    assert (stored.schedule_version, stored.next_run_at) == ("v1", 2_000_000_000.0)


def test_a_job_specification_is_kept_whole(backend: Ports) -> None:
    spec = a_spec(envs={"A": "1", "B": "é"}, metadata={"user": "ana", "tags": [1, 2, {"x": None}]}, retries=3,
                  timeout=30.5, expiration=2_000_000_000.25, overlap="forbid", cron="0 * * * *", timezone="UTC",
                  notify={"fails": ["ops@example.com"]},
                  webhooks={"succeeds": [Hook(url="https://example.com/h", headers={"X-Key": "k"}, retries=2)]})
    job = a_job(spec=spec)
    backend.jobs.save_new_job(job, None)

    stored = backend.jobs.get_job(job.job_id)
    assert stored is not None and stored.spec == spec


def test_a_job_that_exists_is_not_created_again(backend: Ports) -> None:
    job, _ = post(backend)
    before = counts(backend)

    with pytest.raises(Conflict):
        backend.jobs.save_new_job(job, an_execution(job))

    assert counts(backend) == before
    assert backend.jobs.get_job(job.job_id) == job
    task = backend.jobs.get_task(job.task_id)
    assert task is not None and task.jobs_count == 1


def test_what_does_not_exist_reads_as_none(backend: Ports) -> None:
    assert backend.jobs.get_job(new_id()) is None
    assert backend.jobs.get_task("never-posted") is None


# replacing --------------------------------------------------------------------------------------


def test_replacing_a_job_keeps_its_identity_and_executions_and_adds_one(backend: Ports) -> None:
    job, first = post(backend, "replaced", spec=a_spec(retries=2, cron="0 * * * *"),
                      job_fields={"schedule_version": "v1", "next_run_at": 2_000_000_000.0})
    first_ran = backend.executions.transition(first, S.FAILED, follow_up=maker())
    assert first_ran is not None and first_ran[1] is not None
    backend.jobs.set_job_stopped(job.job_id, True)
    taken = backend.schedules.take_schedule(job.job_id, "v1", None, tick_at=1_900_000_000.0,
                                            next_run_at=2_000_000_000.0, skipped=True)
    assert taken is not None
    current = backend.jobs.get_job(job.job_id)
    assert current is not None

    at = job.created_at + 60
    replacement = a_job("replaced", spec=a_spec(envs={"NEW": "1"})).with_changes(
        job_id=job.job_id, created_at=at, last_modified_at=at, request_ip="10.0.0.9")
    saved, added = backend.jobs.replace_job(replacement, an_execution(replacement))

    assert added is not None and added.seq == 3
    assert (saved.seq, saved.created_at, saved.last_modified_at) == (1, job.created_at, at)
    assert (saved.execution_count, saved.retry_count, saved.stopped) == (3, 0, False)
    assert saved.active == {first_ran[1].execution_id, added.execution_id}
    assert saved.last_tick == current.last_tick == 1_900_000_000.0  # a tick taken stays taken
    assert saved.spec == replacement.spec and saved.request_ip == "10.0.0.9"
    assert backend.jobs.get_job(job.job_id) == saved
    task = backend.jobs.get_task("replaced")
    assert task is not None and (task.jobs_count, task.last_modified_at) == (1, at)
    assert [e.seq for e in backend.executions.list_executions(job.job_id, 1, 10).items] == [3, 2, 1]


def test_replacing_a_job_without_an_execution_adds_none(backend: Ports) -> None:
    job, _ = post(backend)
    replacement = a_job(job.task_id, spec=a_spec(start_at=2_000_000_000.0)).with_changes(job_id=job.job_id)

    saved, added = backend.jobs.replace_job(replacement, None)

    assert added is None
    assert (saved.execution_count, saved.active) == (1, job.active)


@pytest.mark.parametrize("case", ["missing", "another task"])
def test_replacing_a_job_that_is_not_there_is_a_conflict(backend: Ports, case: str) -> None:
    job, _ = post(backend, "owner")
    if case == "missing":
        replacement = a_job("owner")
    else:
        replacement = a_job("intruder").with_changes(job_id=job.job_id)
    before = counts(backend)

    with pytest.raises(Conflict):
        backend.jobs.replace_job(replacement, an_execution(replacement))

    assert counts(backend) == before
    assert backend.jobs.get_job(job.job_id) == job


def test_a_replacement_that_would_run_a_full_job_is_refused_and_writes_nothing(backend: Ports) -> None:
    job, first = post(backend, "full")
    replacement = a_job("full").with_changes(job_id=job.job_id)
    _, second = backend.jobs.replace_job(replacement, an_execution(replacement), max_active=2)
    assert second is not None
    full = backend.jobs.get_job(job.job_id)
    assert full is not None and len(full.active) == 2
    before = counts(backend)

    with pytest.raises(TooManyActive):
        backend.jobs.replace_job(replacement, an_execution(replacement), max_active=2)
    with pytest.raises(Conflict):  # a conflict like any other (409)
        backend.jobs.replace_job(replacement, None, max_active=2)

    assert counts(backend) == before and backend.jobs.get_job(job.job_id) == full
    assert backend.executions.transition(first, S.DONE, exit_code=0) is not None  # one ends: room again
    saved, third = backend.jobs.replace_job(replacement, an_execution(replacement), max_active=2)
    assert third is not None and saved.active == {second.execution_id, third.execution_id}


# adding executions ------------------------------------------------------------------------------


def test_an_execution_added_to_a_job_is_its_next_and_sees_the_job(backend: Ports) -> None:
    job, first = post(backend)
    make = maker()

    changed, added = backend.jobs.add_execution(job.job_id, make)

    assert make.seen == [job]  # type: ignore[attr-defined]
    assert added.seq == 2
    assert (changed.execution_count, changed.active) == (2, frozenset({first.execution_id, added.execution_id}))
    stored = backend.jobs.get_job(job.job_id)
    assert stored is not None and (stored.execution_count, stored.active) == (2, changed.active)
    assert backend.executions.get_execution(job.job_id, added.execution_id) == added


def test_a_job_with_a_running_execution_is_not_given_another_when_it_must_be_idle(backend: Ports) -> None:
    job, _ = post(backend, status=S.RUNNING)
    before = counts(backend)

    with pytest.raises(Conflict):
        backend.jobs.add_execution(job.job_id, maker(), require_idle=True)

    assert counts(backend) == before
    assert backend.jobs.get_job(job.job_id) == job


def test_an_idle_stopped_job_runs_again_when_asked_and_is_no_longer_stopped(backend: Ports) -> None:
    job, _ = post(backend, status=S.STOPPED)
    backend.jobs.set_job_stopped(job.job_id, True)

    _, added = backend.jobs.add_execution(job.job_id, maker(), require_idle=True, clear_stopped=True)

    stored = backend.jobs.get_job(job.job_id)
    assert stored is not None
    assert (stored.stopped, stored.execution_count, stored.active) == (False, 2, frozenset({added.execution_id}))


def test_adding_an_execution_to_a_job_that_does_not_exist_is_a_conflict(backend: Ports) -> None:
    with pytest.raises(Conflict):
        backend.jobs.add_execution(new_id(), maker())


def test_a_job_is_stopped_and_unstopped(backend: Ports) -> None:
    job, _ = post(backend)
    backend.jobs.set_job_stopped(job.job_id, True)
    stopped = backend.jobs.get_job(job.job_id)
    backend.jobs.set_job_stopped(job.job_id, False)
    unstopped = backend.jobs.get_job(job.job_id)

    assert stopped is not None and stopped.stopped
    assert unstopped is not None and not unstopped.stopped


# pages ------------------------------------------------------------------------------------------


def test_tasks_are_listed_oldest_first_in_pages_counted_by_a_counter(backend: Ports) -> None:
    names = [f"task-{i}" for i in range(5)]
    for name in names:
        post(backend, name)
        post(backend, name)  # a second job does not make a second task

    pages = [backend.jobs.list_tasks(page, 2) for page in (1, 2, 3, 4)]

    assert [[t.task_id for t in p.items] for p in pages] == [names[0:2], names[2:4], names[4:], []]
    assert [(p.total, p.pages, p.has_prev, p.has_next) for p in pages[:3]] == [
        (5, 3, False, True), (5, 3, True, True), (5, 3, True, False)]
    assert [t.seq for p in pages for t in p.items] == [1, 2, 3, 4, 5]


def test_a_tasks_jobs_are_listed_oldest_first_in_pages(backend: Ports) -> None:
    jobs = [post(backend, "paged")[0] for _ in range(5)]
    post(backend, "another")

    pages = [backend.jobs.list_jobs("paged", page, 2) for page in (1, 2, 3, 4)]

    assert [[j.job_id for j in p.items] for p in pages] == [
        [jobs[0].job_id, jobs[1].job_id], [jobs[2].job_id, jobs[3].job_id], [jobs[4].job_id], []]
    assert {p.total for p in pages} == {5}
    assert pages[0].items[0] == backend.jobs.get_job(jobs[0].job_id)  # with its active set


def test_the_jobs_of_a_task_that_does_not_exist_are_an_empty_page(backend: Ports) -> None:
    page = backend.jobs.list_jobs("nobody", 1, 10)

    assert (page.items, page.total, page.pages) == ([], 0, 0)


# concurrency and errors -------------------------------------------------------------------------


def _listed_jobs(backend: Ports, task_id: str, per_page: int = 10) -> list[str]:
    first = backend.jobs.list_jobs(task_id, 1, per_page)
    pages = [first] + [backend.jobs.list_jobs(task_id, page, per_page) for page in range(2, first.pages + 1)]
    return [job.job_id for page in pages for job in page.items]


def _listed_tasks(backend: Ports, per_page: int = 10) -> list[str]:
    first = backend.jobs.list_tasks(1, per_page)
    pages = [first] + [backend.jobs.list_tasks(page, per_page) for page in range(2, first.pages + 1)]
    return [task.task_id for page in pages for task in page.items]


@pytest.mark.parametrize("task", ["new", "known"])
def test_jobs_posted_to_one_task_at_once_are_all_stored_and_numbered_densely(backend: Ports, task: str) -> None:
    """32 clients post to one task at once, their reads all answered before their writes: every
    post is stored (none is refused for contention), numbered once, and listed once."""
    known = [post(backend, "crowded")[0]] if task == "known" else []
    jobs = [a_job("crowded") for _ in range(32)]

    saved = racing(backend, 32, lambda i: backend.jobs.save_new_job(jobs[i], an_execution(jobs[i])))

    numbers = sorted(job.seq for job, _ in saved)
    assert numbers == list(range(len(known) + 1, len(known) + 33))
    stored = backend.jobs.get_task("crowded")
    assert stored is not None and stored.jobs_count == len(known) + 32
    listed = _listed_jobs(backend, "crowded")
    assert sorted(listed) == sorted(job.job_id for job in known + jobs)  # each once
    assert _listed_tasks(backend) == ["crowded"]
    found = counts(backend)
    assert (found["tasks"], found["jobs"], found["enqueued"]) == (1, 32 + len(known), 32 + len(known))


def test_new_tasks_created_at_once_are_all_stored_and_numbered_densely(backend: Ports) -> None:
    names = [f"parallel-{i}" for i in range(32)]

    racing(backend, 32, lambda i: post(backend, names[i]))

    listed = backend.jobs.list_tasks(1, 40)
    assert listed.total == 32 and sorted(t.seq for t in listed.items) == list(range(1, 33))
    assert sorted(_listed_tasks(backend, per_page=5)) == sorted(names)
    assert (counts(backend)["tasks"], counts(backend)["jobs"]) == (32, 32)


def test_a_job_posted_several_times_at_once_is_stored_once(backend: Ports) -> None:
    job = a_job()

    results = outcomes(8, lambda _: backend.jobs.save_new_job(job, an_execution(job)), backend.rounds)

    assert sum(not isinstance(result, BaseException) for result in results) == 1
    assert all(isinstance(result, Conflict) for result in results if isinstance(result, BaseException))
    assert _listed_jobs(backend, job.task_id) == [job.job_id]
    assert _listed_tasks(backend) == [job.task_id]
    found = counts(backend)
    assert (found["tasks"], found["jobs"], found["enqueued"]) == (1, 1, 1)


def test_a_task_whose_first_post_failed_is_listed_with_a_later_one(backend: Ports) -> None:
    """A post that failed leaves nothing to see; the next post to the task an hour later makes it
    a listed task, with only that job."""
    failed = a_job()
    with backend.faulty(Faults(transactions=[BEFORE])), pytest.raises(DependencyDown):
        backend.jobs.save_new_job(failed, an_execution(failed))
    at = failed.created_at + 3600
    later = a_job(failed.task_id).with_changes(created_at=at, last_modified_at=at)

    saved, _ = backend.jobs.save_new_job(later, an_execution(later))

    assert backend.jobs.get_job(failed.job_id) is None
    assert _listed_jobs(backend, failed.task_id) == [later.job_id]
    assert _listed_tasks(backend) == [failed.task_id]
    found = counts(backend)
    assert (found["tasks"], found["jobs"], found["enqueued"]) == (1, 1, 1)


def test_a_store_out_of_reach_is_a_dependency_down(backend: Ports) -> None:
    gone = backend.unreachable()
    job = a_job()

    with pytest.raises(DependencyDown):
        gone.jobs.ping()
    with pytest.raises(DependencyDown):
        gone.jobs.get_job(job.job_id)
    with pytest.raises(DependencyDown):
        gone.jobs.save_new_job(job, an_execution(job))
    with pytest.raises(DependencyDown):
        gone.jobs.list_tasks(1, 10)


def test_a_store_in_reach_answers_ping(backend: Ports) -> None:
    backend.jobs.ping()
