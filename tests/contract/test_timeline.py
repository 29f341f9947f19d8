"""The execution timeline on the Executions port: an entry a write carries is added to the
timeline the write finds stored, in that same write, whatever the caller's snapshot holds."""
from __future__ import annotations

from chalicelib.domain import timeline as timelines
from chalicelib.domain.model import ExecutionStatus as S
from tests.contract.support import Ports, maker, post


def statuses(backend: Ports, job_id: str, execution_id: str) -> list[str]:
    stored = backend.executions.get_execution(job_id, execution_id)
    assert stored is not None
    return [entry["status"] for entry in stored.timeline]


def test_a_new_execution_keeps_its_accepted_entry(backend: Ports) -> None:
    accepted = timelines.accepted(10.0, timelines.POSTED)
    job, execution = post(backend, timeline=(accepted,))
    stored = backend.executions.get_execution(job.job_id, execution.execution_id)
    assert stored is not None and stored.timeline == (accepted,)


def test_each_move_adds_its_entry_in_the_same_write(backend: Ports) -> None:
    job, execution = post(backend, timeline=(timelines.accepted(10.0, timelines.POSTED),))
    pulled = backend.executions.transition(execution, S.PULLING, task_arn="arn:task/1",
                                           timeline_entry=timelines.entry(11.0, timelines.PULLING))
    assert pulled is not None
    assert [entry["status"] for entry in pulled[0].timeline] == ["accepted", "pulling"]
    running = backend.executions.transition(pulled[0], S.RUNNING, timeline_entry=timelines.entry(
        12.0, timelines.RUNNING, pullStartedAt=11.2, pullStoppedAt=11.9))
    assert running is not None
    ended = backend.executions.transition(running[0], S.FAILED, exit_code=3,
                                          timeline_entry=timelines.ended(13.0, "failed", exit_code=3, cause="exit"))
    assert ended is not None
    stored = backend.executions.get_execution(job.job_id, execution.execution_id)
    assert stored is not None and stored.timeline == ended[0].timeline
    assert stored.timeline[1:] == (
        {"at": 11.0, "status": "pulling"},
        {"at": 12.0, "status": "running", "pullStartedAt": 11.2, "pullStoppedAt": 11.9},
        {"at": 13.0, "status": "failed", "exitCode": 3, "cause": "exit"})


def test_a_refused_move_adds_nothing(backend: Ports) -> None:
    job, execution = post(backend, status=S.DONE, timeline=(timelines.accepted(10.0, timelines.POSTED),))
    assert backend.executions.transition(execution, S.RUNNING, timeline_entry=timelines.entry(11.0, "running")) is None
    assert statuses(backend, job.job_id, execution.execution_id) == ["accepted"]


def test_a_stale_snapshot_extends_the_stored_timeline_and_loses_no_entry(backend: Ports) -> None:
    job, snapshot = post(backend, timeline=(timelines.accepted(10.0, timelines.POSTED),))
    waited = backend.executions.renew_launch(snapshot, due_at=20.0, waiting_for="a slot",
                                             timeline_entry=timelines.entry(11.0, timelines.WAITING, "a slot"))
    assert waited is not None and [entry["status"] for entry in waited.timeline] == ["accepted", "waiting"]

    # The caller still holds the snapshot from before the wait: its stop keeps the wait's entry.
    moved = backend.executions.transition(snapshot, S.STOPPED, timeline_entry=timelines.ended(12.0, "stopped"))
    assert moved is not None
    assert statuses(backend, job.job_id, snapshot.execution_id) == ["accepted", "waiting", "stopped"]
    assert [entry["status"] for entry in moved[0].timeline] == ["accepted", "waiting", "stopped"]


def test_a_wait_for_the_same_reason_is_counted_not_repeated(backend: Ports) -> None:
    job, execution = post(backend, timeline=(timelines.accepted(10.0, timelines.POSTED),))
    for at in (11.0, 12.0, 13.0):
        renewed = backend.executions.renew_launch(execution, due_at=at + 1, waiting_for="a slot",
                                                  timeline_entry=timelines.entry(at, timelines.WAITING, "a slot"))
        assert renewed is not None
        execution = renewed
    stored = backend.executions.get_execution(job.job_id, execution.execution_id)
    assert stored is not None and stored.timeline[1:] == (
        {"at": 11.0, "status": "waiting", "reason": "a slot", "count": 3, "lastAt": 13.0},)


def test_a_retry_added_with_an_ending_has_its_own_timeline(backend: Ports) -> None:
    job, execution = post(backend, status=S.RUNNING, timeline=(timelines.accepted(10.0, timelines.POSTED),))
    why = timelines.accepted(14.0, timelines.RETRY_AFTER_FAILURE, retryOf=execution.execution_id, after=2.0)
    moved = backend.executions.transition(execution, S.FAILED, exit_code=1, follow_up=maker(timeline=(why,)),
                                          timeline_entry=timelines.ended(13.0, "failed", exit_code=1))
    assert moved is not None and moved[1] is not None
    retry = backend.executions.get_execution(job.job_id, moved[1].execution_id)
    assert retry is not None and retry.timeline == (why,)
    assert statuses(backend, job.job_id, execution.execution_id) == ["accepted", "failed"]
