"""The execution engine: dispatch launches, follow ECS task state changes, enforce timeouts,
retry failures, stop executions, and repair what lost events left behind (the sweeper)."""
from __future__ import annotations

import random
from collections.abc import Callable
from functools import partial
from typing import Any

from ..config import Settings
from ..domain.ecs import TaskState, TaskStateChange, cluster_of
from ..domain.errors import LaunchFailed, UnreadableRecords
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
    sources,
    status_of_stopped_task,
)
from ..domain.limits import ECS_DESCRIBE_BATCH, MAX_ERROR_CHARS, SQS_MAX_DELAY_SECONDS
from ..domain.messages import Launch, TimeoutCheck
from ..domain.model import Execution, Job, Placement, new_execution, now
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
# The most executions one reconciler worklist of slot holders reads (launched, prepared, held;
# DescribeTasks takes 100 a call): well above the running tasks of an account's Fargate quota. Pools
# are recounted on every pass whose holders all fit.
LISTING_LIMIT = 10_000
# A throttled RunTask: the launches this process makes in the next half second are sent back
# without asking (the bucket is empty; a batch would spend its calls for nothing), and each
# throttled launch comes back at a random moment over the time the queue's backlog takes at
# Fargate's launch rate, a little faster so the bucket stays in use (LAUNCH_OVERDRIVE).
THROTTLE_PAUSE_SECONDS = 0.5
LAUNCH_OVERDRIVE = 1.25
BACKLOG_READ_SECONDS = 5.0  # how long one reading of the backlog serves this process


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
        self._drifts: dict[str, tuple[int, int]] = {}  # pool -> (count, holders) seen by the last pass
        self._paused_until = 0.0  # after a throttled RunTask: launches are sent back until then
        self._backlog: tuple[float, int] | None = None  # (read at, messages pending on the jobs queue)
        # Drawn from the process's generator, so a process that seeds it (the fault harness)
        # replays the same spread of throttled launches; one a Lambda starts is seeded by the OS.
        self._random = random.Random(random.getrandbits(64))

    # helpers --------------------------------------------------------------------------------

    def timeout_of(self, execution: Execution) -> float:
        """The timeout frozen on the execution (none frozen: the default)."""
        return float(execution.timeout or self._settings.default_timeout)

    def _job_for(self, execution: Execution, *, retrying: bool = False) -> Job | None:
        """The job, read only when ending or announcing the execution needs it: an execution
        whose job had no notifications and (for an ending that retries) no retries has its
        policy frozen on it, and costs no read."""
        # A retry made by the engine says which it is: the last one allowed has no retry after it.
        retries_left = int(execution.metadata.get("retry") or 0) < execution.job_retries
        if not ((self._notifier is not None and execution.notifies) or (retrying and retries_left)):
            return None
        return self._jobs.get_job(execution.job_id)

    def placement(self, task_id: str) -> Placement:
        """The cluster and size a new execution of a task freezes: its pool's, as configured now."""
        return pool_for(self.pools, task_id).placement

    def _pool_of(self, execution: Execution) -> Pool:
        """The pool whose slot the execution holds (named on it), else the one its task matches,
        with the cluster and size frozen on the execution."""
        if execution.pool is not None:
            for pool in self.pools:
                if pool.name == execution.pool:
                    return pool.placed(execution.placement)
        return pool_for(self.pools, execution.task_id).placed(execution.placement)

    def _stop_task(self, task_arn: str, reason: str) -> bool:
        """Ask for a task to stop; a failure is left to the reconciler, which asks again until
        the task is seen stopped (the execution keeps its slot until then)."""
        try:
            self._runner.stop(task_arn, reason)
            return True
        except Exception:  # noqa: BLE001 - repeated by the reconciler
            logger.exception("StopTask failed; the reconciler will ask again", extra={"task_arn": task_arn})
            metrics.add_metric(name="StopTaskFailed", unit=MetricUnit.Count, value=1)
            return False

    def _renew(self, execution: Execution, delay: float, *, attempt: int,
               due_at: float | None = None, resent: bool = False) -> bool:
        """Send the next launch message of an execution, as the one that may act: it takes the
        next launch generation first, so the message being handled and any copy of it act no
        more. False when the execution moved on meanwhile."""
        fields: ExecutionChanges = {"due_at": round(due_at if due_at is not None else self._clock() + delay, 3)}
        if resent:
            fields["resends"] = execution.resends + 1
        renewed = self._executions.renew_launch(execution, **fields)
        if renewed is None:
            return False
        self.send_launch(renewed, attempt)  # its delay is until the due time just stored
        return True

    def _retry_of(self, job: Job, ended: Execution) -> MakeExecution | None:
        """The next execution of a job whose execution ended badly, if it has retries left."""
        if job.stopped or job.spec.retries <= job.retry_count:
            return None

        def make(current: Job) -> Execution:
            settings = self._settings
            delay = backoff(current.retry_count, settings.retry_backoff_min, settings.retry_backoff_factor,
                            settings.retry_backoff_max)
            at = self._clock()
            return new_execution(current, at, placement=self.placement(current.task_id), request_ip=ended.request_ip,
                                 due_at=round(at + delay, 3),
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
               started_at: float | None = None, finished_at: float | None = None,
               release_slot: bool = False) -> Execution | None:
        """End an execution (if it has not ended yet), and start its retry when one is due;
        `release_slot` when its container is gone (the slot is given back in the same write).
        Returns the ended execution, or None when something else ended it first."""
        job = self._job_for(execution, retrying=status in RETRYABLE)
        follow_up = self._retry_of(job, execution) if job is not None and status in RETRYABLE else None
        fields: ExecutionChanges = {"finished_at": finished_at or self._clock()}
        if exit_code is not None:
            fields["exit_code"] = exit_code
        if error is not None:
            fields["error"] = error[:MAX_ERROR_CHARS]
        if started_at is not None and execution.started_at is None:
            fields["started_at"] = started_at
        ending = execution.with_changes(status=status, started_at=execution.started_at or started_at)
        if job is not None and self._owes_on_ending(job, ending):
            # On the reconciler's worklist until announced: a function that dies between this
            # write and publishing loses no notification.
            fields["announcing"] = True
        moved = self._executions.transition(execution, status, follow_up=follow_up, release_slot=release_slot,
                                            job=job if follow_up is not None else None, **fields)
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
            if execution.announcing and (event == ENDED or not self._notifier.owes(ENDED, job, execution)):
                # The ending owes nothing more (its `started` was all it had to publish).
                self._executions.update_execution(execution, None, notified=notified, announcing=False)
                return execution.with_changes(notified=notified, announcing=False)
            self._executions.update_execution(execution, None, notified=notified)
            return execution.with_changes(notified=notified)
        return execution

    # dispatch: launch messages ------------------------------------------------------------------

    def dispatch(self, launch: Launch, wait: Callable[[float], None] | None = None) -> None:
        """Launch an execution. With `wait`, an execution due within a few seconds is prepared
        now (expiration checked, pool slot taken) and launched on its second. A message with the
        execution's snapshot is acted on without reading it: every write conditions on the
        execution being as the snapshot says, and one that finds otherwise reads it."""
        execution = launch.snapshot()
        if execution is None:
            execution = self._current(launch)
            if execution is None:
                return
        at = self._clock()
        due = launch.due_at or execution.due_at
        if due is not None and due - at > (PREPARE_EARLY_SECONDS if wait else LAUNCH_EARLY_SECONDS):
            self._renew(execution, due - at, attempt=launch.attempt, due_at=due)
            return
        expiration = execution.expiration
        if expiration is not None and at > expiration and launch.frozen is not None:
            current = self._current(launch)  # rare: decided on the stored execution, not the snapshot
            if current is None:
                return
            execution = current
        # One that holds a slot already may have a task from an earlier attempt: it is launched
        # (the client token finds that task), never expired.
        if execution.pool is None and expiration is not None and at > expiration:
            self.finish(execution, S.EXPIRED, error="The job's expiration passed before it could start.")
            return
        pool = self._pool_of(execution)
        fresh_slot = False
        if execution.pool is None:
            taken = self._pools.take_slot(execution, pool.name, pool.max_running)
            if taken is Slot.MOVED:
                refreshed = self._current(launch)
                if refreshed is None or refreshed.pool is None:
                    return
                execution = refreshed  # holds a slot already: an earlier attempt died before launching
                pool = self._pool_of(execution)
            elif taken is Slot.FULL:
                self._wait_for_slot(execution, launch)
                return
            else:
                execution, fresh_slot = execution.with_changes(pool=pool.name), True
        if wait is not None and due is not None and due > self._clock():
            wait(due - self._clock())
            current = self._executions.get_execution(execution.job_id, execution.execution_id)
            if current is not None and fresh_slot and expiration is not None and self._clock() > expiration:
                current = self.finish(current, S.EXPIRED, error="The job's expiration passed before it could start.")
            if current is None or current.status not in LAUNCHABLE:
                if fresh_slot and current is not None:
                    self._pools.release_slot(current)  # stopped or expired while it waited: no task was asked for
                return
        self._launch(execution, pool, launch, fresh_slot)

    def _throttle_delay(self) -> float:
        """When a throttled launch tries again: uniformly over the time the backlog takes at
        the launch rate (at least a second or two), so attempts arrive as evenly as the bucket
        refills instead of in waves, and most launches are throttled once at most."""
        at = self._clock()
        if self._backlog is None or at - self._backlog[0] > BACKLOG_READ_SECONDS:
            try:
                self._backlog = (at, self._queue.pending())
            except Exception:  # noqa: BLE001 - without a reading, the last one (or a small window) serves
                logger.exception("the jobs queue's backlog could not be read")
                self._backlog = (at, self._backlog[1] if self._backlog else 0)
        window = self._backlog[1] / (self._settings.launch_rate * LAUNCH_OVERDRIVE)
        return self._random.uniform(1.0, min(float(SQS_MAX_DELAY_SECONDS), max(2.0, window)))

    def _current(self, launch: Launch) -> Execution | None:
        """The stored execution a launch message names, if that message may still act on it."""
        execution = self._executions.get_execution(launch.job_id, launch.execution_id)
        if execution is None or execution.status not in LAUNCHABLE:
            return None  # a duplicate, or it was stopped or launched already (an ending owed is the reconciler's)
        if launch.generation != execution.launches:
            return None  # a copy of a launch message that another one has replaced
        return execution

    def _wait_for_slot(self, execution: Execution, launch: Launch) -> None:
        """A full pool: the launch waits in the queue and is tried again, never dropped."""
        attempt = launch.attempt + 1
        delay = max(1.0, backoff(attempt, 0.5, 2.0, 30.0, jitter=0.2))
        if self._renew(execution, delay, attempt=attempt):
            metrics.add_metric(name="LaunchesWaitingForPool", unit=MetricUnit.Count, value=1)

    def _launch(self, execution: Execution, pool: Pool, launch: Launch, fresh_slot: bool) -> None:
        if self._clock() < self._paused_until:
            metrics.add_metric(name="LaunchesPaced", unit=MetricUnit.Count, value=1)
            self._renew(execution, self._throttle_delay(), attempt=launch.attempt + 1)  # it keeps its slot
            return
        try:
            task_arn = self._runner.run(execution, execution.spec, pool)
        except LaunchFailed as failure:
            if failure.retryable:
                self._paused_until = self._clock() + THROTTLE_PAUSE_SECONDS
                delay = self._throttle_delay()
                logger.warning("launch throttled; trying again", extra={"reason": failure.reason, "delay": delay})
                metrics.add_metric(name="LaunchesThrottled", unit=MetricUnit.Count, value=1)
                self._renew(execution, delay, attempt=launch.attempt + 1)
                return
            ended = self.finish(execution, S.FAILED, error=f"The container could not be launched: {failure.reason}")
            if ended is not None and fresh_slot:
                self._pools.release_slot(ended)  # refused: no task exists
            # A slot held from an earlier attempt may have a task: the reconciler finds out.
            return
        at = self._clock()
        moved = self._executions.transition(execution, S.PULLING, task_arn=task_arn, launched_at=at)
        if moved is None:
            current = self._executions.get_execution(execution.job_id, execution.execution_id)
            if current is not None and current.status.is_final and current.task_arn is None:
                # Stopped while it was being launched: the task must not run on.
                self._executions.update_execution(current, None, task_arn=task_arn)
                self._stop_task(task_arn, current.error or STOPPED_BY_CLIENT)
            return
        metrics.add_metric(name="QueueWait", unit=MetricUnit.Seconds, value=max(0.0, at - execution.created_at))
        logger.info("execution launched", extra={"execution_id": execution.execution_id, "task_arn": task_arn})

    # monitor: ECS task state changes ------------------------------------------------------------

    def handle_task_change(self, change: TaskStateChange) -> Execution | None:
        """Record what an ECS task state change says; returns the execution as it then is."""
        if change.state.last_status not in RECORDED_ECS_STATUSES:
            return None  # PROVISIONING, PENDING, DEPROVISIONING ...: nothing to record, nothing to read
        execution = self._executions.get_execution(change.job_id, change.execution_id)  # by its key
        if execution is None:
            logger.warning("task state change for an unknown execution", extra={"execution_id": change.execution_id})
            return None
        return self.apply_task_state(execution, change.state)

    def apply_task_state(self, execution: Execution, state: TaskState) -> Execution | None:
        """Returns the execution as it is after the state was applied (None if it is gone)."""
        if state.last_status == ECS_RUNNING:
            started = state.started_at or self._clock()
            # Conditional on its job not being stopped, so the usual case reads no job.
            moved = self._executions.transition(execution, S.RUNNING, started_at=started, task_arn=state.arn,
                                                unless_job_stopped=True)
            if moved is not None:
                return self._started(execution, moved[0])
            current = self._executions.get_execution(execution.job_id, execution.execution_id)
            if current is None:
                return None
            if current.status in sources(S.RUNNING):
                # Its job was stopped by a client while it was being launched, before the stop
                # reached it: recorded as running, then stopped.
                moved = self._executions.transition(current, S.RUNNING, started_at=started, task_arn=state.arn)
                if moved is not None:
                    running = self._started(current, moved[0])
                    self.stop_execution(running)
                    return self._executions.get_execution(execution.job_id, execution.execution_id)
                return current
            self._stop_if_it_should_not_run(current, state)
            self._announce_missed(current, STARTED)
            return current
        if state.last_status == ECS_STOPPED:
            status = status_of_stopped_task(state.exit_code)
            error = None if state.exit_code is not None else (
                state.reason or "The container stopped without an exit code.")
            # The container is gone: its pool slot is given back with the ending, in one write.
            ended = self.finish(execution, status, exit_code=state.exit_code, error=error,
                                started_at=state.started_at, finished_at=state.stopped_at, release_slot=True)
            if ended is not None:
                return ended
            current = self._executions.get_execution(execution.job_id, execution.execution_id)
            if current is None:
                return None
            if state.exit_code is not None and current.exit_code is None and current.status in ENDED_BY_SERVICE:
                # Stopped or timed out by us before the container ended: keep its exit code.
                self._executions.update_execution(current, frozenset({current.status}), exit_code=state.exit_code)
                current = current.with_changes(exit_code=state.exit_code)
            self._announce_missed(current, ENDED)
            # Ended by someone else first: the slot is given back here (once, whoever sees it first).
            if current.pool is not None and self._pools.release_slot(current):
                current = current.with_changes(pool=None)
            return current
        return execution

    def _started(self, execution: Execution, running: Execution) -> Execution:
        """What follows a recorded start: the timeout check and the `starts` notifications."""
        latency = (running.started_at or self._clock()) - execution.created_at
        metrics.add_metric(name="LaunchLatency", unit=MetricUnit.Seconds, value=max(0.0, latency))
        job = self._job_for(running)
        self._schedule_timeout(running)
        return self._announce(STARTED, job, running)

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
        self._stop_task(state.arn, current.error or STOPPED_BY_CLIENT)
        logger.warning("a container of an ended execution was running; stopped",
                       extra={"execution_id": current.execution_id, "task_arn": state.arn})

    def _announce_owed(self, execution: Execution) -> None:
        """Publish the ending (and the start before it) that an attempt which died left owed;
        one that is announced already, or no longer owed anything, leaves the worklist."""
        job = self._jobs.get_job(execution.job_id)
        if job is None or not self._owes_on_ending(job, execution):
            self._executions.update_execution(execution, None, announcing=False)
            return
        self._announce_missed(execution, ENDED, job)

    def _owes_on_ending(self, job: Job, ending: Execution) -> bool:
        """Whether the ending of an execution has anything to publish: its `ended`, or the
        `started` that goes out before it when its RUNNING event was late or lost (a job with
        `starts` notifications only)."""
        if self._notifier is None or ENDED in ending.notified:
            return False
        if self._notifier.owes(ENDED, job, ending):
            return True
        return (ending.started_at is not None and STARTED not in ending.notified
                and self._notifier.owes(STARTED, job, ending))

    def _announce_missed(self, current: Execution, event: str, job: Job | None = None) -> None:
        """A redelivered event found the execution moved already: publish what a failed earlier
        attempt may have left unpublished, in lifecycle order: a `started` whose `ended` was
        announced already is never published after it."""
        if self._notifier is None or event in current.notified:
            return
        if event == STARTED and (ENDED in current.notified or current.started_at is None):
            return
        if event == ENDED and not current.status.is_final:
            return
        job = job or self._job_for(current)
        if job is None:
            return  # its job had no notifications (or is gone): nothing to publish
        if event == ENDED and current.started_at is not None:
            current = self._announce(STARTED, job, current)  # its `started` failed with it: first, in order
        self._announce(event, job, current)

    # timeouts -----------------------------------------------------------------------------------

    def _schedule_timeout(self, execution: Execution) -> None:
        """A timeout check message for a timeout shorter than two reconcile intervals; a longer
        one gets its check from the reconciler's pass before the deadline (`_check_soon`), so
        an execution that ends well before its timeout, most of them, costs no message."""
        limit = self.timeout_of(execution)
        if limit > 2 * self._settings.reconcile_interval:
            return
        self._send_timeout_check(execution, round((execution.started_at or self._clock()) + limit, 3))

    def _send_timeout_check(self, execution: Execution, deadline: float) -> None:
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
        if self._ended_in_time(execution, check.due_at):
            return
        self.enforce_timeout(execution)

    def _ended_in_time(self, execution: Execution, deadline: float) -> bool:
        """Whether the container of an execution still recorded as running at its deadline had in
        fact stopped before it (its STOPPED event late or lost, the reconciler's pass not yet
        come): then its own ending is recorded, not a timeout. One DescribeTasks, for the rare
        execution that reaches its deadline; with ECS out of reach the limit is enforced."""
        if not execution.task_arn:
            return False
        try:
            state = self._runner.describe([execution.task_arn]).get(execution.task_arn)
        except Exception:  # noqa: BLE001 - not knowing, the limit holds
            logger.exception("the task could not be described; its timeout is enforced")
            return False
        if state is None or state.last_status != ECS_STOPPED or (state.stopped_at or deadline) > deadline:
            return False
        self.apply_task_state(execution, state)
        return True

    def enforce_timeout(self, execution: Execution) -> None:
        """Time the execution out, then stop its container; the slot stays held until the
        container is seen stopped, and the reconciler repeats the stop until it is."""
        limit = self.timeout_of(execution)
        ended = self.finish(execution, S.TIMEDOUT, error=f"The execution ran longer than its timeout of {limit:g} s.")
        if ended is not None and execution.task_arn:
            self._stop_task(execution.task_arn, f"timed out after {limit:g} s")

    # stop ---------------------------------------------------------------------------------------

    def stop_execution(self, execution: Execution, reason: str = STOPPED_BY_CLIENT) -> bool:
        """Stop one execution; False when it had already ended. Its container is asked to stop
        and keeps the slot until it is seen stopped; a slot taken for a launch that may be in
        flight (no task recorded yet) is given back by the dispatcher or the reconciler."""
        if execution.status.is_final:
            return False
        ended = self.finish(execution, S.STOPPED, error=reason)
        if ended is None:
            return False
        current = self._executions.get_execution(execution.job_id, execution.execution_id) or ended
        if current.task_arn:
            self._stop_task(current.task_arn, reason)
        return True

    # the reconciler -----------------------------------------------------------------------------

    def sweep(self) -> dict[str, int]:
        """Drive every execution's observed state to its desired state, repeating each side
        effect until it is observed (docs/execution.md#the-reconciler). Idempotent; runs every
        reconcile interval (a minute in AWS). Each execution is repaired on its own: one that
        fails (a dependency refuses it, a record it cannot handle) is logged with its ids and
        counted in `errors`, and the pass goes on with the others; the next pass tries again."""
        at = self._clock()
        counts = {"resent": 0, "finalised": 0, "timedout": 0, "checks": 0, "stopped": 0, "released": 0,
                  "recounted": 0, "announced": 0, "errors": 0}
        self._incomplete: set[str] = set()  # worklists that left out records they could not read
        # Lost launches, soonest due first: those waiting out a delay are not listed, so however
        # many wait, one whose launch is overdue is found on the next pass.
        overdue = self._listed(counts, "overdue", lambda: self._executions.overdue_launches(
            at - self._settings.sweep_grace_seconds, self._settings.reconcile_batch))
        prepared = self._listed(counts, "prepared", lambda: self._executions.prepared_executions(LISTING_LIMIT))
        for execution in [*(prepared or []), *(overdue or [])]:
            self._isolated(counts, "resend a lost launch", partial(self._resend_if_lost, execution, at, counts),
                           execution)
        # Every launched execution, not a first page: the reconciler enforces the timeouts of
        # those that run long, and follows their containers.
        launched = self._listed(counts, "launched", lambda: [
            e for status in sorted(LAUNCHED) for e in self._executions.active_executions(status, LISTING_LIMIT)])
        held = self._listed(counts, "held", lambda: self._executions.held_executions(LISTING_LIMIT))
        states = self._describe([e.task_arn for e in [*(launched or []), *(held or [])] if e.task_arn], counts)
        for execution in launched or []:
            self._isolated(counts, "follow a launched execution",
                           partial(self._reconcile_launched, execution, states, at, counts), execution)
        for execution in held or []:
            self._isolated(counts, "finish an ended execution", partial(self._reconcile_held, execution, states, at,
                                                                          counts), execution)
        # Every holder of a slot, whatever the backlog of executions waiting for one.
        if (not self._incomplete & {"prepared", "launched", "held"}
                and prepared is not None and launched is not None and held is not None and len(prepared) < LISTING_LIMIT
                and len(launched) < LISTING_LIMIT * len(LAUNCHED) and len(held) < LISTING_LIMIT):
            self._isolated(counts, "recount pools", partial(self._recount, [*prepared, *launched, *held], counts))
        return counts

    def _isolated(self, counts: dict[str, int], step: str, repair: Callable[[], None],
                  execution: Execution | None = None) -> bool:
        """One repair of the pass, on its own: a failure is logged with what it concerns and
        counted, and the pass goes on (the next one tries again). False when it failed."""
        try:
            repair()
            return True
        except Exception:  # noqa: BLE001 - one bad item must not stop the repairs of the others
            counts["errors"] += 1
            about: dict[str, Any] = {"step": step}
            if execution is not None:
                about.update(job_id=execution.job_id, execution_id=execution.execution_id,
                             status=execution.status.value)
            logger.exception("the reconciler could not repair this; the next pass tries again", extra=about)
            return False

    def _listed(self, counts: dict[str, int], worklist: str,
                read: Callable[[], list[Execution]]) -> list[Execution] | None:
        """A worklist of the pass; None when it could not be read (counted: the pass goes on
        with the others, and pools are not recounted without every holder). Records that cannot
        be read are counted and logged, and the others are repaired; the worklist then counts as
        unread for the recount, which needs every holder."""
        found: list[list[Execution]] = []

        def listing() -> None:
            try:
                found.append(read())
            except UnreadableRecords as some:
                counts["errors"] += len(some.keys)
                logger.error("the reconciler skips stored records it cannot read", extra={
                    "worklist": worklist, "records": some.keys[:20]})
                found.append(some.readable)
                self._incomplete.add(worklist)

        self._isolated(counts, f"list the {worklist} executions", listing)
        return found[0] if found else None

    def _describe(self, arns: list[str], counts: dict[str, int]) -> dict[str, TaskState | None]:
        """The state of each task (None: ECS no longer knows it), asked per cluster and batch;
        the tasks of a batch ECS would not describe (throttled, refused) are left out, and
        their executions get only what needs no state on this pass."""
        by_cluster: dict[str, list[str]] = {}
        for arn in dict.fromkeys(arns):
            by_cluster.setdefault(cluster_of(arn), []).append(arn)
        states: dict[str, TaskState | None] = {}
        for cluster, group in by_cluster.items():
            for start in range(0, len(group), ECS_DESCRIBE_BATCH):
                batch = group[start:start + ECS_DESCRIBE_BATCH]
                self._isolated(counts, f"describe tasks of cluster {cluster}",
                               partial(self._describe_batch, batch, states))
        return states

    def _describe_batch(self, arns: list[str], states: dict[str, TaskState | None]) -> None:
        states.update(self._runner.describe(arns))

    def _resend_if_lost(self, execution: Execution, at: float, counts: dict[str, int]) -> None:
        """An enqueued execution whose launch message is overdue has lost it: it is sent again,
        a bounded number of times, then the execution fails saying why."""
        settings = self._settings
        if (execution.due_at or execution.created_at) + settings.sweep_grace_seconds >= at:
            return  # its launch message is not overdue
        if execution.resends >= settings.launch_resends:
            if self.finish(execution, S.FAILED, error=(
                    f"Its launch message was lost {execution.resends + 1} times; it was not launched.")):
                counts["finalised"] += 1
            return
        if self._renew(execution, 0.0, attempt=0, due_at=at, resent=True):
            counts["resent"] += 1

    def _reconcile_launched(self, execution: Execution, states: dict[str, TaskState | None], at: float,
                            counts: dict[str, int]) -> None:
        """A launched execution against its task. A task ECS could not be asked about on this
        pass (absent from `states`) still has its timeout enforced."""
        arn = execution.task_arn
        if arn is None or arn in states:
            state = states.get(arn) if arn else None
            if state is None:
                # ECS may not know a task just after RunTask: it is gone only after the grace.
                if (execution.launched_at or execution.created_at) + self._settings.missing_grace_seconds < at:
                    ended = self.finish(execution, S.FAILED, error=LOST_TASK)
                    if ended is not None:
                        self._pools.release_slot(ended)
                        counts["finalised"] += 1
                return
            if state.last_status == ECS_STOPPED:
                self.apply_task_state(execution, state)
                counts["finalised"] += 1
                return
            if state.last_status == ECS_RUNNING and execution.status is not S.RUNNING:
                self.apply_task_state(execution, state)
                execution = self._executions.get_execution(execution.job_id, execution.execution_id) or execution
        if execution.status in TIMEABLE and execution.started_at is not None:
            deadline = execution.started_at + self.timeout_of(execution)
            interval = self._settings.reconcile_interval
            if at > deadline + 1:
                self.enforce_timeout(execution)
                counts["timedout"] += 1
            elif interval < deadline - at <= 2 * interval:
                # The last pass before the deadline: its check, to the second (one pass falls in
                # each interval; a pass that is skipped leaves the next one to enforce it late).
                self._send_timeout_check(execution, round(deadline, 3))
                counts["checks"] += 1

    def _reconcile_held(self, execution: Execution, states: dict[str, TaskState | None], at: float,
                        counts: dict[str, int]) -> None:
        """An ended execution whose ending was not announced, or whose container was not seen
        gone: announce it, ask the container to stop again, or give its slot back once it is
        stopped (or gone, after the grace)."""
        if execution.announcing:
            self._announce_owed(execution)
            counts["announced"] += 1
            if execution.pool is None:
                return
        grace = self._settings.missing_grace_seconds
        since = execution.finished_at or execution.launched_at or execution.created_at
        state: TaskState | None
        if execution.task_arn:
            if execution.task_arn not in states:
                return  # ECS could not be asked about it on this pass
            state = states[execution.task_arn]
        elif since + grace < at:
            # Ended before its task was recorded: a launch may have been in flight; look it up.
            state = self._runner.find(execution, self._pool_of(execution))
            if state is not None:
                self._executions.update_execution(execution, None, task_arn=state.arn)
                execution = execution.with_changes(task_arn=state.arn)
        else:
            return
        if state is None:
            if since + grace < at and self._pools.release_slot(execution):
                counts["released"] += 1
            return
        if state.last_status == ECS_STOPPED:
            self.apply_task_state(execution, state)  # records its exit code, gives the slot back
            counts["released"] += 1
            return
        self._stop_task(state.arn, execution.error or STOPPED_BY_CLIENT)
        counts["stopped"] += 1

    def _recount(self, holders: list[Execution], counts: dict[str, int]) -> None:
        """Pool counts against the executions seen holding their slots. A drift is repaired
        only when two passes in a row saw the same one (the listings may lag the counters),
        and only if the count did not move since; either way it is reported."""
        running = self._pools.pool_running([p.name for p in self.pools])
        seen: dict[str, int] = {p.name: 0 for p in self.pools}
        for execution in holders:
            if execution.pool in seen:
                seen[execution.pool] += 1
        drifts = {}
        for name, count in running.items():
            if count != seen[name]:
                drifts[name] = (count, seen[name])
                metrics.add_metric(name="PoolDrift", unit=MetricUnit.Count, value=abs(count - seen[name]))
                logger.warning("pool count differs from its holders",
                               extra={"pool": name, "running": count, "holders": seen[name]})
                if self._drifts.get(name) == (count, seen[name]) and self._pools.recount(name, count, seen[name]):
                    counts["recounted"] += 1
                    drifts.pop(name)
        self._drifts = drifts

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
