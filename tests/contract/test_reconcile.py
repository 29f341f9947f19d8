"""What the reconciler relies on from the stores: launch generations taken once, the worklist of
ended executions that still hold a slot, conditional recounts, and no retry added to a stopped
job."""
from __future__ import annotations

from chalicelib.domain.model import ExecutionStatus as S
from chalicelib.domain.model import Placement, new_execution
from tests.contract.support import Ports, at_once, post

PLACEMENT = Placement(cluster="jobs-b", cpu="1024", memory="2048")


def test_a_launch_generation_is_taken_once_from_the_snapshot(backend: Ports) -> None:
    _, execution = post(backend)

    renewed = backend.executions.renew_launch(execution, due_at=123.0)
    assert renewed is not None and (renewed.launches, renewed.due_at) == (1, 123.0)
    assert backend.executions.renew_launch(execution) is None  # the snapshot's generation is gone
    stored = backend.executions.get_execution(execution.job_id, execution.execution_id)
    assert stored is not None and (stored.launches, stored.due_at) == (1, 123.0)
    again = backend.executions.renew_launch(stored, resends=1)
    assert again is not None and again.launches == 2 and again.resends == 1


def test_concurrent_renewals_of_one_generation_let_one_win(backend: Ports) -> None:
    _, execution = post(backend)
    won = at_once(8, lambda _: backend.executions.renew_launch(execution) is not None)
    assert won.count(True) == 1
    stored = backend.executions.get_execution(execution.job_id, execution.execution_id)
    assert stored is not None and stored.launches == 1


def test_an_execution_no_longer_launchable_takes_no_generation(backend: Ports) -> None:
    _, execution = post(backend)
    assert backend.executions.transition(execution, S.STOPPED) is not None
    assert backend.executions.renew_launch(execution) is None


def test_ended_executions_holding_a_slot_are_the_held_worklist(backend: Ports) -> None:
    _, holding = post(backend)
    _, released = post(backend)
    _, active = post(backend)
    for execution in (holding, released, active):
        backend.pools.take_slot(execution, "p", 0)
    snapshots = {e.execution_id: backend.executions.get_execution(e.job_id, e.execution_id)
                 for e in (holding, released, active)}
    for execution in (holding, released):
        moved = backend.executions.transition(snapshots[execution.execution_id], S.STOPPED)
        assert moved is not None
    ended = backend.executions.get_execution(released.job_id, released.execution_id)
    assert ended is not None and backend.pools.release_slot(ended)

    held = backend.executions.held_executions()
    assert [e.execution_id for e in held] == [holding.execution_id]
    assert held[0].status is S.STOPPED and held[0].pool == "p"


def test_a_slot_taken_after_the_snapshot_still_puts_the_ended_execution_on_the_worklist(backend: Ports) -> None:
    _, execution = post(backend)  # a snapshot without a slot
    backend.pools.take_slot(execution, "p", 0)
    assert backend.executions.transition(execution, S.STOPPED) is not None
    assert [e.execution_id for e in backend.executions.held_executions()] == [execution.execution_id]


def test_an_ended_execution_released_through_an_older_snapshot_leaves_the_worklist(backend: Ports) -> None:
    _, execution = post(backend)
    backend.pools.take_slot(execution, "p", 0)
    assert backend.executions.transition(execution, S.STOPPED) is not None
    assert backend.pools.release_slot(execution)  # the snapshot says enqueued
    assert backend.executions.held_executions() == []
    assert backend.pools.pool_running(["p"]) == {"p": 0}


def test_a_recount_is_conditional_on_the_count_seen(backend: Ports) -> None:
    for _ in range(2):
        backend.pools.take_slot(post(backend)[1], "r", 0)
    assert backend.pools.recount("r", 3, 1) is False  # the count is 2, not 3
    assert backend.pools.pool_running(["r"]) == {"r": 2}
    assert backend.pools.recount("r", 2, 1) is True
    assert backend.pools.pool_running(["r"]) == {"r": 1}
    assert backend.pools.recount("never-used", 0, 0) is True


def test_no_retry_is_added_to_a_job_stopped_meanwhile(backend: Ports) -> None:
    job, execution = post(backend)
    backend.jobs.set_job_stopped(job.job_id, True)

    moved = backend.executions.transition(execution, S.FAILED,
                                          follow_up=lambda current: new_execution(current, backend.clock(), placement=PLACEMENT))
    assert moved is not None and moved[1] is None
    stored = backend.jobs.get_job(job.job_id)
    assert stored is not None and stored.execution_count == 1 and stored.active == frozenset()


def test_frozen_launch_parameters_are_stored_with_the_execution(backend: Ports) -> None:
    job, execution = post(backend, placement=PLACEMENT)
    stored = backend.executions.get_execution(execution.job_id, execution.execution_id)
    assert stored is not None
    assert (stored.envs, stored.timeout, stored.expiration) == (execution.envs, execution.timeout,
                                                                execution.expiration)
    assert stored.spec.image == job.spec.image
    assert stored.placement == PLACEMENT
    _, older = post(backend)  # none frozen: its pool's apply
    again = backend.executions.get_execution(older.job_id, older.execution_id)
    assert again is not None and again.placement is None


def test_an_ending_to_announce_is_on_the_worklist_until_it_is_announced(backend: Ports) -> None:
    _, execution = post(backend)
    moved = backend.executions.transition(execution, S.STOPPED, announcing=True)
    assert moved is not None and moved[0].announcing
    held = backend.executions.held_executions()
    assert [(e.execution_id, e.announcing, e.pool) for e in held] == [(execution.execution_id, True, None)]

    assert backend.executions.update_execution(moved[0], None, notified=frozenset({"ended"}), announcing=False)
    assert backend.executions.held_executions() == []
    stored = backend.executions.get_execution(execution.job_id, execution.execution_id)
    assert stored is not None and not stored.announcing and stored.notified == frozenset({"ended"})


def test_a_slot_given_back_before_the_ending_is_announced_keeps_it_on_the_worklist(backend: Ports) -> None:
    _, execution = post(backend)
    backend.pools.take_slot(execution, "p", 0)
    moved = backend.executions.transition(
        backend.executions.get_execution(execution.job_id, execution.execution_id), S.TIMEDOUT, announcing=True)
    assert moved is not None and backend.pools.release_slot(moved[0])
    assert [e.execution_id for e in backend.executions.held_executions()] == [execution.execution_id]


def test_overdue_launches_are_those_due_before_the_moment_soonest_due_first(backend: Ports) -> None:
    base = backend.clock()
    due = {name: post(backend, **fields)[1] for name, fields in [
        ("long ago", {"created_at": base - 900}),  # no due time: due when made
        ("backing off", {"created_at": base - 3600, "due_at": base + 600}),  # old, but waiting out a delay
        ("lately", {"created_at": base - 60, "due_at": base - 300}),
        ("not yet", {"created_at": base - 10}),
    ]}
    _, holding = post(backend, created_at=base - 2000)  # holds a slot: a prepared one, listed apart
    backend.pools.take_slot(holding, "p", 0)
    post(backend, status=S.RUNNING, created_at=base - 5000)

    overdue = backend.executions.overdue_launches(base - 100, 10)

    assert [e.execution_id for e in overdue] == [due["long ago"].execution_id, due["lately"].execution_id]
    assert [e.execution_id for e in backend.executions.overdue_launches(base - 100, 1)] == [
        due["long ago"].execution_id]
    assert backend.executions.overdue_launches(base + 601, 10)[-1].execution_id == due["backing off"].execution_id


def test_a_launch_sent_again_or_made_leaves_the_overdue_launches(backend: Ports) -> None:
    base = backend.clock()
    _, resent = post(backend, created_at=base - 900)
    _, launched = post(backend, created_at=base - 800)
    _, ended = post(backend, created_at=base - 700)

    assert backend.executions.renew_launch(resent, due_at=base + 30) is not None
    assert backend.executions.transition(launched, S.PULLING, task_arn="arn:1") is not None
    assert backend.executions.transition(ended, S.STOPPED) is not None

    assert backend.executions.overdue_launches(base, 10) == []
    assert [e.execution_id for e in backend.executions.overdue_launches(base + 31, 10)] == [resent.execution_id]


def test_executions_prepared_with_a_slot_are_listed_apart_and_still_enqueued(backend: Ports) -> None:
    base = backend.clock()
    _, waiting = post(backend, created_at=base - 30)
    _, prepared = post(backend, created_at=base - 20)
    _, launched = post(backend, created_at=base - 10)
    for execution in (prepared, launched):
        assert backend.pools.take_slot(execution, "p", 0).value == "taken"
    holder = backend.executions.get_execution(launched.job_id, launched.execution_id)
    assert holder is not None and backend.executions.transition(holder, S.PULLING, task_arn="arn:2") is not None

    listed = backend.executions.prepared_executions()

    assert [(e.execution_id, e.pool, e.status) for e in listed] == [(prepared.execution_id, "p", S.ENQUEUED)]
    assert [e.execution_id for e in backend.executions.active_executions(S.ENQUEUED)] == [
        waiting.execution_id, prepared.execution_id]
    assert [e.execution_id for e in backend.executions.active_executions(S.ENQUEUED, limit=1)] == [
        waiting.execution_id]
    stored = backend.executions.get_execution(prepared.job_id, prepared.execution_id)
    assert stored is not None and backend.executions.transition(stored, S.STOPPED) is not None
    assert backend.executions.prepared_executions() == []


def test_a_worklist_carries_its_readable_records_past_one_it_cannot_read(backend: Ports) -> None:
    """A record this version cannot read (another version's status, a field cut short) does not
    hide the others from the reconciler: the listing raises UnreadableRecords carrying them."""
    import pytest

    from chalicelib.domain.errors import UnreadableRecords

    executions = [post(backend)[1] for _ in range(3)]
    for execution in executions:
        assert backend.executions.transition(execution, S.RUNNING, task_arn=f"arn:{execution.execution_id}",
                                             started_at=1.0) is not None
    assert backend.spoil is not None
    backend.spoil(executions[1])

    with pytest.raises(UnreadableRecords) as listed:
        backend.executions.active_executions(S.RUNNING)
    assert [e.execution_id for e in listed.value.readable] == [executions[0].execution_id, executions[2].execution_id]
    assert len(listed.value.keys) == 1 and executions[1].execution_id in listed.value.keys[0]
