"""The execution engine: dispatch launches, follow ECS task state changes, enforce timeouts,
retry failures, stop executions, and repair what lost events left behind (the sweeper)."""
from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from ..config import Settings
from ..domain.errors import Conflict, NotFound, ValidationError
from ..domain.lifecycle import RETRYABLE, backoff, sources
from ..domain.model import ACTIVE_STATUSES, Execution, Job, new_id, now
from ..domain.model import ExecutionStatus as S
from ..domain.pools import Pool, load_pools, pool_for
from ..observability import MetricUnit, logger, metrics

STOPPED_BY_CLIENT = "stopped by a client"
LOST_TASK = "The ECS task of this execution is gone; it was not seen to end."


class ExecutionEngine:
    def __init__(self, store: Any, queue: Any, runner: Any, settings: Settings,
                 clock: Callable[[], float] = now, notifier: Any = None) -> None:
        self._store = store
        self._queue = queue
        self._runner = runner
        self._notifier = notifier
        self._settings = settings
        self._clock = clock
        self.scheduling: Any = None  # set by the wiring: scheduling needs the engine and back
        self.pools: tuple[Pool, ...] = load_pools(settings)

    # helpers --------------------------------------------------------------------------------

    def _timeout_of(self, job: Job) -> float:
        return float(job.spec.timeout or self._settings.default_timeout)

    def _retry_of(self, job: Job, ended: Execution) -> Callable[[Job], Execution] | None:
        """The next execution of a job whose execution ended badly, if it has retries left."""
        if job.stopped or job.spec.retries <= job.retry_count:
            return None

        def make(current: Job) -> Execution:
            delay = backoff(current.retry_count, self._settings.retry_backoff_min,
                            self._settings.retry_backoff_factor, self._settings.retry_backoff_max)
            at = self._clock()
            return Execution(
                task_id=ended.task_id, job_id=ended.job_id, execution_id=new_id(), image=current.spec.image,
                command=current.spec.command, status=S.ENQUEUED, created_at=at, due_at=round(at + delay, 3),
                request_ip=ended.request_ip, metadata={"retryOf": ended.execution_id,
                                                       "retry": current.retry_count + 1},
            )

        return make

    def _send_launch(self, execution: Execution) -> str | None:
        """Send a launch message; if SQS fails the execution stays enqueued and the sweeper sends it."""
        due = execution.due_at
        delay = max(0.0, (due or 0) - self._clock())
        try:
            return self._queue.send_launch(execution, delay_seconds=delay,
                                           due_at=due if delay > self._queue.MAX_DELAY else None)
        except Exception:  # noqa: BLE001 - the sweeper repairs an unsent launch
            logger.exception("launch message not sent; the sweeper will send it",
                             extra={"execution_id": execution.execution_id})
            return None

    def finish(self, execution: Execution, status: S, *, exit_code: int | None = None, error: str | None = None,
               started_at: float | None = None, finished_at: float | None = None) -> Execution | None:
        """End an execution (if it has not ended yet), and start its retry when one is due.
        Returns the ended execution, or None when something else ended it first."""
        job = self._store.get_job(execution.job_id)
        follow_up = self._retry_of(job, execution) if job is not None and status in RETRYABLE else None
        fields: dict[str, Any] = {"finished_at": finished_at or self._clock()}
        if exit_code is not None:
            fields["exit_code"] = exit_code
        if error is not None:
            fields["error"] = error[:4000]
        if started_at is not None and execution.started_at is None:
            fields["started_at"] = started_at
        moved = self._store.transition(execution, status, sources(status), follow_up=follow_up, **fields)
        if moved is None:
            return None
        ended, retry = moved
        self._announce("ended", job, ended)
        metrics.add_metric(name=f"Executions{status.value.capitalize()}", unit=MetricUnit.Count, value=1)
        logger.info("execution ended", extra={"execution_id": execution.execution_id, "status": status.value,
                                              "exit_code": exit_code, "error": error})
        if retry is not None:
            logger.info("retry scheduled", extra={"execution_id": retry.execution_id, "due_at": retry.due_at})
            self._send_launch(retry)
        return ended

    def _announce(self, event: str, job: Job | None, execution: Execution) -> None:
        """Tell the notifier an execution started or ended, once: the event is recorded on the
        execution after it was published, so a redelivered message publishes what was missed,
        and a duplicate publishes nothing."""
        if self._notifier is None or job is None or event in execution.notified:
            return
        if self._notifier.publish(event, job, execution):
            # Recorded only when something was published: a job without notifications pays nothing.
            self._store.update_execution(execution, None, notified=set(execution.notified | {event}))

    # dispatch: the jobs queue -------------------------------------------------------------------

    def handle_message(self, message: dict[str, Any], receive_count: int = 1) -> None:
        kind = message.get("kind")
        if kind == "timeout":
            self.check_timeout(message)
        elif kind in ("schedule", "tick"):
            self.scheduling.handle(message)
        else:
            self.dispatch(message)

    def dispatch(self, message: dict[str, Any], wait: Callable[[float], None] | None = None) -> None:
        """Launch an execution. With `wait`, an execution due within a few seconds is prepared
        now (expiration checked, pool slot taken) and launched on its second."""
        execution = self._store.get_execution(message["jobId"], message["executionId"])
        if execution is None or execution.status is not S.ENQUEUED:
            return  # a duplicate, or it was stopped or launched already
        at = self._clock()
        due = message.get("dueAt") or execution.due_at
        if due is not None and due - at > (3 if wait else 1):
            self._queue.send_launch(execution, delay_seconds=due - at, due_at=due, attempt=message.get("attempt", 0))
            return
        job = self._store.get_job(execution.job_id)
        if job is None:
            self.finish(execution, S.FAILED, error="The job of this execution no longer exists.")
            return
        if job.spec.expiration is not None and at > job.spec.expiration:
            if self.finish(execution, S.EXPIRED, error="The job's expiration passed before it could start."):
                self._store.release_slot(execution)
            return
        pool = pool_for(self.pools, execution.task_id)
        if execution.pool is None:
            taken = self._store.take_slot(execution, pool.name, pool.max_running)
            if taken == "moved":
                refreshed = self._store.get_execution(execution.job_id, execution.execution_id)
                if refreshed is None or refreshed.status is not S.ENQUEUED or refreshed.pool is None:
                    return
                execution = refreshed  # holds a slot already: an earlier attempt died before launching
            elif taken == "full":
                self._wait_for_slot(execution, pool, message)
                return
            else:
                execution = execution.with_changes(pool=pool.name)
        if wait is not None and due is not None and due > self._clock():
            wait(due - self._clock())
        self._launch(execution, job, pool, message)

    def _wait_for_slot(self, execution: Execution, pool: Pool, message: dict[str, Any]) -> None:
        """A full pool: the launch waits in the queue and is tried again, never dropped."""
        attempt = int(message.get("attempt", 0)) + 1
        delay = min(30.0, 0.5 * 2 ** min(attempt, 6)) * random.uniform(0.8, 1.2)
        self._store.update_execution(execution, frozenset({S.ENQUEUED}), due_at=round(self._clock() + delay, 3))
        self._queue.send_launch(execution, delay_seconds=max(1.0, delay), attempt=attempt)
        metrics.add_metric(name="LaunchesWaitingForPool", unit=MetricUnit.Count, value=1)

    def _launch(self, execution: Execution, job: Job, pool: Pool, message: dict[str, Any]) -> None:
        from ..adapters.ecs import LaunchFailed

        try:
            task_arn = self._runner.run(execution, job.spec, pool)
        except LaunchFailed as failure:
            if failure.retryable:
                attempt = int(message.get("attempt", 0)) + 1
                delay = min(60.0, 2.0 ** min(attempt, 6)) * random.uniform(0.8, 1.2)
                logger.warning("launch throttled; trying again", extra={"reason": failure.reason, "delay": delay})
                self._queue.send_launch(execution, delay_seconds=delay, attempt=attempt)
                return
            if self.finish(execution, S.FAILED, error=f"The container could not be launched: {failure.reason}"):
                self._store.release_slot(execution)
            return
        at = self._clock()
        moved = self._store.transition(execution, S.PULLING, frozenset({S.ENQUEUED}), task_arn=task_arn,
                                       launched_at=at)
        if moved is None:
            current = self._store.get_execution(execution.job_id, execution.execution_id)
            if current is not None and current.status.is_final and current.task_arn is None:
                # Stopped while it was being launched: the task must not run on.
                self._store.update_execution(current, None, task_arn=task_arn)
                self._runner.stop(task_arn, STOPPED_BY_CLIENT)
            return
        metrics.add_metric(name="QueueWait", unit=MetricUnit.Seconds, value=max(0.0, at - execution.created_at))
        logger.info("execution launched", extra={"execution_id": execution.execution_id, "task_arn": task_arn})

    # monitor: ECS task state changes ------------------------------------------------------------

    def handle_task_event(self, event: dict[str, Any]) -> None:
        detail = event.get("detail") or {}
        execution_id = detail.get("startedBy") or ""
        if len(execution_id) != 36:
            return  # not a task of ours
        if detail.get("lastStatus") not in ("RUNNING", "STOPPED"):
            return  # PROVISIONING, PENDING, DEPROVISIONING ...: nothing to record, nothing to read
        execution = self._store.find_execution(execution_id)
        if execution is None:
            logger.warning("task state change for an unknown execution", extra={"execution_id": execution_id})
            return
        from ..adapters.ecs import task_state

        self.apply_task_state(execution, task_state(detail))

    def apply_task_state(self, execution: Execution, state: Any) -> None:
        if state.last_status == "RUNNING":
            started = state.started_at or self._clock()
            moved = self._store.transition(execution, S.RUNNING, frozenset({S.ENQUEUED, S.PULLING}),
                                           started_at=started, task_arn=state.arn)
            if moved is not None:
                latency = started - execution.created_at
                metrics.add_metric(name="LaunchLatency", unit=MetricUnit.Seconds, value=max(0.0, latency))
                job = self._store.get_job(execution.job_id)
                self._schedule_timeout(moved[0], job)
                self._announce("started", job, moved[0])
            else:
                self._announce_missed(execution, "started")
        elif state.last_status == "STOPPED":
            if state.exit_code is not None:
                status, error = (S.DONE, None) if state.exit_code == 0 else (S.FAILED, None)
            else:
                status, error = S.FAILED, state.reason or "The container stopped without an exit code."
            ended = self.finish(execution, status, exit_code=state.exit_code, error=error,
                                started_at=state.started_at, finished_at=state.stopped_at)
            if ended is None and state.exit_code is not None:
                # Stopped or timed out by us before the container ended: keep its exit code.
                current = self._store.get_execution(execution.job_id, execution.execution_id)
                if current is not None and current.exit_code is None and current.status in (S.STOPPED, S.TIMEDOUT):
                    self._store.update_execution(current, frozenset({current.status}), exit_code=state.exit_code)
            if ended is None:
                self._announce_missed(execution, "ended")
            # The container is gone: its pool slot is free (once, whoever sees it first).
            self._store.release_slot(execution)

    def _announce_missed(self, execution: Execution, event: str) -> None:
        """A redelivered event found the execution moved already: publish what a failed earlier
        attempt may have left unpublished."""
        if self._notifier is None:
            return
        current = self._store.get_execution(execution.job_id, execution.execution_id)
        if current is None or event in current.notified:
            return
        if (event == "ended" and current.status.is_final) or (event == "started" and current.started_at is not None):
            self._announce(event, self._store.get_job(current.job_id), current)

    # timeouts -----------------------------------------------------------------------------------

    def _schedule_timeout(self, execution: Execution, job: Job | None) -> None:
        if job is None:
            return
        deadline = (execution.started_at or self._clock()) + self._timeout_of(job)
        try:
            self._queue.send_timeout(execution, due_at=round(deadline, 3), delay_seconds=deadline - self._clock())
        except Exception:  # noqa: BLE001 - the sweeper enforces timeouts whose check was lost
            logger.exception("timeout check not sent; the sweeper will enforce it")

    def check_timeout(self, message: dict[str, Any]) -> None:
        execution = self._store.get_execution(message["jobId"], message["executionId"])
        if execution is None or execution.status is not S.RUNNING:
            return
        due = float(message.get("dueAt") or 0)
        remaining = due - self._clock()
        if remaining > 0.5:
            self._queue.send_timeout(execution, due_at=due, delay_seconds=remaining)
            return
        job = self._store.get_job(execution.job_id)
        if job is not None:
            self.enforce_timeout(execution, job)

    def enforce_timeout(self, execution: Execution, job: Job) -> None:
        limit = self._timeout_of(job)
        ended = self.finish(execution, S.TIMEDOUT, error=f"The execution ran longer than its timeout of {limit:g} s.")
        if ended is not None and execution.task_arn:
            self._runner.stop(execution.task_arn, f"timed out after {limit:g} s")

    # stop and retry -----------------------------------------------------------------------------

    def stop_execution(self, execution: Execution, reason: str = STOPPED_BY_CLIENT) -> bool:
        """Stop one execution; False when it had already ended."""
        if execution.status.is_final:
            return False
        ended = self.finish(execution, S.STOPPED, error=reason)
        if ended is None:
            return False
        current = self._store.get_execution(execution.job_id, execution.execution_id) or execution
        if current.task_arn:
            self._runner.stop(current.task_arn, reason)
        else:
            self._store.release_slot(current)  # never launched: nothing else will free its slot
        return True

    def stop_job(self, job: Job) -> list[str]:
        """Stop the job's executions and every future run (retries, schedules) until it is put
        again or retried."""
        self._store.set_job_stopped(job.job_id, True)
        if self.scheduling is not None and (job.spec.scheduled or job.schedule_version):
            self.scheduling.disarm(job)
        stopped = []
        for execution_id in sorted(job.active):
            execution = self._store.get_execution(job.job_id, execution_id)
            if execution is not None and self.stop_execution(execution):
                stopped.append(execution_id)
        return stopped

    def retry_job(self, job: Job) -> tuple[Execution, str | None]:
        if job.execution_count == 0:
            raise ValidationError("The job has never run, so it cannot be retried.", field="jobId")

        def make(current: Job) -> Execution:
            return Execution(task_id=current.task_id, job_id=current.job_id, execution_id=new_id(),
                             image=current.spec.image, command=current.spec.command, status=S.ENQUEUED,
                             created_at=self._clock(), metadata={"retriedByClient": True})

        _, execution = self._store.add_execution(job.job_id, make, require_idle=True, clear_stopped=True)
        return execution, self._send_launch(execution)

    # the sweeper --------------------------------------------------------------------------------

    def sweep(self) -> dict[str, int]:
        """Repair what lost messages and events left behind. Idempotent; runs every minute."""
        at = self._clock()
        counts = {"resent": 0, "finalised": 0, "timedout": 0}
        grace = self._settings.sweep_grace_seconds
        for execution in self._store.active_executions(S.ENQUEUED):
            if (execution.due_at or execution.created_at) + grace < at:
                self._store.update_execution(execution, frozenset({S.ENQUEUED}), due_at=round(at, 3))
                self._send_launch(execution.with_changes(due_at=None))
                counts["resent"] += 1
        launched = [e for status in (S.PULLING, S.RUNNING) for e in self._store.active_executions(status)]
        with_tasks = [e for e in launched if e.task_arn]
        states = self._runner.describe([e.task_arn for e in with_tasks]) if with_tasks else {}
        jobs: dict[str, Job | None] = {}
        for execution in with_tasks:
            state = states.get(execution.task_arn)
            if state is None:
                if self.finish(execution, S.FAILED, error=LOST_TASK):
                    self._store.release_slot(execution)
                    counts["finalised"] += 1
                continue
            if state.last_status == "STOPPED":
                self.apply_task_state(execution, state)
                counts["finalised"] += 1
                continue
            if state.last_status == "RUNNING" and execution.status is S.PULLING:
                self.apply_task_state(execution, state)
                execution = self._store.get_execution(execution.job_id, execution.execution_id) or execution
            if execution.status is S.RUNNING and execution.started_at is not None:
                job = jobs.setdefault(execution.job_id, self._store.get_job(execution.job_id))
                if job is not None and at > execution.started_at + self._timeout_of(job) + 1:
                    self.enforce_timeout(execution, job)
                    counts["timedout"] += 1
        if self.scheduling is not None:
            counts["schedules"] = self.scheduling.sweep()
        return counts

    # farm status --------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        stats = self._store.stats()
        running = self._store.pool_running([p.name for p in self.pools])
        return {
            "executions": {s.value: max(0, stats.get(s.value, 0)) for s in S},
            "tasks": stats.get("tasks", 0),
            "jobs": stats.get("jobs", 0),
            "scheduled": max(0, stats.get("scheduled", 0)),
            "scheduledJobs": self.scheduling.upcoming() if self.scheduling is not None else [],
            "pools": [{"name": p.name, "match": p.match, "cluster": p.cluster, "running": max(0, running[p.name]),
                       "maxRunning": p.max_running or None} for p in self.pools],
        }


def find_job(store: Any, task_id: str, job_id: str) -> Job:
    job = store.get_job(job_id)
    if job is None or job.task_id != task_id:
        raise NotFound(f"Job '{job_id}' was not found in task '{task_id}'.", field="jobId")
    return job


__all__ = ["ExecutionEngine", "Conflict", "ACTIVE_STATUSES", "find_job"]
