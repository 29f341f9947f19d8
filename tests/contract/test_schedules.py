"""The Schedules port: a firing is taken once (a stale version or a tick taken already is
refused), with the execution it adds; pending schedules are listed soonest first."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chalicelib.domain.errors import DependencyDown
from chalicelib.domain.model import ExecutionStatus as S
from chalicelib.domain.model import Job, new_id
from tests.contract.support import Ports, a_job, a_spec, at_once, changed, counts, maker, randomized

NEXT = 2_000_000_000.0


def scheduled(backend: Ports, version: str = "v1", next_run_at: float | None = NEXT, cron: str | None = None,
              task_id: str | None = None) -> Job:
    spec = a_spec(cron=cron) if cron else a_spec(start_at=NEXT)
    job = a_job(task_id, spec=spec, schedule_version=version, next_run_at=next_run_at)
    saved, _ = backend.jobs.save_new_job(job, None)
    return saved


# one-shot schedules -----------------------------------------------------------------------------


def test_a_one_shot_firing_adds_its_execution_and_ends_the_schedule(backend: Ports) -> None:
    job = scheduled(backend)
    make = maker(due_at=NEXT)
    before = counts(backend)

    taken = backend.schedules.take_schedule(job.job_id, "v1", make, tick_at=None, next_run_at=None)

    assert taken is not None
    _, added = taken
    assert added is not None and added.seq == 1 and added.due_at == NEXT
    assert [j.job_id for j in make.seen] == [job.job_id]  # type: ignore[attr-defined]
    stored = backend.jobs.get_job(job.job_id)
    assert stored is not None
    assert (stored.schedule_version, stored.next_run_at) == (None, None)
    assert (stored.execution_count, stored.active) == (1, frozenset({added.execution_id}))
    assert backend.executions.get_execution(job.job_id, added.execution_id) == added
    assert changed(before, counts(backend)) == {"enqueued": 1}
    assert backend.schedules.scheduled_jobs() == []


def test_a_one_shot_firing_is_taken_once(backend: Ports) -> None:
    job = scheduled(backend)
    assert backend.schedules.take_schedule(job.job_id, "v1", maker(), tick_at=None, next_run_at=None) is not None
    make = maker()

    assert backend.schedules.take_schedule(job.job_id, "v1", make, tick_at=None, next_run_at=None) is None
    assert make.seen == []  # type: ignore[attr-defined]
    stored = backend.jobs.get_job(job.job_id)
    assert stored is not None and stored.execution_count == 1


def test_a_firing_of_another_version_is_stale(backend: Ports) -> None:
    job = scheduled(backend, version="v2")
    before = counts(backend)

    assert backend.schedules.take_schedule(job.job_id, "v1", maker(), tick_at=None, next_run_at=None) is None
    assert backend.schedules.take_schedule(job.job_id, "v1", maker(), tick_at=NEXT, next_run_at=NEXT + 60) is None

    assert backend.jobs.get_job(job.job_id) == job
    assert counts(backend) == before


def test_a_firing_of_a_job_that_does_not_exist_is_stale(backend: Ports) -> None:
    assert backend.schedules.take_schedule(new_id(), "v1", maker(), tick_at=None, next_run_at=None) is None


def test_one_of_firings_taken_at_once_wins(backend: Ports) -> None:
    job = scheduled(backend)

    taken = at_once(8, lambda _: backend.schedules.take_schedule(job.job_id, "v1", maker(), tick_at=None,
                                                                 next_run_at=None))

    assert sum(t is not None for t in taken) == 1
    stored = backend.jobs.get_job(job.job_id)
    assert stored is not None and stored.execution_count == 1
    assert counts(backend)["enqueued"] == 1


# cron ticks -------------------------------------------------------------------------------------


def test_a_cron_tick_is_taken_once_and_sets_the_next_run(backend: Ports) -> None:
    job = scheduled(backend, cron="*/5 * * * *", next_run_at=NEXT)

    first = backend.schedules.take_schedule(job.job_id, "v1", maker(), tick_at=NEXT, next_run_at=NEXT + 300)
    again = backend.schedules.take_schedule(job.job_id, "v1", maker(), tick_at=NEXT, next_run_at=NEXT + 300)
    earlier = backend.schedules.take_schedule(job.job_id, "v1", maker(), tick_at=NEXT - 300, next_run_at=NEXT)
    later = backend.schedules.take_schedule(job.job_id, "v1", maker(), tick_at=NEXT + 300, next_run_at=NEXT + 600)

    assert (first is not None, again, earlier, later is not None) == (True, None, None, True)
    stored = backend.jobs.get_job(job.job_id)
    assert stored is not None
    assert (stored.schedule_version, stored.last_tick, stored.next_run_at) == ("v1", NEXT + 300, NEXT + 600)
    assert stored.execution_count == 2
    assert [j.job_id for j in backend.schedules.scheduled_jobs()] == [job.job_id]


def test_a_cron_tick_without_a_next_run_leaves_the_list_of_pending_schedules(backend: Ports) -> None:
    job = scheduled(backend, cron="0 0 1 1 *")

    assert backend.schedules.take_schedule(job.job_id, "v1", maker(), tick_at=NEXT, next_run_at=None) is not None

    stored = backend.jobs.get_job(job.job_id)
    assert stored is not None and (stored.next_run_at, stored.last_tick) == (None, NEXT)
    assert backend.schedules.scheduled_jobs() == []


def test_a_skipped_tick_is_counted_and_adds_no_execution(backend: Ports) -> None:
    job = scheduled(backend, cron="*/5 * * * *")
    before = counts(backend)

    taken = backend.schedules.take_schedule(job.job_id, "v1", None, tick_at=NEXT, next_run_at=NEXT + 300,
                                            skipped=True)

    assert taken is not None and taken[1] is None
    stored = backend.jobs.get_job(job.job_id)
    assert stored is not None
    assert (stored.skipped_ticks, stored.last_skipped_at, stored.last_tick) == (1, NEXT, NEXT)
    assert (stored.execution_count, stored.active) == (0, frozenset())
    assert counts(backend) == before


def test_a_cron_tick_that_finds_the_job_full_adds_nothing_and_is_counted_skipped(backend: Ports) -> None:
    job = scheduled(backend, cron="* * * * *")
    executions = [backend.schedules.take_schedule(job.job_id, "v1", maker(), tick_at=NEXT + 60 * n,
                                                  next_run_at=NEXT + 60 * (n + 1), max_active=2)
                  for n in range(2)]
    assert all(taken is not None and taken[1] is not None for taken in executions)
    before = counts(backend)
    make = maker()

    full = backend.schedules.take_schedule(job.job_id, "v1", make, tick_at=NEXT + 120, next_run_at=NEXT + 180,
                                           max_active=2)

    assert full is not None and full[1] is None and make.seen == []  # type: ignore[attr-defined]
    stored = backend.jobs.get_job(job.job_id)
    assert stored is not None
    assert (stored.skipped_ticks, stored.last_skipped_at, stored.last_tick, stored.next_run_at) == (
        1, NEXT + 120, NEXT + 120, NEXT + 180)
    assert (stored.execution_count, len(stored.active)) == (2, 2)
    assert counts(backend) == before
    first = executions[0][1]  # type: ignore[index]
    assert backend.executions.transition(first, S.PULLING) and backend.executions.transition(
        first.with_changes(status=S.PULLING), S.DONE, exit_code=0)  # one ends: room again
    again = backend.schedules.take_schedule(job.job_id, "v1", maker(), tick_at=NEXT + 180, next_run_at=NEXT + 240,
                                            max_active=2)
    assert again is not None and again[1] is not None


def test_ticks_in_any_order_are_taken_only_when_later_than_every_tick_taken(backend: Ports) -> None:
    @randomized(backend)
    @given(ticks=st.lists(st.integers(0, 6), min_size=1, max_size=12))
    def check(ticks: list[int]) -> None:
        job = scheduled(backend, cron="* * * * *")
        latest: float | None = None

        for tick in ticks:
            at = NEXT + 60 * tick
            taken = backend.schedules.take_schedule(job.job_id, "v1", maker(), tick_at=at, next_run_at=at + 60)
            assert (taken is not None) == (latest is None or at > latest), f"tick {tick} after {latest}"
            if taken is not None:
                latest = at

        stored = backend.jobs.get_job(job.job_id)
        assert stored is not None
        expected = sum(all(t > u for u in ticks[:i]) for i, t in enumerate(ticks))
        assert (stored.last_tick, stored.execution_count) == (latest, expected)

    check()


# ending and listing -----------------------------------------------------------------------------


def test_ending_a_schedule_forgets_any_version(backend: Ports) -> None:
    job = scheduled(backend)

    backend.schedules.end_schedule(job.job_id)

    stored = backend.jobs.get_job(job.job_id)
    assert stored is not None and (stored.schedule_version, stored.next_run_at) == (None, None)
    assert backend.schedules.take_schedule(job.job_id, "v1", maker(), tick_at=None, next_run_at=None) is None
    assert backend.schedules.scheduled_jobs() == []


def test_ending_one_version_leaves_another_pending(backend: Ports) -> None:
    job = scheduled(backend, version="v2")

    backend.schedules.end_schedule(job.job_id, "v1")
    kept = backend.jobs.get_job(job.job_id)
    backend.schedules.end_schedule(job.job_id, "v2")
    ended = backend.jobs.get_job(job.job_id)

    assert kept is not None and (kept.schedule_version, kept.next_run_at) == ("v2", NEXT)
    assert ended is not None and ended.schedule_version is None


def test_ending_the_schedule_of_a_job_that_does_not_exist_does_nothing(backend: Ports) -> None:
    backend.schedules.end_schedule(new_id())
    backend.schedules.end_schedule(new_id(), "v1")

    assert backend.jobs.list_tasks(1, 10).total == 0


def test_pending_schedules_are_listed_soonest_first(backend: Ports) -> None:
    runs = [NEXT + 30, NEXT + 10, NEXT + 20, NEXT + 40]
    jobs = {run: scheduled(backend, next_run_at=run) for run in runs}
    scheduled(backend, next_run_at=None)  # a version but no next run: not pending
    ended = scheduled(backend, next_run_at=NEXT + 5)
    backend.schedules.end_schedule(ended.job_id)
    taken = scheduled(backend, next_run_at=NEXT + 6)
    backend.schedules.take_schedule(taken.job_id, "v1", maker(), tick_at=None, next_run_at=None)

    listed = backend.schedules.scheduled_jobs()
    limited = backend.schedules.scheduled_jobs(limit=2)
    overdue = backend.schedules.scheduled_jobs(due_before=NEXT + 30)

    soonest = sorted(runs)
    assert [j.job_id for j in listed] == [jobs[r].job_id for r in soonest]
    assert [j.job_id for j in limited] == [jobs[r].job_id for r in soonest[:2]]
    assert [j.job_id for j in overdue] == [jobs[NEXT + 10].job_id, jobs[NEXT + 20].job_id]  # strictly before
    assert listed[0] == backend.jobs.get_job(jobs[NEXT + 10].job_id)


def test_a_running_execution_of_a_scheduled_job_is_in_its_active_set(backend: Ports) -> None:
    job = scheduled(backend, cron="* * * * *")
    taken = backend.schedules.take_schedule(job.job_id, "v1", maker(S.RUNNING), tick_at=NEXT, next_run_at=NEXT + 60)
    assert taken is not None and taken[1] is not None

    listed = backend.schedules.scheduled_jobs()

    assert [j.active for j in listed] == [{taken[1].execution_id}]


def test_a_store_out_of_reach_is_a_dependency_down(backend: Ports) -> None:
    job = scheduled(backend)
    gone = backend.unreachable()

    with pytest.raises(DependencyDown):
        gone.schedules.take_schedule(job.job_id, "v1", maker(), tick_at=None, next_run_at=None)
    with pytest.raises(DependencyDown):
        gone.schedules.scheduled_jobs()
