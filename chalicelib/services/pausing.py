"""Pausing and resuming a job's schedule: the stored job says `paused` and is the truth; where the
job has a recurring EventBridge Scheduler schedule, its `State` follows (DISABLED while paused),
and the reconciler repairs a schedule whose state disagrees. Ticks due while paused are skipped
and counted; resuming runs the latest of them late when it is within the catch-up window."""
from __future__ import annotations

from collections.abc import Callable

from ..domain.errors import Conflict, DependencyDown
from ..domain.messages import CronTick
from ..domain.model import Job, now
from ..domain.payload import DEFAULT_CATCHUP_WINDOW
from ..domain.schedule import cron_ticks, jitter_offset, next_cron_run, schedule_name, to_scheduler_cron
from ..observability import MetricUnit, logger, metrics
from ..ports import JobQueue, Jobs, Scheduler, Schedules

PAUSED = "paused"
PAUSED_PAST_WINDOW = "paused past its catch-up window"
ATTEMPTS = 5  # a resume races ticks taken meanwhile: it reads and counts again this many times


def _name(job: Job) -> str:
    return schedule_name(job.task_id, job.job_id)


def catchup_window(job: Job) -> float:
    """How late a run that could not fire on time may still run (the job's, else the default)."""
    return DEFAULT_CATCHUP_WINDOW if job.spec.catchup_window is None else float(job.spec.catchup_window)


def fire_time(job: Job, tick: float) -> float:
    """When a cron tick fires: the tick, plus its jitter offset (the same for every copy of it)."""
    return tick + jitter_offset(job.job_id, job.schedule_version or "", tick, job.spec.jitter)


def missed_ticks(job: Job, until: float) -> tuple[int, float | None, float | None]:
    """The cron ticks from the job's next run up to `until` not yet taken: how many, the latest and
    the one before it."""
    count, latest, before = 0, None, None
    if job.next_run_at is None or not job.spec.cron:
        return 0, None, None
    start = job.next_run_at - 0.001
    if job.last_tick is not None:
        start = max(start, job.last_tick)
    for tick in cron_ticks(job.spec.cron, start, job.spec.timezone):
        if tick > until:
            break
        count, latest, before = count + 1, tick, latest
    return count, latest, before


class Pausing:
    def __init__(self, jobs: Jobs, schedules: Schedules, queue: JobQueue, scheduler: Scheduler, *,
                 clock: Callable[[], float] = now, arm: Callable[[Job], str | None]) -> None:
        self._jobs = jobs
        self._schedules = schedules
        self._queue = queue
        self._scheduler = scheduler
        self._clock = clock
        self._arm = arm

    @staticmethod
    def _check(job: Job, verb: str) -> None:
        if not job.spec.scheduled:
            raise Conflict(f"Job '{job.job_id}' has no schedule (no startAt, startIn or cron) to {verb}.", field="jobId")
        if job.stopped:
            raise Conflict(f"Job '{job.job_id}' is stopped: its schedule is gone until the job is put again.",
                           field="jobId")

    def pause(self, job: Job) -> Job:
        """Idempotent: a paused job stays paused since its first pause."""
        self._check(job, "pause")
        paused = self._schedules.pause_schedule(job.job_id, self._clock())
        if paused is None:
            raise Conflict(f"Job '{job.job_id}' has nothing left to fire: its one-shot has run or been skipped.",
                           field="jobId")
        self._set_state(paused, enabled=False)
        logger.info("schedule paused", extra={"job_id": job.job_id, "paused_at": paused.paused_at})
        return paused

    def _set_state(self, job: Job, enabled: bool) -> None:
        """A recurring Scheduler schedule follows the job (a failure is the reconciler's: the job
        is the truth, and a tick of a paused job is skipped whatever Scheduler does)."""
        expression = to_scheduler_cron(job.spec.cron) if job.spec.cron else None
        if expression is None:
            return
        try:
            self._scheduler.put_cron(_name(job), expression, job.spec.timezone,
                                     CronTick(job.task_id, job.job_id, job.schedule_version or ""), enabled=enabled)
        except DependencyDown:
            logger.exception("the schedule's state was not changed; the reconciler repairs it",
                             extra={"job_id": job.job_id, "enabled": enabled})

    def resume(self, job: Job) -> Job:
        """Idempotent. The next tick is computed from now; ticks due while paused are counted
        skipped, but the latest runs late when it is within the catch-up window (a one-shot whose
        time passed runs now within it, else it is over)."""
        self._check(job, "resume")
        for _ in range(ATTEMPTS):
            current = self._jobs.get_job(job.job_id)
            if current is None or not current.paused:
                return current or job
            if current.schedule_version is None or current.next_run_at is None:
                raise Conflict(f"Job '{job.job_id}' has nothing left to fire.", field="jobId")
            resumed = self._resume(current)
            if resumed is not None:
                logger.info("schedule resumed", extra={"job_id": job.job_id, "next_run_at": resumed.next_run_at,
                                                       "skipped_ticks": resumed.skipped_ticks})
                return resumed
        raise Conflict(f"Job '{job.job_id}' changed while it was being resumed; try again.", field="jobId")

    def _resume(self, job: Job) -> Job | None:
        at = self._clock()
        version = job.schedule_version or ""
        due = job.next_run_at or at
        if not job.spec.cron:
            if due + catchup_window(job) >= at:
                resumed = self._schedules.skip_ticks(job.job_id, version, paused=True, last_tick=job.last_tick,
                                                     count=0, skipped_at=None, reason=PAUSED, next_run_at=due,
                                                     resume=True)
                if resumed is not None:
                    self._arm_or_log(resumed)
                return resumed
            return self._schedules.skip_ticks(job.job_id, version, paused=True, last_tick=job.last_tick, count=1,
                                              skipped_at=due, reason=PAUSED_PAST_WINDOW, next_run_at=None,
                                              resume=True)
        count, latest, before = missed_ticks(job, at)
        late = None
        if latest is not None:
            if at - fire_time(job, latest) <= catchup_window(job):
                late, count, latest = latest, count - 1, before  # it runs late; the others are skipped
        following = late if late is not None else next_cron_run(job.spec.cron, at, job.spec.timezone)
        resumed = self._schedules.skip_ticks(job.job_id, version, paused=True, last_tick=job.last_tick, count=count,
                                             skipped_at=latest, reason=PAUSED, next_run_at=following,
                                             through=latest, resume=True)
        if resumed is None:
            return None
        if count:
            metrics.add_metric(name="ScheduledTicksSkipped", unit=MetricUnit.Count, value=count)
        per_tick = to_scheduler_cron(job.spec.cron) is None
        if late is not None:
            # Sent now; should it be lost, the job's next run is this overdue tick: the reconciler's.
            self._queue.send(CronTick(job.task_id, job.job_id, version, late, per_tick))
            if not per_tick:
                self._set_state(resumed, enabled=True)
        else:
            self._arm_or_log(resumed)
        return resumed

    def _arm_or_log(self, job: Job) -> None:
        try:
            self._arm(job)
        except DependencyDown:
            logger.exception("schedule not armed on resume; the reconciler fires it when due",
                             extra={"job_id": job.job_id})

    # repair -------------------------------------------------------------------------------------

    def repair(self, job: Job) -> None:
        """An overdue paused job (the reconciler's): its Scheduler schedule is disabled if it
        fires (a pause whose Scheduler call failed), the ticks due meanwhile are counted skipped
        and the next check is its next tick; a one-shot past its catch-up window is over."""
        at = self._clock()
        version = job.schedule_version or ""
        if not job.spec.cron:
            due = job.next_run_at or at
            if due + catchup_window(job) < at:
                self._schedules.skip_ticks(job.job_id, version, paused=True, last_tick=job.last_tick, count=1,
                                           skipped_at=due, reason=PAUSED_PAST_WINDOW, next_run_at=None, resume=True)
            return
        if to_scheduler_cron(job.spec.cron) is not None and self._scheduler.is_enabled(_name(job)) is not False:
            logger.warning("a paused job's schedule fires: disabled", extra={"job_id": job.job_id})
            self._set_state(job, enabled=False)
        count, latest, _ = missed_ticks(job, at)
        following = next_cron_run(job.spec.cron, at, job.spec.timezone)
        self._schedules.skip_ticks(job.job_id, version, paused=True, last_tick=job.last_tick, count=count,
                                   skipped_at=latest, reason=PAUSED, next_run_at=following, through=latest)
        if count:
            metrics.add_metric(name="ScheduledTicksSkipped", unit=MetricUnit.Count, value=count)

