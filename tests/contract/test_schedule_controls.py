"""The Schedules port's controls: pausing (a paused job's ticks are counted, never run; a paused
one-shot stays pending), counting skipped ticks exactly once, the one tick an `overlap: buffer`
job keeps waiting, and missed ticks counted with the tick that follows them."""
from __future__ import annotations

from chalicelib.domain.model import ExecutionStatus as S
from chalicelib.domain.model import Job, new_id
from tests.contract.support import Ports, a_job, a_spec, an_execution, maker

NEXT = 2_000_000_000.0
CRON = "* * * * *"


def scheduled(backend: Ports, *, cron: str | None = CRON, next_run_at: float = NEXT, **fields: object) -> Job:
    spec = a_spec(cron=cron) if cron else a_spec(start_at=next_run_at)
    saved, _ = backend.jobs.save_new_job(a_job(spec=spec, schedule_version="v1", next_run_at=next_run_at, **fields),
                                         None)
    return saved


def running(backend: Ports, job: Job) -> Job:
    """The job with one execution that has not ended."""
    stored, _ = backend.jobs.add_execution(job.job_id, lambda current: an_execution(current, S.RUNNING))
    return stored


# pause ------------------------------------------------------------------------------------------


def test_pausing_keeps_the_first_pause_time_and_answers_the_job(backend: Ports) -> None:
    job = scheduled(backend)

    first = backend.schedules.pause_schedule(job.job_id, 100.0)
    again = backend.schedules.pause_schedule(job.job_id, 200.0)

    assert first is not None and again is not None
    assert (first.paused_at, again.paused_at) == (100.0, 100.0)
    stored = backend.jobs.get_job(job.job_id)
    assert stored is not None and stored.paused and stored.next_run_at == NEXT


def test_a_job_with_nothing_pending_cannot_be_paused(backend: Ports) -> None:
    saved, _ = backend.jobs.save_new_job(a_job(), None)

    assert backend.schedules.pause_schedule(saved.job_id, 100.0) is None
    assert backend.schedules.pause_schedule(new_id(), 100.0) is None
    stored = backend.jobs.get_job(saved.job_id)
    assert stored is not None and not stored.paused


def test_a_tick_of_a_paused_job_is_counted_skipped_and_leaves_its_next_run(backend: Ports) -> None:
    job = scheduled(backend)
    backend.schedules.pause_schedule(job.job_id, 100.0)
    make = maker()

    taken = backend.schedules.take_schedule(job.job_id, "v1", make, tick_at=NEXT, next_run_at=NEXT + 60)

    assert taken is not None and taken[1] is None and make.seen == []  # type: ignore[attr-defined]
    stored = backend.jobs.get_job(job.job_id)
    assert stored is not None
    assert (stored.execution_count, stored.skipped_ticks, stored.last_skipped_at) == (0, 1, NEXT)
    assert (stored.last_skip_reason, stored.next_run_at, stored.last_tick) == ("paused", NEXT, NEXT)


def test_a_one_shot_firing_of_a_paused_job_stays_pending(backend: Ports) -> None:
    job = scheduled(backend, cron=None)
    backend.schedules.pause_schedule(job.job_id, 100.0)

    assert backend.schedules.take_schedule(job.job_id, "v1", maker(), tick_at=None, next_run_at=None) is None
    stored = backend.jobs.get_job(job.job_id)
    assert stored is not None and (stored.schedule_version, stored.next_run_at, stored.execution_count) == (
        "v1", NEXT, 0)


# counting skipped ticks ----------------------------------------------------------------------------


def test_skipped_ticks_are_counted_once_and_resume_the_job(backend: Ports) -> None:
    job = scheduled(backend)
    backend.schedules.pause_schedule(job.job_id, 100.0)

    resumed = backend.schedules.skip_ticks(job.job_id, "v1", paused=True, last_tick=None, count=3,
                                           skipped_at=NEXT + 120, reason="paused", next_run_at=NEXT + 240,
                                           through=NEXT + 120, resume=True)
    again = backend.schedules.skip_ticks(job.job_id, "v1", paused=True, last_tick=None, count=3,
                                         skipped_at=NEXT + 120, reason="paused", next_run_at=NEXT + 240,
                                         through=NEXT + 120, resume=True)

    assert resumed is not None and again is None
    stored = backend.jobs.get_job(job.job_id)
    assert stored is not None and not stored.paused
    assert (stored.skipped_ticks, stored.last_skipped_at, stored.last_skip_reason) == (3, NEXT + 120, "paused")
    assert (stored.last_tick, stored.next_run_at) == (NEXT + 120, NEXT + 240)
    # a tick counted is never taken afterwards
    assert backend.schedules.take_schedule(job.job_id, "v1", maker(), tick_at=NEXT + 60, next_run_at=NEXT + 120) is None


def test_counting_skipped_ticks_is_refused_when_the_job_moved_on(backend: Ports) -> None:
    job = scheduled(backend)
    backend.schedules.take_schedule(job.job_id, "v1", maker(), tick_at=NEXT, next_run_at=NEXT + 60)

    def skip(**changed: object) -> Job | None:
        values: dict = {"paused": False, "last_tick": NEXT, "count": 1, "skipped_at": NEXT + 60,
                        "reason": "paused", "next_run_at": NEXT + 120, **changed}
        return backend.schedules.skip_ticks(job.job_id, str(changed.pop("version", "v1")), **values)

    assert skip(last_tick=None) is None  # a tick was taken since the caller's read
    assert skip(paused=True) is None  # not paused
    assert backend.schedules.skip_ticks(job.job_id, "v2", paused=False, last_tick=NEXT, count=1, skipped_at=NEXT,
                                        reason="paused", next_run_at=None) is None
    stored = backend.jobs.get_job(job.job_id)
    assert stored is not None and stored.skipped_ticks == 0


def test_skipping_with_no_next_run_ends_the_schedule(backend: Ports) -> None:
    job = scheduled(backend, cron=None)
    backend.schedules.pause_schedule(job.job_id, 100.0)

    ended = backend.schedules.skip_ticks(job.job_id, "v1", paused=True, last_tick=None, count=1, skipped_at=NEXT,
                                         reason="paused past its catch-up window", next_run_at=None, resume=True)

    assert ended is not None
    stored = backend.jobs.get_job(job.job_id)
    assert stored is not None and (stored.schedule_version, stored.next_run_at, stored.paused) == (None, None, False)
    assert (stored.skipped_ticks, stored.last_skipped_at) == (1, NEXT)
    assert backend.schedules.scheduled_jobs() == []


def test_missed_ticks_are_counted_with_the_tick_that_runs(backend: Ports) -> None:
    job = scheduled(backend)

    taken = backend.schedules.take_schedule(job.job_id, "v1", maker(), tick_at=NEXT + 180, next_run_at=NEXT + 240,
                                            missed=3)

    assert taken is not None and taken[1] is not None
    stored = backend.jobs.get_job(job.job_id)
    assert stored is not None
    assert (stored.skipped_ticks, stored.last_skip_reason, stored.execution_count) == (3, "missed", 1)


# overlap buffer ----------------------------------------------------------------------------------


def test_a_tick_that_finds_the_job_running_waits_and_one_more_is_skipped(backend: Ports) -> None:
    job = running(backend, scheduled(backend))

    first = backend.schedules.take_schedule(job.job_id, "v1", maker(), tick_at=NEXT, next_run_at=NEXT + 60,
                                            max_active=1, buffer_at=NEXT + 1, skip_reason="busy")
    second = backend.schedules.take_schedule(job.job_id, "v1", maker(), tick_at=NEXT + 60, next_run_at=NEXT + 120,
                                             max_active=1, buffer_at=NEXT + 61, skip_reason="a tick waits")

    assert first is not None and first[1] is None and first[0].buffered_tick == NEXT
    assert second is not None and second[1] is None
    stored = backend.jobs.get_job(job.job_id)
    assert stored is not None
    assert (stored.buffered_tick, stored.buffered_at, stored.skipped_ticks) == (NEXT, NEXT + 1, 1)
    assert (stored.last_skipped_at, stored.last_skip_reason) == (NEXT + 60, "a tick waits")


def test_the_waiting_tick_runs_once_the_job_is_idle_and_only_once(backend: Ports) -> None:
    job = running(backend, scheduled(backend))
    backend.schedules.take_schedule(job.job_id, "v1", maker(), tick_at=NEXT, next_run_at=NEXT + 60, max_active=1,
                                    buffer_at=NEXT + 1)

    assert backend.schedules.take_buffered(job.job_id, "v1", NEXT, maker()) is None  # still running
    (execution_id,) = job.active
    current = backend.executions.get_execution(job.job_id, execution_id)
    assert current is not None and backend.executions.transition(current, S.DONE) is not None
    taken = backend.schedules.take_buffered(job.job_id, "v1", NEXT, maker())

    assert taken is not None and taken[1] is not None
    assert backend.schedules.take_buffered(job.job_id, "v1", NEXT, maker()) is None
    stored = backend.jobs.get_job(job.job_id)
    assert stored is not None and stored.buffered_tick is None and stored.execution_count == 2


def test_a_waiting_tick_of_a_paused_job_is_dropped_and_counted(backend: Ports) -> None:
    job = running(backend, scheduled(backend))
    backend.schedules.take_schedule(job.job_id, "v1", maker(), tick_at=NEXT, next_run_at=NEXT + 60, max_active=1,
                                    buffer_at=NEXT + 1)
    backend.schedules.pause_schedule(job.job_id, NEXT + 2)

    taken = backend.schedules.take_buffered(job.job_id, "v1", NEXT, maker())

    assert taken is not None and taken[1] is None
    stored = backend.jobs.get_job(job.job_id)
    assert stored is not None and stored.buffered_tick is None
    assert (stored.skipped_ticks, stored.last_skip_reason, stored.execution_count) == (1, "paused", 1)


def test_a_later_tick_that_runs_replaces_the_waiting_one(backend: Ports) -> None:
    job = running(backend, scheduled(backend))
    backend.schedules.take_schedule(job.job_id, "v1", maker(), tick_at=NEXT, next_run_at=NEXT + 60, max_active=1,
                                    buffer_at=NEXT + 1)
    (execution_id,) = job.active
    current = backend.executions.get_execution(job.job_id, execution_id)
    assert current is not None and backend.executions.transition(current, S.DONE) is not None

    taken = backend.schedules.take_schedule(job.job_id, "v1", maker(), tick_at=NEXT + 60, next_run_at=NEXT + 120,
                                            max_active=1, buffer_at=NEXT + 61)

    assert taken is not None and taken[1] is not None
    stored = backend.jobs.get_job(job.job_id)
    assert stored is not None and stored.buffered_tick is None
    assert (stored.skipped_ticks, stored.last_skipped_at) == (1, NEXT)
    assert backend.schedules.take_buffered(job.job_id, "v1", NEXT, maker()) is None


def test_ending_a_schedule_forgets_its_waiting_tick(backend: Ports) -> None:
    job = running(backend, scheduled(backend))
    backend.schedules.take_schedule(job.job_id, "v1", maker(), tick_at=NEXT, next_run_at=NEXT + 60, max_active=1,
                                    buffer_at=NEXT + 1)

    backend.schedules.end_schedule(job.job_id)

    stored = backend.jobs.get_job(job.job_id)
    assert stored is not None and stored.buffered_tick is None
