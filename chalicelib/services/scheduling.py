"""Jobs that run later or repeatedly: startAt and startIn through SQS timers or one-time
EventBridge Scheduler schedules, cron through Scheduler cron schedules (or one schedule per tick
when Scheduler cannot express the cron exactly), overlap policies, and repair of lost firings."""
from __future__ import annotations

import math
import re
import time
import uuid
from collections.abc import Callable

from ..config import Settings
from ..domain.errors import UnreadableRecords
from ..domain.limits import SQS_MAX_DELAY_SECONDS
from ..domain.messages import CronTick, JobMessage, ScheduleFiring
from ..domain.model import Execution, Job, new_execution, now
from ..domain.schedule import next_cron_run, parse_duration, to_scheduler_cron
from ..observability import MetricUnit, logger, metrics
from ..ports import Executions, JobQueue, Jobs, Scheduler, Schedules
from .engine import Engine

# One-shot firings arrive up to this many seconds early; the execution is written and its pool
# slot taken meanwhile, and the handler waits the rest, so the container starts on its second
# rather than after the queue's and the database's latency.
EARLY = 2.0


def schedule_name(task_id: str, job_id: str) -> str:
    """At most 64 characters of [0-9A-Za-z-_.]: the task's start, then the whole job id, so an
    operator finds a job's schedule by its name."""
    task = re.sub(r"[^0-9A-Za-z_.-]", "_", task_id)[:27]
    return f"{task}-{job_id}"


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

    # planning and arming ------------------------------------------------------------------------

    def plan(self, job: Job) -> Job:
        """The job with the schedule its specification asks for: a new version (so firings of an
        earlier schedule are ignored) and its next run. Done before the job is written."""
        spec = job.spec
        if not spec.scheduled:
            return job.with_changes(schedule_version=None, next_run_at=None, skipped_ticks=0, last_skipped_at=None)
        at = self._clock()
        next_run: float | None
        if spec.cron:
            next_run = next_cron_run(spec.cron, at, spec.timezone)
        elif spec.start_at is not None:
            next_run = max(spec.start_at, at)  # a time in the past runs now
        else:
            next_run = at + parse_duration(spec.start_in or "")
        return job.with_changes(schedule_version=uuid.uuid4().hex,
                                next_run_at=None if next_run is None else round(next_run, 3),
                                skipped_ticks=0, last_skipped_at=None)

    @staticmethod
    def _once(job: Job) -> ScheduleFiring:
        return ScheduleFiring(job.task_id, job.job_id, job.schedule_version or "", job.next_run_at or 0.0)

    @staticmethod
    def _tick_of(job: Job, scheduled_at: float | None, per_tick: bool = False) -> CronTick:
        """A cron tick. Scheduler fills in the time it was due; per-tick schedules say it."""
        return CronTick(job.task_id, job.job_id, job.schedule_version or "", scheduled_at, per_tick)

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
                return self._scheduler.put_cron(name, expression, spec.timezone, self._tick_of(job, None))
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

    def _new_execution(self, job: Job, scheduled_at: float) -> Execution:
        return new_execution(job, self._clock(), placement=self._engine.placement(job.task_id),
                             request_ip=job.request_ip, due_at=round(scheduled_at, 3),
                             metadata={"scheduledAt": round(scheduled_at, 3)})

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
        whole seconds, at most 15 minutes) to come back EARLY seconds before its time."""
        remaining = due - self._clock()
        if remaining <= EARLY:
            return False
        self._queue.send(message, delay_seconds=min(SQS_MAX_DELAY_SECONDS, math.floor(remaining - EARLY)))
        return True

    def _fire_once(self, firing: ScheduleFiring) -> None:
        due = firing.due_at
        if self._wait(firing, due):
            return
        taken = self._schedules.take_schedule(firing.job_id, firing.version, lambda job: self._new_execution(job, due),
                                              tick_at=None, next_run_at=None)
        if taken is None or taken[1] is None:
            return  # replaced, stopped, or fired already
        metrics.add_metric(name="ScheduledRuns", unit=MetricUnit.Count, value=1)
        self._launch(taken[1], wait=self._sleep)

    def _tick(self, tick: CronTick) -> None:
        if tick.scheduled_at is None:
            return  # never delivered so: Scheduler fills in the time
        scheduled_at = tick.scheduled_at
        if self._wait(tick, scheduled_at):
            return
        job = self._jobs.get_job(tick.job_id)
        if job is None or job.schedule_version != tick.version or not job.spec.cron:
            return
        next_run = next_cron_run(job.spec.cron, scheduled_at, job.spec.timezone)
        running = sorted(job.active)
        # The store decides in the write that takes the tick: forbid allows no other execution
        # that has not ended; any policy allows at most MAX_ACTIVE_PER_JOB, so a tick that finds
        # the job full (its executions waiting for a pool that stays full) is skipped and counted.
        forbid = job.spec.overlap == "forbid"
        taken = self._schedules.take_schedule(
            job.job_id, tick.version, lambda current: self._new_execution(current, scheduled_at), tick_at=scheduled_at,
            next_run_at=next_run, max_active=1 if forbid else self._settings.max_active_per_job, job=job)
        if taken is None:
            return  # a tick taken already
        if tick.per_tick and next_run is not None:
            self._scheduler.put_one_time(schedule_name(job.task_id, job.job_id), next_run,
                                         self._tick_of(job, next_run, per_tick=True))
        if taken[1] is None:
            why = ("the previous execution still runs" if forbid else
                   f"the job has {self._settings.max_active_per_job} executions that have not ended")
            logger.info("cron tick skipped", extra={"job_id": job.job_id, "scheduled_at": scheduled_at, "why": why})
            metrics.add_metric(name="ScheduledTicksSkipped", unit=MetricUnit.Count, value=1)
            return
        if job.spec.overlap == "replace":
            for execution_id in running:
                execution = self._executions.get_execution(job.job_id, execution_id)
                if execution is not None:
                    self._engine.ending.stop(execution, reason="replaced by the next cron tick")
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
        if job.spec.cron:
            per_tick = to_scheduler_cron(job.spec.cron) is None
            self._queue.send(self._tick_of(job, job.next_run_at, per_tick=per_tick))
            if not per_tick:
                self.arm(job)  # a tick-by-tick schedule is armed by the tick it fires
        else:
            self._queue.send(self._once(job))

    def upcoming(self, limit: int = 50) -> list[Job]:
        return self._schedules.scheduled_jobs(limit=limit)
