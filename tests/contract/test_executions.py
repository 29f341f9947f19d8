"""The Executions port: conditional transitions (what the lifecycle allows, nothing else), retries
added with them, field updates, notification records, reads and pages."""
from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chalicelib.domain.errors import DependencyDown
from chalicelib.domain.lifecycle import can_move
from chalicelib.domain.model import ACTIVE_STATUSES, Execution, new_id
from chalicelib.domain.model import ExecutionStatus as S
from tests.contract.support import Ports, at_once, changed, counts, maker, post, randomized

PAIRS = list(itertools.product(S, S))


def test_every_move_the_lifecycle_allows_is_made_and_every_other_changes_nothing(backend: Ports) -> None:
    for current, target in PAIRS:
        job, execution = post(backend, status=current)
        before = counts(backend)

        moved = backend.executions.transition(execution, target, error=f"to {target.value}", finished_at=123.5)

        stored = backend.executions.get_execution(job.job_id, execution.execution_id)
        active = backend.jobs.get_job(job.job_id)
        assert active is not None
        if can_move(current, target):
            assert moved is not None, f"{current.value} -> {target.value} was refused"
            assert moved[0] == stored, f"{current.value} -> {target.value}"
            assert moved[1] is None
            assert stored is not None and (stored.status, stored.error, stored.finished_at) == (
                target, f"to {target.value}", 123.5)
            assert changed(before, counts(backend)) == {current.value: -1, target.value: 1}
            assert active.active == (frozenset() if target.is_final else {execution.execution_id})
        else:
            assert moved is None, f"{current.value} -> {target.value} was made"
            assert stored == execution, f"{current.value} -> {target.value} changed the execution"
            assert counts(backend) == before, f"{current.value} -> {target.value} changed the counts"
            assert active.active == (frozenset() if current.is_final else {execution.execution_id})


def test_the_condition_is_the_stored_status_not_the_callers_snapshot(backend: Ports) -> None:
    job, enqueued = post(backend)
    assert backend.executions.transition(enqueued, S.RUNNING) is not None

    # The caller still holds the enqueued snapshot: a move from `enqueued` only is refused.
    assert backend.executions.transition(enqueued, S.PULLING) is None
    moved = backend.executions.transition(enqueued, S.DONE, exit_code=0)

    assert moved is not None
    stored = backend.executions.get_execution(job.job_id, enqueued.execution_id)
    assert stored is not None and (stored.status, stored.exit_code) == (S.DONE, 0)
    assert counts(backend)["running"] == 0 and counts(backend)["done"] == 1


def test_a_duplicate_event_moves_nothing_the_second_time(backend: Ports) -> None:
    _, execution = post(backend, status=S.RUNNING)

    first = backend.executions.transition(execution, S.DONE, exit_code=0)
    second = backend.executions.transition(execution, S.DONE, exit_code=0)

    assert first is not None and second is None
    assert counts(backend)["done"] == 1


def test_a_transition_sets_removes_and_keeps_fields(backend: Ports) -> None:
    job, execution = post(backend, due_at=1_000.0)
    backend.executions.transition(execution, S.PULLING, task_arn="arn:aws:ecs:task/1", launched_at=1_001.5)

    moved = backend.executions.transition(execution, S.RUNNING, due_at=None, started_at=1_002.25,
                                          notified=frozenset({"started"}))

    stored = backend.executions.get_execution(job.job_id, execution.execution_id)
    assert moved is not None and moved[0] == stored
    assert stored is not None
    assert (stored.due_at, stored.started_at, stored.launched_at, stored.task_arn, stored.notified) == (
        None, 1_002.25, 1_001.5, "arn:aws:ecs:task/1", frozenset({"started"}))


def test_an_execution_that_does_not_exist_does_not_move(backend: Ports) -> None:
    job, execution = post(backend)
    ghost = execution.with_changes(execution_id=new_id())

    assert backend.executions.transition(ghost, S.RUNNING) is None
    assert backend.executions.get_execution(job.job_id, ghost.execution_id) is None


# retries ----------------------------------------------------------------------------------------


def test_a_failure_with_a_follow_up_adds_the_retry_in_the_same_write(backend: Ports) -> None:
    job, execution = post(backend, status=S.RUNNING)
    make = maker(due_at=5_000.0)

    moved = backend.executions.transition(execution, S.FAILED, follow_up=make, exit_code=3)

    assert moved is not None
    failed, retry = moved
    assert retry is not None and retry.seq == 2 and retry.status is S.ENQUEUED and retry.due_at == 5_000.0
    assert failed.status is S.FAILED and failed.exit_code == 3
    seen = make.seen  # type: ignore[attr-defined]
    assert len(seen) == 1 and seen[0].job_id == job.job_id and seen[0].retry_count == 0
    stored = backend.jobs.get_job(job.job_id)
    assert stored is not None
    assert (stored.execution_count, stored.retry_count, stored.active) == (2, 1, frozenset({retry.execution_id}))
    assert backend.executions.get_execution(job.job_id, retry.execution_id) == retry
    assert counts(backend)["failed"] == 1 and counts(backend)["enqueued"] == 1 and counts(backend)["running"] == 0


def test_retries_are_counted_one_by_one(backend: Ports) -> None:
    job, execution = post(backend, status=S.RUNNING)
    for _ in range(3):
        moved = backend.executions.transition(execution, S.TIMEDOUT, follow_up=maker(S.RUNNING))
        assert moved is not None and moved[1] is not None
        execution = moved[1]

    stored = backend.jobs.get_job(job.job_id)
    assert stored is not None and (stored.retry_count, stored.execution_count) == (3, 4)
    assert stored.active == {execution.execution_id}


def test_a_refused_transition_adds_no_retry(backend: Ports) -> None:
    job, execution = post(backend, status=S.DONE)
    make = maker()
    before = counts(backend)

    assert backend.executions.transition(execution, S.FAILED, follow_up=make) is None

    assert make.seen == []  # type: ignore[attr-defined]
    assert counts(backend) == before
    assert backend.jobs.get_job(job.job_id) == job


def test_only_one_of_racing_duplicate_events_moves_the_execution_and_adds_a_retry(backend: Ports) -> None:
    job, execution = post(backend, status=S.RUNNING)

    results = at_once(8, lambda _: backend.executions.transition(execution, S.FAILED, follow_up=maker()))

    assert sum(result is not None for result in results) == 1
    stored = backend.jobs.get_job(job.job_id)
    assert stored is not None and (stored.execution_count, stored.retry_count, len(stored.active)) == (2, 1, 1)
    assert counts(backend)["failed"] == 1 and counts(backend)["enqueued"] == 1


def test_any_sequence_of_transitions_keeps_counts_and_the_active_set_true(backend: Ports) -> None:
    @randomized(backend)
    @given(steps=st.lists(st.tuples(st.integers(0, 7), st.sampled_from(list(S)), st.booleans()), max_size=20))
    def check(steps: list[tuple[int, S, bool]]) -> None:
        before = counts(backend)
        job, first = post(backend)
        executions = [first] + [backend.jobs.add_execution(job.job_id, maker())[1] for _ in range(2)]
        truth = {e.execution_id: e.status for e in executions}
        retries = 0

        for pick, target, retry in steps:
            execution = executions[pick % len(executions)]
            moved = backend.executions.transition(execution, target, follow_up=maker() if retry else None)
            allowed = can_move(truth[execution.execution_id], target)
            assert (moved is not None) == allowed
            if moved is not None:
                truth[execution.execution_id] = target
                if moved[1] is not None:
                    executions.append(moved[1])
                    truth[moved[1].execution_id] = moved[1].status
                    retries += 1

        expected = {status.value: sum(s is status for s in truth.values()) for status in S}
        expected["jobs"] = 1
        expected["tasks"] = 1
        assert changed(before, counts(backend)) == {k: v for k, v in expected.items() if v}
        stored = backend.jobs.get_job(job.job_id)
        assert stored is not None
        assert stored.active == {i for i, status in truth.items() if status in ACTIVE_STATUSES}
        assert (stored.execution_count, stored.retry_count) == (len(truth), retries)
        found = {i: backend.executions.get_execution(job.job_id, i) for i in truth}
        assert {i: e.status if e else None for i, e in found.items()} == truth

    check()


# updates ----------------------------------------------------------------------------------------


def test_fields_are_updated_without_moving_the_status(backend: Ports) -> None:
    job, execution = post(backend, due_at=10.0)

    assert backend.executions.update_execution(execution, None, due_at=None, task_arn="arn:1",
                                               notified=frozenset({"started", "ended"}))

    stored = backend.executions.get_execution(job.job_id, execution.execution_id)
    assert stored == execution.with_changes(due_at=None, task_arn="arn:1", notified=frozenset({"started", "ended"}))


def test_an_update_conditional_on_the_status_is_made_only_in_that_status(backend: Ports) -> None:
    job, execution = post(backend, status=S.STOPPED)

    refused = backend.executions.update_execution(execution, frozenset({S.ENQUEUED}), due_at=5.0)
    made = backend.executions.update_execution(execution, frozenset({S.STOPPED, S.TIMEDOUT}), exit_code=137)

    assert (refused, made) == (False, True)
    stored = backend.executions.get_execution(job.job_id, execution.execution_id)
    assert stored is not None and (stored.due_at, stored.exit_code, stored.status) == (None, 137, S.STOPPED)


def test_an_update_of_an_execution_that_does_not_exist_is_refused(backend: Ports) -> None:
    job, execution = post(backend)
    ghost = execution.with_changes(execution_id=new_id())

    assert backend.executions.update_execution(ghost, None, due_at=1.0) is False
    assert backend.executions.get_execution(job.job_id, ghost.execution_id) is None


def test_notification_records_keep_the_newest(backend: Ports) -> None:
    job, execution = post(backend)

    for n in range(6):
        backend.executions.record_notification(job.job_id, execution.execution_id, {"n": n, "ok": n % 2 == 0}, keep=4)

    stored = backend.executions.get_execution(job.job_id, execution.execution_id)
    assert stored is not None
    assert stored.notifications == ({"n": 2, "ok": True}, {"n": 3, "ok": False}, {"n": 4, "ok": True},
                                    {"n": 5, "ok": False})


def test_notification_records_written_at_once_are_all_kept(backend: Ports) -> None:
    job, execution = post(backend)

    at_once(8, lambda n: backend.executions.record_notification(job.job_id, execution.execution_id, {"n": n}))

    stored = backend.executions.get_execution(job.job_id, execution.execution_id)
    assert stored is not None and sorted(entry["n"] for entry in stored.notifications) == list(range(8))


# reads ------------------------------------------------------------------------------------------


def test_an_execution_is_read_by_its_key(backend: Ports) -> None:
    job, execution = post(backend, metadata={"retryOf": "x"}, request_ip="10.1.1.1")

    assert backend.executions.get_execution(execution.job_id, execution.execution_id) == execution
    assert backend.executions.get_execution(new_id(), execution.execution_id) is None  # another job's key


def _executions(backend: Ports, count: int) -> tuple[str, list[Execution]]:
    job, first = post(backend, status=S.DONE)
    added = [first]
    for _ in range(count - 1):
        added.append(backend.jobs.add_execution(job.job_id, maker(S.DONE))[1])
    return job.job_id, added


def test_a_jobs_executions_are_listed_newest_first_in_pages(backend: Ports) -> None:
    job_id, executions = _executions(backend, 5)

    pages = [backend.executions.list_executions(job_id, page, 2) for page in (1, 2, 3, 4)]

    assert [[e.seq for e in p.items] for p in pages] == [[5, 4], [3, 2], [1], []]
    assert {p.total for p in pages} == {5}
    assert pages[0].items[0] == executions[4]


def test_a_page_of_executions_uses_the_total_it_is_given(backend: Ports) -> None:
    job_id, _ = _executions(backend, 5)

    page = backend.executions.list_executions(job_id, 1, 2, total=3)  # as the job read a moment ago

    assert ([e.seq for e in page.items], page.total) == ([3, 2], 3)


def test_the_executions_of_a_job_that_does_not_exist_are_an_empty_page(backend: Ports) -> None:
    page = backend.executions.list_executions(new_id(), 1, 10)

    assert (page.items, page.total) == ([], 0)


def test_the_reconcilers_worklist_is_one_status_oldest_first(backend: Ports) -> None:
    base = 1_700_000_000.0
    made = {offset: post(backend, status=status, created_at=base + offset)[1]
            for offset, status in [(3, S.ENQUEUED), (1, S.ENQUEUED), (2, S.RUNNING), (0, S.DONE), (4, S.ENQUEUED)]}

    enqueued = backend.executions.active_executions(S.ENQUEUED)
    assert [e.execution_id for e in enqueued] == [made[1].execution_id, made[3].execution_id, made[4].execution_id]
    assert [e.execution_id for e in backend.executions.active_executions(S.RUNNING)] == [made[2].execution_id]
    assert [e.execution_id for e in backend.executions.active_executions(S.ENQUEUED, limit=2)] == [
        made[1].execution_id, made[3].execution_id]
    assert backend.executions.active_executions(S.DONE) == []

    backend.executions.transition(made[1], S.PULLING)
    assert [e.execution_id for e in backend.executions.active_executions(S.ENQUEUED)] == [
        made[3].execution_id, made[4].execution_id]
    assert [e.execution_id for e in backend.executions.active_executions(S.PULLING)] == [made[1].execution_id]


def test_a_store_out_of_reach_is_a_dependency_down(backend: Ports) -> None:
    _, execution = post(backend)
    gone = backend.unreachable()

    with pytest.raises(DependencyDown):
        gone.executions.get_execution(execution.job_id, execution.execution_id)
    with pytest.raises(DependencyDown):
        gone.executions.transition(execution, S.RUNNING)
    with pytest.raises(DependencyDown):
        gone.executions.active_executions(S.ENQUEUED)


def test_an_ending_that_releases_the_slot_gives_it_back_in_the_same_write(backend: Ports) -> None:
    _, execution = post(backend)
    assert backend.pools.take_slot(execution, "ending", 1).value == "taken"
    holder = backend.executions.get_execution(execution.job_id, execution.execution_id)
    assert holder is not None
    running = backend.executions.transition(holder, S.RUNNING)
    assert running is not None

    moved = backend.executions.transition(running[0], S.DONE, exit_code=0, release_slot=True)

    assert moved is not None and moved[0].pool is None
    assert backend.pools.pool_running(["ending"]) == {"ending": 0}
    stored = backend.executions.get_execution(execution.job_id, execution.execution_id)
    assert stored is not None and (stored.status, stored.pool) == (S.DONE, None)
    assert backend.executions.held_executions() == []  # nothing left for the reconciler
    assert backend.pools.release_slot(stored) is False  # given back once


def test_an_ending_that_releases_no_slot_keeps_it_held(backend: Ports) -> None:
    _, execution = post(backend)
    backend.pools.take_slot(execution, "kept", 1)
    holder = backend.executions.get_execution(execution.job_id, execution.execution_id)
    assert holder is not None

    moved = backend.executions.transition(holder, S.STOPPED, error="stopped by a client")

    assert moved is not None and moved[0].pool == "kept"
    assert backend.pools.pool_running(["kept"]) == {"kept": 1}
    assert [e.execution_id for e in backend.executions.held_executions()] == [execution.execution_id]


def test_a_start_conditional_on_the_job_is_refused_once_the_job_is_stopped(backend: Ports) -> None:
    job, execution = post(backend, status=S.PULLING)
    before = counts(backend)
    backend.jobs.set_job_stopped(job.job_id, True)

    assert backend.executions.transition(execution, S.RUNNING, unless_job_stopped=True) is None
    stored = backend.executions.get_execution(job.job_id, execution.execution_id)
    assert stored == execution and counts(backend) == before

    backend.jobs.set_job_stopped(job.job_id, False)
    moved = backend.executions.transition(execution, S.RUNNING, unless_job_stopped=True, started_at=5.0)
    assert moved is not None and moved[0].status is S.RUNNING


def test_a_transition_answers_the_watched_flag_as_stored(backend: Ports) -> None:
    job, execution = post(backend, status=S.RUNNING)
    assert execution.watched is False
    assert backend.executions.update_execution(execution, None, watched=True)

    # The caller's snapshot predates the subscriber: the moved execution says it is watched.
    moved = backend.executions.transition(execution, S.DONE, exit_code=0)

    assert moved is not None and moved[0].watched is True
    stored = backend.executions.get_execution(job.job_id, execution.execution_id)
    assert stored is not None and stored.watched is True and stored.status is S.DONE


def test_a_retry_made_from_the_callers_job_is_still_conditional_on_the_stored_job(backend: Ports) -> None:
    job, execution = post(backend, status=S.RUNNING)
    stale = job
    # Another execution was added since the caller read the job: its snapshot is stale.
    _, second = backend.jobs.add_execution(job.job_id, maker())
    make = maker()

    moved = backend.executions.transition(execution, S.FAILED, follow_up=make, job=stale)

    assert moved is not None and moved[1] is not None
    stored = backend.jobs.get_job(job.job_id)
    assert stored is not None and stored.execution_count == 3 and moved[1].seq == 3
    assert stored.active == {second.execution_id, moved[1].execution_id}
    assert make.seen[-1].execution_count == 2  # the retry kept is built from the stored job
