"""Jobs that run later or repeatedly: startAt and startIn through SQS timers or one-time
EventBridge Scheduler schedules, cron through Scheduler cron schedules (or one schedule per tick
when Scheduler cannot express the cron exactly), overlap policies, and repair of lost firings."""
from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from ..adapters.queues import execution_message
from ..adapters.scheduler import SCHEDULED_TIME, schedule_name
from ..config import Settings
from ..domain.model import Execution, ExecutionStatus, Job, new_id, now
from ..domain.schedule import next_cron_run, parse_duration, to_scheduler_cron
from ..observability import MetricUnit, logger, metrics

ONCE = "schedule"
TICK = "tick"
SQS_MAX_DELAY = 900
# One-shot firings arrive up to this many seconds early; the execution is written and its pool
# slot taken meanwhile, and the handler waits the rest, so the container starts on its second
# rather than after the queue's and the database's latency.
EARLY = 2.0


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(value: Any) -> float:
    if isinstance(value, (int, float)):
        return float(value)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


class Scheduling:
    def __init__(self, store: Any, queue: Any, scheduler: Any, engine: Any, settings: Settings,
                 clock: Callable[[], float] = now, sleep: Callable[[float], None] = time.sleep) -> None:
        self._sleep = sleep
        self._store = store
        self._queue = queue
        self._scheduler = scheduler
        self._engine = engine
        self._settings = settings
        self._clock = clock

    # planning and arming ------------------------------------------------------------------------

    def plan(self, job: Job) -> Job:
        """The job with the schedule its specification asks for: a new version (so firings of an
        earlier schedule are ignored) and its next run. Done before the job is written."""
        spec = job.spec
        if not spec.scheduled:
            return job.with_changes(schedule_version=None, next_run_at=None, skipped_ticks=0, last_skipped_at=None)
        at = self._clock()
        if spec.cron:
            next_run = next_cron_run(spec.cron, at, spec.timezone)
        elif spec.start_at is not None:
            next_run = max(spec.start_at, at)  # a time in the past runs now
        else:
            next_run = at + parse_duration(spec.start_in or "")
        return job.with_changes(schedule_version=uuid.uuid4().hex, next_run_at=round(next_run, 3), skipped_ticks=0,
                                last_skipped_at=None)

    def _once_message(self, job: Job) -> dict[str, Any]:
        return {"kind": ONCE, "taskId": job.task_id, "jobId": job.job_id, "version": job.schedule_version,
                "dueAt": job.next_run_at}

    def _tick_message(self, job: Job, scheduled_at: float | None, per_tick: bool = False) -> dict[str, Any]:
        """A cron tick. Scheduler fills in the time it was due; per-tick schedules say it."""
        return {"kind": TICK, "taskId": job.task_id, "jobId": job.job_id, "version": job.schedule_version,
                "scheduledAt": _iso(scheduled_at) if scheduled_at is not None else SCHEDULED_TIME,
                "perTick": per_tick}

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
                return self._scheduler.put_cron(name, expression, spec.timezone, self._tick_message(job, None))
            # Scheduler cannot say it: one one-time schedule per tick, each arming the next.
            return self._scheduler.put_one_time(name, job.next_run_at,
                                                self._tick_message(job, job.next_run_at, per_tick=True))
        delay = job.next_run_at - self._clock()
        if delay <= SQS_MAX_DELAY:
            if had_schedule:
                self._scheduler.delete(name)
            return self._queue.send(self._once_message(job), delay_seconds=math.floor(max(0.0, delay - EARLY)))
        # Scheduler fires within a minute of its time: fire early, and the dispatcher waits the rest.
        fire_at = job.next_run_at - self._settings.scheduler_lead_seconds
        return self._scheduler.put_one_time(name, fire_at, self._once_message(job))

    def disarm(self, job: Job) -> None:
        """The job runs no more until it is put again: its schedule and pending firings are gone."""
        self._store.end_schedule(job.job_id)
        self._scheduler.delete(schedule_name(job.task_id, job.job_id))

    # firings ------------------------------------------------------------------------------------

    def _new_execution(self, job: Job, scheduled_at: float) -> Execution:
        return Execution(task_id=job.task_id, job_id=job.job_id, execution_id=new_id(), image=job.spec.image,
                         command=job.spec.command, status=ExecutionStatus.ENQUEUED, created_at=self._clock(),
                         request_ip=job.request_ip, due_at=round(scheduled_at, 3),
                         metadata={"scheduledAt": round(scheduled_at, 3)})

    def handle(self, message: dict[str, Any]) -> None:
        if message.get("kind") == ONCE:
            self._fire_once(message)
        else:
            self._tick(message)

    def _wait(self, message: dict[str, Any], due: float) -> bool:
        """A firing that came more than EARLY seconds early goes back to the queue (SQS delays are
        whole seconds, at most 15 minutes) to come back EARLY seconds before its time."""
        remaining = due - self._clock()
        if remaining <= EARLY:
            return False
        self._queue.send(message, delay_seconds=min(SQS_MAX_DELAY, math.floor(remaining - EARLY)))
        return True

    def _fire_once(self, message: dict[str, Any]) -> None:
        due = float(message["dueAt"])
        if self._wait(message, due):
            return
        taken = self._store.take_schedule(message["jobId"], message["version"],
                                          lambda job: self._new_execution(job, due), tick_at=None, next_run_at=None)
        if taken is None or taken[1] is None:
            return  # replaced, stopped, or fired already
        metrics.add_metric(name="ScheduledRuns", unit=MetricUnit.Count, value=1)
        self._engine.dispatch(execution_message(taken[1]), wait=self._sleep)

    def _tick(self, message: dict[str, Any]) -> None:
        scheduled_at = _parse_time(message["scheduledAt"])
        if self._wait(message, scheduled_at):
            return
        job = self._store.get_job(message["jobId"])
        if job is None or job.schedule_version != message["version"] or not job.spec.cron:
            return
        next_run = next_cron_run(job.spec.cron, scheduled_at, job.spec.timezone)
        running = sorted(job.active)
        skip = bool(running) and job.spec.overlap == "forbid"
        make = None if skip else (lambda current: self._new_execution(current, scheduled_at))
        taken = self._store.take_schedule(job.job_id, job.schedule_version, make, tick_at=scheduled_at,
                                          next_run_at=next_run, skipped=skip)
        if taken is None:
            return  # a tick taken already
        if message.get("perTick") and next_run is not None:
            self._scheduler.put_one_time(schedule_name(job.task_id, job.job_id), next_run,
                                         self._tick_message(job, next_run, per_tick=True))
        if skip:
            logger.info("cron tick skipped: the previous execution still runs",
                        extra={"job_id": job.job_id, "scheduled_at": scheduled_at})
            metrics.add_metric(name="ScheduledTicksSkipped", unit=MetricUnit.Count, value=1)
            return
        if job.spec.overlap == "replace":
            for execution_id in running:
                execution = self._store.get_execution(job.job_id, execution_id)
                if execution is not None:
                    self._engine.stop_execution(execution, reason="replaced by the next cron tick")
        metrics.add_metric(name="ScheduledRuns", unit=MetricUnit.Count, value=1)
        self._engine.dispatch(execution_message(taken[1]))

    # repair -------------------------------------------------------------------------------------

    def sweep(self) -> int:
        """Schedules whose next run is overdue (a lost firing, a schedule that failed to be
        written): fire them now and arm them again. Duplicates are harmless: a firing is taken once."""
        grace = self._settings.sweep_grace_seconds
        repaired = 0
        for job in self._store.scheduled_jobs(limit=100, due_before=self._clock() - grace):
            if job.next_run_at is None or job.schedule_version is None:
                continue
            if job.spec.cron:
                per_tick = to_scheduler_cron(job.spec.cron) is None
                self._tick(self._tick_message(job, job.next_run_at, per_tick=per_tick))
                current = self._store.get_job(job.job_id)
                if current is not None and current.schedule_version and not per_tick:
                    self.arm(current)
            else:
                self._fire_once(self._once_message(job))
            repaired += 1
        return repaired

    def upcoming(self, limit: int = 50) -> list[Job]:
        return self._store.scheduled_jobs(limit=limit)
