"""The execution engine: dispatch launches, follow ECS task state changes, enforce timeouts,
retry failures, stop executions, and repair what lost events left behind (the sweeper)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..config import Settings
from ..domain.ecs import TaskState, TaskStateChange
from ..domain.errors import LaunchFailed
from ..domain.lifecycle import (
    ECS_RUNNING,
    ECS_STOPPED,
    ENDED,
    ENDED_BY_SERVICE,
    LAUNCHABLE,
    LAUNCHED,
    RECORDED_ECS_STATUSES,
    RETRYABLE,
    STARTED,
    TIMEABLE,
    backoff,
    status_of_stopped_task,
)
from ..domain.limits import MAX_ERROR_CHARS, SQS_MAX_DELAY_SECONDS
from ..domain.messages import Launch, TimeoutCheck
from ..domain.model import Execution, Job, new_execution, now
from ..domain.model import ExecutionStatus as S
from ..domain.pools import Pool, load_pools, pool_for
from ..observability import MetricUnit, logger, metrics
from ..ports import ExecutionChanges, Executions, JobQueue, Jobs, MakeExecution, Pools, Runner, Slot, Statistics
from .notify import NotificationPublisher

STOPPED_BY_CLIENT = "stopped by a client"
LOST_TASK = "The ECS task of this execution is gone; it was not seen to end."
# A launch due within this many seconds is handled now rather than sent back to the queue.
LAUNCH_EARLY_SECONDS = 1.0
PREPARE_EARLY_SECONDS = 3.0  # with a wait: prepared (slot taken) this early, launched on its second


class ExecutionEngine:
    def __init__(self, jobs: Jobs, executions: Executions, pools: Pools, statistics: Statistics, queue: JobQueue,
                 runner: Runner, settings: Settings, *, clock: Callable[[], float] = now,
                 notifier: NotificationPublisher | None = None) -> None:
        self._jobs = jobs
        self._executions = executions
        self._pools = pools
        self._statistics = statistics
        self._queue = queue
        self._runner = runner
        self._notifier = notifier
        self._settings = settings
        self._clock = clock
        self.pools: tuple[Pool, ...] = load_pools(settings)

    # helpers --------------------------------------------------------------------------------

    def timeout_of(self, job: Job) -> float:
        return float(job.spec.timeout or self._settings.default_timeout)

    def _retry_of(self, job: Job, ended: Execution) -> MakeExecution | None:
        """The next execution of a job whose execution ended badly, if it has retries left."""
        if job.stopped or job.spec.retries <= job.retry_count:
            return None

        def make(current: Job) -> Execution:
            settings = self._settings
            delay = backoff(current.retry_count, settings.retry_backoff_min, settings.retry_backoff_factor,
                            settings.retry_backoff_max)
            at = self._clock()
            return new_execution(current, at, request_ip=ended.request_ip, due_at=round(at + delay, 3),
                                 metadata={"retryOf": ended.execution_id, "retry": current.retry_count + 1})

        return make

    def send_launch(self, execution: Execution, attempt: int = 0) -> str | None:
        """Send a launch message; if SQS fails the execution stays enqueued and the sweeper sends it."""
        due = execution.due_at
        delay = max(0.0, (due or 0) - self._clock())
        message = Launch.of(execution, due_at=due if delay > SQS_MAX_DELAY_SECONDS else None, attempt=attempt)
        try:
            return self._queue.send(message, delay_seconds=delay)
        except Exception:  # noqa: BLE001 - the sweeper repairs an unsent launch
            logger.exception("launch message not sent; the sweeper will send it",
                             extra={"execution_id": execution.execution_id})
            return None

    def finish(self, execution: Execution, status: S, *, exit_code: int | None = None, error: str | None = None,
               started_at: float | None = None, finished_at: float | None = None) -> Execution | None:
        """End an execution (if it has not ended yet), and start its retry when one is due.
        Returns the ended execution, or None when something else ended it first."""
        job = self._jobs.get_job(execution.job_id)
        follow_up = self._retry_of(job, execution) if job is not None and status in RETRYABLE else None
        fields: ExecutionChanges = {"finished_at": finished_at or self._clock()}
        if exit_code is not None:
            fields["exit_code"] = exit_code
        if error is not None:
            fields["error"] = error[:MAX_ERROR_CHARS]
        if started_at is not None and execution.started_at is None:
            fields["started_at"] = started_at
        moved = self._executions.transition(execution, status, follow_up=follow_up, **fields)
        if moved is None:
            return None
        ended, retry = moved
        if ended.started_at is not None:
            ended = self._announce(STARTED, job, ended)  # its RUNNING event is late or lost: in order
        self._announce(ENDED, job, ended)
        metrics.add_metric(name=f"Executions{status.value.capitalize()}", unit=MetricUnit.Count, value=1)
        logger.info("execution ended", extra={"execution_id": execution.execution_id, "status": status.value,
                                              "exit_code": exit_code, "error": error})
        if retry is not None:
            logger.info("retry scheduled", extra={"execution_id": retry.execution_id, "due_at": retry.due_at})
            self.send_launch(retry)
        return ended

    def _announce(self, event: str, job: Job | None, execution: Execution) -> Execution:
        """Tell the notifier an execution started or ended, once: the event is recorded on the
        execution after it was published, so a redelivered message publishes what was missed,
        and a duplicate publishes nothing. Returns the execution with what it has announced."""
        if self._notifier is None or job is None or event in execution.notified:
            return execution
        if self._notifier.publish(event, job, execution):
            # Recorded only when something was published: a job without notifications pays nothing.
            notified = execution.notified | {event}
            self._executions.update_execution(execution, None, notified=notified)
            return execution.with_changes(notified=notified)
        return execution

    # dispatch: launch messages ------------------------------------------------------------------

    def dispatch(self, launch: Launch, wait: Callable[[float], None] | None = None) -> None:
        """Launch an execution. With `wait`, an execution due within a few seconds is prepared
        now (expiration checked, pool slot taken) and launched on its second."""
        execution = self._executions.get_execution(launch.job_id, launch.execution_id)
        if execution is None or execution.status not in LAUNCHABLE:
            return  # a duplicate, or it was stopped or launched already
        at = self._clock()
        due = launch.due_at or execution.due_at
        if due is not None and due - at > (PREPARE_EARLY_SECONDS if wait else LAUNCH_EARLY_SECONDS):
            self._queue.send(Launch.of(execution, due_at=due, attempt=launch.attempt), delay_seconds=due - at)
            return
        job = self._jobs.get_job(execution.job_id)
        if job is None:
            self.finish(execution, S.FAILED, error="The job of this execution no longer exists.")
            return
        if job.spec.expiration is not None and at > job.spec.expiration:
            if self.finish(execution, S.EXPIRED, error="The job's expiration passed before it could start."):
                self._pools.release_slot(execution)
            return
        pool = pool_for(self.pools, execution.task_id)
        if execution.pool is None:
            taken = self._pools.take_slot(execution, pool.name, pool.max_running)
            if taken is Slot.MOVED:
                refreshed = self._executions.get_execution(execution.job_id, execution.execution_id)
                if refreshed is None or refreshed.status not in LAUNCHABLE or refreshed.pool is None:
                    return
                execution = refreshed  # holds a slot already: an earlier attempt died before launching
            elif taken is Slot.FULL:
                self._wait_for_slot(execution, launch)
                return
            else:
                execution = execution.with_changes(pool=pool.name)
        if wait is not None and due is not None and due > self._clock():
            wait(due - self._clock())
        self._launch(execution, job, pool, launch)

    def _wait_for_slot(self, execution: Execution, launch: Launch) -> None:
        """A full pool: the launch waits in the queue and is tried again, never dropped."""
        attempt = launch.attempt + 1
        delay = backoff(attempt, 0.5, 2.0, 30.0, jitter=0.2)
        self._executions.update_execution(execution, LAUNCHABLE, due_at=round(self._clock() + delay, 3))
        self._queue.send(Launch.of(execution, attempt=attempt), delay_seconds=max(1.0, delay))
        metrics.add_metric(name="LaunchesWaitingForPool", unit=MetricUnit.Count, value=1)

    def _launch(self, execution: Execution, job: Job, pool: Pool, launch: Launch) -> None:
        try:
            task_arn = self._runner.run(execution, job.spec, pool)
        except LaunchFailed as failure:
            if failure.retryable:
                attempt = launch.attempt + 1
                delay = backoff(attempt, 1.0, 2.0, 60.0, jitter=0.2)
                logger.warning("launch throttled; trying again", extra={"reason": failure.reason, "delay": delay})
                self._queue.send(Launch.of(execution, attempt=attempt), delay_seconds=delay)
                return
            if self.finish(execution, S.FAILED, error=f"The container could not be launched: {failure.reason}"):
                self._pools.release_slot(execution)
            return
        at = self._clock()
        moved = self._executions.transition(execution, S.PULLING, task_arn=task_arn, launched_at=at)
        if moved is None:
            current = self._executions.get_execution(execution.job_id, execution.execution_id)
            if current is not None and current.status.is_final and current.task_arn is None:
                # Stopped while it was being launched: the task must not run on.
                self._executions.update_execution(current, None, task_arn=task_arn)
                self._runner.stop(task_arn, STOPPED_BY_CLIENT)
            return
        metrics.add_metric(name="QueueWait", unit=MetricUnit.Seconds, value=max(0.0, at - execution.created_at))
        logger.info("execution launched", extra={"execution_id": execution.execution_id, "task_arn": task_arn})

    # monitor: ECS task state changes ------------------------------------------------------------

    def handle_task_change(self, change: TaskStateChange) -> None:
        if change.state.last_status not in RECORDED_ECS_STATUSES:
            return  # PROVISIONING, PENDING, DEPROVISIONING ...: nothing to record, nothing to read
        execution = self._executions.find_execution(change.execution_id)
        if execution is None:
            logger.warning("task state change for an unknown execution", extra={"execution_id": change.execution_id})
            return
        self.apply_task_state(execution, change.state)

    def apply_task_state(self, execution: Execution, state: TaskState) -> None:
        if state.last_status == ECS_RUNNING:
            started = state.started_at or self._clock()
            moved = self._executions.transition(execution, S.RUNNING, started_at=started, task_arn=state.arn)
            if moved is not None:
                latency = started - execution.created_at
                metrics.add_metric(name="LaunchLatency", unit=MetricUnit.Seconds, value=max(0.0, latency))
                job = self._jobs.get_job(execution.job_id)
                self._schedule_timeout(moved[0], job)
                self._announce(STARTED, job, moved[0])
            else:
                current = self._executions.get_execution(execution.job_id, execution.execution_id)
                if current is not None:
                    self._stop_if_it_should_not_run(current, state)
                    self._announce_missed(current, STARTED)
        elif state.last_status == ECS_STOPPED:
            status = status_of_stopped_task(state.exit_code)
            error = None if state.exit_code is not None else (
                state.reason or "The container stopped without an exit code.")
            ended = self.finish(execution, status, exit_code=state.exit_code, error=error,
                                started_at=state.started_at, finished_at=state.stopped_at)
            if ended is None and state.exit_code is not None:
                # Stopped or timed out by us before the container ended: keep its exit code.
                current = self._executions.get_execution(execution.job_id, execution.execution_id)
                if current is not None and current.exit_code is None and current.status in ENDED_BY_SERVICE:
                    self._executions.update_execution(current, frozenset({current.status}), exit_code=state.exit_code)
            if ended is None:
                current = self._executions.get_execution(execution.job_id, execution.execution_id)
                if current is not None:
                    self._announce_missed(current, ENDED)
            # The container is gone: its pool slot is free (once, whoever sees it first).
            self._pools.release_slot(execution)

    def _stop_if_it_should_not_run(self, current: Execution, state: TaskState) -> None:
        """A container seen running for an execution that has ended: it was stopped or timed out
        before its task was recorded (the dispatcher died between RunTask and the write) or
        before it started. The task must not run on; StopTask on a task that is already gone
        does nothing."""
        if not current.status.is_final:
            return
        if current.status not in ENDED_BY_SERVICE and current.exit_code is not None:
            return  # its container's end was seen: this RUNNING event is merely late
        if current.task_arn is None:
            self._executions.update_execution(current, None, task_arn=state.arn)
        self._runner.stop(state.arn, current.error or STOPPED_BY_CLIENT)
        logger.warning("a container of an ended execution was running; stopped",
                       extra={"execution_id": current.execution_id, "task_arn": state.arn})

    def _announce_missed(self, current: Execution, event: str) -> None:
        """A redelivered event found the execution moved already: publish what a failed earlier
        attempt may have left unpublished, in lifecycle order: a `started` whose `ended` was
        announced already is never published after it."""
        if self._notifier is None or event in current.notified:
            return
        if event == STARTED and (ENDED in current.notified or current.started_at is None):
            return
        if event == ENDED and not current.status.is_final:
            return
        self._announce(event, self._jobs.get_job(current.job_id), current)

    # timeouts -----------------------------------------------------------------------------------

    def _schedule_timeout(self, execution: Execution, job: Job | None) -> None:
        if job is None:
            return
        deadline = round((execution.started_at or self._clock()) + self.timeout_of(job), 3)
        try:
            self._queue.send(TimeoutCheck.of(execution, deadline), delay_seconds=deadline - self._clock())
        except Exception:  # noqa: BLE001 - the sweeper enforces timeouts whose check was lost
            logger.exception("timeout check not sent; the sweeper will enforce it")

    def check_timeout(self, check: TimeoutCheck) -> None:
        execution = self._executions.get_execution(check.job_id, check.execution_id)
        if execution is None or execution.status not in TIMEABLE:
            return
        remaining = check.due_at - self._clock()
        if remaining > 0.5:
            self._queue.send(check, delay_seconds=remaining)
            return
        job = self._jobs.get_job(execution.job_id)
        if job is not None:
            self.enforce_timeout(execution, job)

    def enforce_timeout(self, execution: Execution, job: Job) -> None:
        limit = self.timeout_of(job)
        ended = self.finish(execution, S.TIMEDOUT, error=f"The execution ran longer than its timeout of {limit:g} s.")
        if ended is not None and execution.task_arn:
            self._runner.stop(execution.task_arn, f"timed out after {limit:g} s")

    # stop ---------------------------------------------------------------------------------------

    def stop_execution(self, execution: Execution, reason: str = STOPPED_BY_CLIENT) -> bool:
        """Stop one execution; False when it had already ended."""
        if execution.status.is_final:
            return False
        ended = self.finish(execution, S.STOPPED, error=reason)
        if ended is None:
            return False
        current = self._executions.get_execution(execution.job_id, execution.execution_id) or execution
        if current.task_arn:
            self._runner.stop(current.task_arn, reason)
        else:
            self._pools.release_slot(current)  # never launched: nothing else will free its slot
        return True

    # the sweeper --------------------------------------------------------------------------------

    def sweep(self) -> dict[str, int]:
        """Repair what lost messages and events left behind. Idempotent; runs every minute."""
        at = self._clock()
        counts = {"resent": 0, "finalised": 0, "timedout": 0}
        grace = self._settings.sweep_grace_seconds
        for status in sorted(LAUNCHABLE):
            for execution in self._executions.active_executions(status):
                if (execution.due_at or execution.created_at) + grace < at:
                    self._executions.update_execution(execution, LAUNCHABLE, due_at=round(at, 3))
                    self.send_launch(execution.with_changes(due_at=None))
                    counts["resent"] += 1
        launched = [e for status in sorted(LAUNCHED) for e in self._executions.active_executions(status)]
        with_tasks = [e for e in launched if e.task_arn]
        states = self._runner.describe([e.task_arn for e in with_tasks if e.task_arn]) if with_tasks else {}
        jobs: dict[str, Job | None] = {}
        for execution in with_tasks:
            state = states.get(execution.task_arn or "")
            if state is None:
                if self.finish(execution, S.FAILED, error=LOST_TASK):
                    self._pools.release_slot(execution)
                    counts["finalised"] += 1
                continue
            if state.last_status == ECS_STOPPED:
                self.apply_task_state(execution, state)
                counts["finalised"] += 1
                continue
            if state.last_status == ECS_RUNNING and execution.status is not S.RUNNING:
                self.apply_task_state(execution, state)
                execution = self._executions.get_execution(execution.job_id, execution.execution_id) or execution
            if execution.status in TIMEABLE and execution.started_at is not None:
                job = jobs.setdefault(execution.job_id, self._jobs.get_job(execution.job_id))
                if job is not None and at > execution.started_at + self.timeout_of(job) + 1:
                    self.enforce_timeout(execution, job)
                    counts["timedout"] += 1
        return counts

    # farm status --------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        stats = self._statistics.stats()
        running = self._pools.pool_running([p.name for p in self.pools])
        return {
            "executions": {s.value: max(0, stats.get(s.value, 0)) for s in S},
            "tasks": stats.get("tasks", 0),
            "jobs": stats.get("jobs", 0),
            "scheduled": max(0, stats.get("scheduled", 0)),
            "pools": [{"name": p.name, "match": p.match, "cluster": p.cluster, "running": max(0, running[p.name]),
                       "maxRunning": p.max_running or None} for p in self.pools],
        }
