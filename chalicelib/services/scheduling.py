"""Jobs that run later or repeatedly: startAt and startIn through SQS timers or one-time
EventBridge Scheduler schedules, cron through Scheduler cron schedules (or one schedule per tick
when Scheduler cannot express the cron exactly), overlap policies, jitter, the catch-up window,
and repair of lost firings. Pausing and resuming are `pausing.py`'s."""
from __future__ import annotations

import math
import time
from collections.abc import Callable

from ..config import Settings
from ..domain import timeline as timelines
from ..domain.errors import UnreadableRecords
from ..domain.limits import SQS_MAX_DELAY_SECONDS
from ..domain.messages import CronTick, JobMessage, ScheduleFiring
from ..domain.model import Execution, Job, new_execution, new_id, now
from ..domain.schedule import (
    next_cron_run,
    parse_duration,
    schedule_name,
    ticks_between,
    to_scheduler_cron,
)
from ..observability import MetricUnit, logger, metrics
from ..ports import Executions, JobQueue, Jobs, Scheduler, Schedules
from .engine import Engine
from .pausing import Pausing, catchup_window, fire_time, missed_ticks

# One-shot firings arrive up to this many seconds early; the execution is written and its pool
# slot taken meanwhile, and the handler waits the rest, so the container starts on its second
# rather than after the queue's and the database's latency.
EARLY = 2.0

# A firing handled within this many seconds of its time is on time, whatever the job's catch-up
# window (even 0): the queue's and Scheduler's own latency is not a missed run.
ON_TIME = 5.0

# overlap buffer: the tick that waits for the job's execution to end looks again this often (the
# ending path stays the engine's one room; a wait costs one message per look).
BUFFER_POLL_SECONDS = 5

SUPERSEDED = "missed: a later tick is due"


class Scheduling:
    def __init__(self, jobs: Jobs, executions: Executions, schedules: Schedules, queue: JobQueue,
                 scheduler: Scheduler, engine: Engine, settings: Settings, *,
                 clock: Callable[[], float] = now, sleep: Callable[[float], None] = time.sleep) -> None:
        self._jobs = jobs
        self._executions = executions
        self._schedules = schedules
        self._queue = queue
        self._scheduler = scheduler
        self._engine = engine
        self._settings = settings
        self._clock = clock
        self._sleep = sleep
        self.pausing = Pausing(jobs, schedules, queue, scheduler, clock=clock, arm=self.arm)

    # planning and arming ------------------------------------------------------------------------

    def plan(self, job: Job) -> Job:
        """The job with the schedule its specification asks for: a new version (so firings of an
        earlier schedule are ignored) and its next run. Done before the job is written."""
        spec = job.spec
        if not spec.scheduled:
            return job.with_changes(schedule_version=None, next_run_at=None, skipped_ticks=0, last_skipped_at=None,
                                    last_skip_reason=None, paused_at=None, buffered_tick=None, buffered_at=None)
        at = self._clock()
        next_run: float | None
        if spec.cron:
            next_run = next_cron_run(spec.cron, at, spec.timezone)
        elif spec.start_at is not None:
            next_run = max(spec.start_at, at)  # a time in the past runs now
        else:
            next_run = at + parse_duration(spec.start_in or "")
        return job.with_changes(schedule_version=new_id().replace("-", ""),
                                next_run_at=None if next_run is None else round(next_run, 3),
                                skipped_ticks=0, last_skipped_at=None, last_skip_reason=None, paused_at=None,
                                buffered_tick=None, buffered_at=None)

    @staticmethod
    def _once(job: Job) -> ScheduleFiring:
        return ScheduleFiring(job.task_id, job.job_id, job.schedule_version or "", job.next_run_at or 0.0)

    @staticmethod
    def _tick_of(job: Job, scheduled_at: float | None, per_tick: bool = False, buffered: bool = False) -> CronTick:
        """A cron tick. Scheduler fills in the time it was due; per-tick schedules say it."""
        return CronTick(job.task_id, job.job_id, job.schedule_version or "", scheduled_at, per_tick, buffered)

    def arm(self, job: Job, had_schedule: bool = False) -> str | None:
        """Make the job's pending schedule fire: returns the id of the message or the schedule
        that will start it. A job with nothing pending has any schedule it had deleted."""
        name = schedule_name(job.task_id, job.job_id)
        spec = job.spec
        if not job.schedule_version or job.next_run_at is None:
            if had_schedule:
                self._scheduler.delete(name)
            return None
        if spec.cron:
            expression = to_scheduler_cron(spec.cron)
            if expression is not None:
                return self._scheduler.put_cron(name, expression, spec.timezone, self._tick_of(job, None),
                                                enabled=not job.paused)
            if job.paused:
                return None  # a tick-by-tick schedule is armed again on resume
            # Scheduler cannot say it: one one-time schedule per tick, each arming the next.
            return self._scheduler.put_one_time(name, job.next_run_at, self._tick_of(job, job.next_run_at, True))
        delay = job.next_run_at - self._clock()
        if delay <= SQS_MAX_DELAY_SECONDS:
            if had_schedule:
                self._scheduler.delete(name)
            return self._queue.send(self._once(job), delay_seconds=math.floor(max(0.0, delay - EARLY)))
        # Scheduler fires within a minute of its time: fire early, and the dispatcher waits the rest.
        fire_at = job.next_run_at - self._settings.scheduler_lead_seconds
        return self._scheduler.put_one_time(name, fire_at, self._once(job))

    def disarm(self, job: Job) -> None:
        """The job runs no more until it is put again: its schedule and pending firings are gone."""
        self._schedules.end_schedule(job.job_id)
        self._scheduler.delete(schedule_name(job.task_id, job.job_id))

    # firings ------------------------------------------------------------------------------------

    def _new_execution(self, job: Job, scheduled_at: float, due: float | None = None,
                       **said: float) -> Execution:
        """A run of a firing: `metadata.scheduledAt` says which tick (or one-shot time); `lateBy`
        a run that could not fire on time and caught up, `bufferedAt` one that waited."""
        at = self._clock()
        late = at - (scheduled_at if due is None else due)
        metadata: dict[str, float] = {"scheduledAt": round(scheduled_at, 3), **said}
        if late > ON_TIME and "bufferedAt" not in said:
            metadata["lateBy"] = round(late, 3)
        if job.spec.cron is None:
            reason = timelines.SCHEDULED
        else:
            reason = timelines.BUFFERED_TICK if "bufferedAt" in said else (
                timelines.LATE_TICK if "lateBy" in metadata else timelines.TICK)
        why = timelines.accepted(at, reason, scheduledAt=metadata["scheduledAt"], lateBy=metadata.get("lateBy"),
                                 waited=said.get("bufferedAt"))
        return new_execution(job, at, placement=self._engine.placement(job.task_id), request_ip=job.request_ip,
                             due_at=round(scheduled_at if due is None else due, 3), metadata=metadata, accepted=why)

    def _launch(self, execution: Execution, wait: Callable[[float], None] | None = None) -> None:
        """A firing is itself a jobs-queue message: the execution it made is launched in the same
        handling (no second message), through the one launch path and its error policy."""
        dispatcher = self._engine.dispatcher
        self._engine.launches.send(execution, dispatch=lambda launch: dispatcher.dispatch(launch, wait=wait))

    def handle(self, message: ScheduleFiring | CronTick) -> None:
        if isinstance(message, ScheduleFiring):
            self._fire_once(message)
        else:
            self._tick(message)

    def _wait(self, message: JobMessage, due: float) -> bool:
        """A firing that came more than EARLY seconds early goes back to the queue (SQS delays are
        whole seconds, at most 15 minutes) to come back at most EARLY seconds before its time: at
        least a second later, so one less than a second past EARLY is not sent back at once,
        again and again, until it is not."""
        remaining = due - self._clock()
        if remaining <= EARLY:
            return False
        self._queue.send(message, delay_seconds=min(SQS_MAX_DELAY_SECONDS, max(1, math.floor(remaining - EARLY))))
        return True

    def _fire_once(self, firing: ScheduleFiring) -> None:
        due = firing.due_at
        if self._wait(firing, due):
            return
        late = self._clock() - due
        if late > ON_TIME:
            # Late (an outage, a lost firing the reconciler sent again): within the job's catch-up
            # window it runs, else it is skipped and counted, and the one-shot is over.
            job = self._jobs.get_job(firing.job_id)
            if job is None or job.schedule_version != firing.version or job.paused:
                return  # replaced, stopped, fired already, or paused (resume decides)
            window = catchup_window(job)
            if late > max(window, ON_TIME):
                reason = f"missed its catch-up window ({window:g} s): {late:.0f} s late"
                if self._schedules.take_schedule(firing.job_id, firing.version, None, tick_at=None, next_run_at=None,
                                                 skipped=True, skip_reason=reason) is not None:
                    self._skipped(job, due, reason)
                return
        taken = self._schedules.take_schedule(firing.job_id, firing.version, lambda job: self._new_execution(job, due),
                                              tick_at=None, next_run_at=None)
        if taken is None or taken[1] is None:
            return  # replaced, stopped, paused, or fired already
        metrics.add_metric(name="ScheduledRuns", unit=MetricUnit.Count, value=1)
        self._launch(taken[1], wait=self._sleep)

    @staticmethod
    def _skipped(job: Job, scheduled_at: float | None, why: str) -> None:
        logger.info("cron tick skipped" if job.spec.cron else "scheduled run skipped",
                    extra={"job_id": job.job_id, "scheduled_at": scheduled_at, "why": why})
        metrics.add_metric(name="ScheduledTicksSkipped", unit=MetricUnit.Count, value=1)

    def _missed(self, job: Job, tick: float) -> int:
        """Ticks before `tick` that never fired: from the job's next run (the first tick not yet
        taken) up to it."""
        return missed_ticks(job, tick - 0.001)[0]

    def _tick(self, tick: CronTick) -> None:
        if tick.scheduled_at is None:
            return  # never delivered so: Scheduler fills in the time
        scheduled_at = tick.scheduled_at
        job = self._jobs.get_job(tick.job_id)
        if job is None or job.schedule_version != tick.version or not job.spec.cron:
            return
        if tick.buffered:
            self._run_buffered(job, scheduled_at)
            return
        due = fire_time(job, scheduled_at)
        if self._wait(tick, due):
            return  # jitter, or an early firing: it comes back at its time
        at = self._clock()
        next_run = next_cron_run(job.spec.cron, scheduled_at, job.spec.timezone)
        running = sorted(job.active)
        missed = self._missed(job, scheduled_at)
        window = catchup_window(job)
        late = at - due
        # A tick that could not fire on time: when a later tick is due already, only the latest
        # one may run (never more than one late run for a series of missed ticks); past the
        # catch-up window, none does.
        reason = None
        if job.paused:
            pass  # the store counts it skipped as paused
        elif next_run is not None and fire_time(job, next_run) <= at:
            reason = SUPERSEDED
        elif late > max(window, ON_TIME):
            reason = f"missed its catch-up window ({window:g} s): {late:.0f} s late"
        if reason is not None:
            taken = self._schedules.take_schedule(job.job_id, tick.version, None, tick_at=scheduled_at,
                                                  next_run_at=next_run, skipped=True, skip_reason=reason,
                                                  missed=missed, job=job)
            if taken is not None:
                self._skipped(job, scheduled_at, reason)
                self._arm_next_tick(taken[0], tick, next_run)
            return
        # The store decides in the write that takes the tick: forbid and buffer allow no other
        # execution that has not ended (buffer keeps one tick waiting for it); any policy allows
        # at most MAX_ACTIVE_PER_JOB, so a tick that finds the job full (its executions waiting
        # for a pool that stays full) is skipped and counted. A paused job runs none.
        overlap = job.spec.overlap
        if overlap == "buffer" and job.buffered_tick is not None and not job.active and not job.paused:
            # The waiting tick's turn came when the job's execution ended, before this tick: it runs
            # first (its look had not come yet), and this tick then finds it running.
            self._run_buffered(job, job.buffered_tick)
            job = self._jobs.get_job(job.job_id) or job
        single = overlap in ("forbid", "buffer")
        why = ("the previous execution still runs" if single else
               f"the job has {self._settings.max_active_per_job} executions that have not ended")
        if overlap == "buffer" and job.buffered_tick is not None:
            why = "a tick is already waiting for the previous execution to end"
        taken = self._schedules.take_schedule(
            job.job_id, tick.version, lambda current: self._new_execution(current, scheduled_at, due),
            tick_at=scheduled_at, next_run_at=next_run, max_active=1 if single else self._settings.max_active_per_job,
            job=job, skip_reason=why, missed=missed, buffer_at=at if overlap == "buffer" else None)
        if taken is None:
            return  # a tick taken already
        stored, execution = taken
        self._arm_next_tick(stored, tick, next_run)
        if execution is None:
            if stored.buffered_tick == scheduled_at:
                logger.info("cron tick waits for the previous execution", extra={"job_id": job.job_id,
                                                                                  "scheduled_at": scheduled_at})
            else:
                self._skipped(job, scheduled_at, "paused" if stored.paused else why)
            if stored.buffered_tick is not None:  # (again, should the waiting tick's own look be lost)
                self._queue.send(self._tick_of(job, stored.buffered_tick, buffered=True),
                                 delay_seconds=BUFFER_POLL_SECONDS)
            return
        if overlap == "replace":
            for execution_id in running:
                current = self._executions.get_execution(job.job_id, execution_id)
                if current is not None:
                    self._engine.ending.stop(current, reason="replaced by the next cron tick")
        metrics.add_metric(name="ScheduledRuns", unit=MetricUnit.Count, value=1)
        self._launch(execution)

    def _arm_next_tick(self, job: Job, tick: CronTick, next_run: float | None) -> None:
        """A tick-by-tick schedule arms the next tick (none while the job is paused: resume does)."""
        if tick.per_tick and next_run is not None and not job.paused:
            self._scheduler.put_one_time(schedule_name(job.task_id, job.job_id), next_run,
                                         self._tick_of(job, next_run, per_tick=True))

    def _run_buffered(self, job: Job, scheduled_at: float) -> None:
        """overlap buffer: the waiting tick runs once the job has no execution that has not ended
        (and is dropped, counted, if the job was paused meanwhile); until then it looks again."""
        if job.buffered_tick != scheduled_at:
            return  # ran, or dropped, already
        if job.active and not job.paused:
            self._queue.send(self._tick_of(job, scheduled_at, buffered=True), delay_seconds=BUFFER_POLL_SECONDS)
            return
        waited = job.buffered_at if job.buffered_at is not None else scheduled_at
        taken = self._schedules.take_buffered(
            job.job_id, job.schedule_version or "", scheduled_at,
            lambda current: self._new_execution(current, scheduled_at, bufferedAt=round(waited, 3)))
        if taken is None:
            current = self._jobs.get_job(job.job_id)
            if current is not None and current.buffered_tick == scheduled_at:  # an execution started meanwhile
                self._queue.send(self._tick_of(job, scheduled_at, buffered=True), delay_seconds=BUFFER_POLL_SECONDS)
            return
        if taken[1] is None:
            self._skipped(job, scheduled_at, "paused")
            return
        metrics.add_metric(name="ScheduledRuns", unit=MetricUnit.Count, value=1)
        self._launch(taken[1])

    # repair -------------------------------------------------------------------------------------

    def reconcile(self) -> dict[str, int]:
        """Schedules whose next run is overdue (a lost firing, a schedule that failed to be
        written): their firing is sent to the jobs queue, where the dispatcher takes it as it
        takes any other (the reconciler launches nothing itself: its role may not run tasks),
        and a cron schedule is armed again. Duplicates are harmless: a firing is taken once.
        Each schedule is repaired on its own: one that fails (Scheduler refuses its time zone,
        a record it cannot handle) is logged with its ids and counted in `errors`."""
        counts = {"schedules": 0, "errors": 0}
        try:
            overdue = self._schedules.scheduled_jobs(limit=100,
                                                     due_before=self._clock() - self._settings.reconcile_grace_seconds)
        except UnreadableRecords as some:  # the readable ones are repaired all the same
            logger.error("the reconciler skips stored jobs it cannot read", extra={"jobs": some.keys[:20]})
            counts["errors"] += len(some.keys)
            overdue = some.readable
        except Exception:  # noqa: BLE001 - the executions' repairs of the pass go on
            logger.exception("the overdue schedules could not be listed; the next pass tries again")
            counts["errors"] += 1
            return counts
        for job in overdue:
            try:
                self._repair(job)
                counts["schedules"] += 1
            except Exception:  # noqa: BLE001 - one bad schedule must not stop the repairs of the others
                logger.exception("an overdue schedule could not be repaired; the next pass tries again",
                                 extra={"task_id": job.task_id, "job_id": job.job_id, "next_run_at": job.next_run_at})
                counts["errors"] += 1
        return counts

    def _repair(self, job: Job) -> None:
        if job.next_run_at is None or job.schedule_version is None:
            return
        if job.paused:
            self.pausing.repair(job)
            return
        if job.spec.cron:
            at = self._clock()
            if fire_time(job, job.next_run_at) + self._settings.reconcile_grace_seconds > at:
                return  # its jitter holds it back: not overdue yet
            # The latest tick due (the earlier ones it counts as missed): one late run at most.
            _, latest = ticks_between(job.spec.cron, job.next_run_at, at, job.spec.timezone)
            tick = latest if latest is not None else job.next_run_at
            per_tick = to_scheduler_cron(job.spec.cron) is None
            self._queue.send(self._tick_of(job, tick, per_tick=per_tick))
            if not per_tick:
                self.arm(job)  # a tick-by-tick schedule is armed by the tick it fires
        else:
            self._queue.send(self._once(job))

    def upcoming(self, limit: int = 50) -> list[Job]:
        return self._schedules.scheduled_jobs(limit=limit)
