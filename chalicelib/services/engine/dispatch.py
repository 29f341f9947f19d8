"""Dispatching launch messages: expiration, a pool slot, RunTask, and the pace ECS allows."""
from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from ...config import Settings
from ...domain import timeline as timelines
from ...domain.errors import LaunchFailed
from ...domain.lifecycle import LAUNCHABLE, backoff
from ...domain.limits import SQS_MAX_DELAY_SECONDS
from ...domain.messages import Launch
from ...domain.model import Execution
from ...domain.model import ExecutionStatus as S
from ...domain.pools import Pool, pool_holding
from ...domain.retry import classify_refusal
from ...observability import MetricUnit, logger, metrics
from ...ports import Executions, JobQueue, Pools, Runner, Slot
from .ending import STOPPED_BY_CLIENT, Ending
from .launches import Launches

EXPIRED = "The job's expiration passed before it could start."
THROTTLED = "ECS to take more launches (RunTask was throttled)"
# A launch due within this many seconds is handled now rather than sent back to the queue.
LAUNCH_EARLY_SECONDS = 1.0
PREPARE_EARLY_SECONDS = 3.0  # with a wait: prepared (slot taken) this early, launched on its second
# A throttled RunTask: the launches this process makes in the next half second are sent back
# without asking (the bucket is empty; a batch would spend its calls for nothing), and each
# throttled launch comes back at a random moment over the time the queue's backlog takes at
# Fargate's launch rate, a little faster so the bucket stays in use (LAUNCH_OVERDRIVE).
THROTTLE_PAUSE_SECONDS = 0.5
LAUNCH_OVERDRIVE = 1.25
BACKLOG_READ_SECONDS = 5.0  # how long one reading of the backlog serves this process


@dataclass(eq=False)
class Dispatcher:
    executions: Executions
    pools: Pools
    queue: JobQueue
    runner: Runner
    launches: Launches
    ending: Ending
    configured: tuple[Pool, ...]
    settings: Settings
    clock: Callable[[], float]
    _paused_until: float = field(default=0.0, init=False)  # after a throttled RunTask: launches are sent back until then
    # (read at, messages pending on the jobs queue)
    _backlog: tuple[float, int] | None = field(default=None, init=False)
    # Drawn from the process's generator, so a process that seeds it (the fault harness) replays
    # the same spread of throttled launches; one a Lambda starts is seeded by the OS.
    _random: random.Random = field(default_factory=lambda: random.Random(random.getrandbits(64)), init=False)

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
        at = self.clock()
        due = launch.due_at or execution.due_at
        if due is not None and due - at > (PREPARE_EARLY_SECONDS if wait else LAUNCH_EARLY_SECONDS):
            self.launches.renew(execution, due - at, attempt=launch.attempt, due_at=due)
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
            self.ending.end(execution, S.EXPIRED, error=EXPIRED)
            return
        pool = pool_holding(self.configured, execution)
        fresh_slot = False
        if execution.pool is None:
            taken = self.pools.take_slot(execution, pool.name, pool.max_running)
            if taken is Slot.MOVED:
                refreshed = self._current(launch)
                if refreshed is None or refreshed.pool is None:
                    return
                execution = refreshed  # holds a slot already: an earlier attempt died before launching
                pool = pool_holding(self.configured, execution)
            elif taken is Slot.FULL:
                self._wait_for_slot(execution, launch, f"a slot of pool '{pool.name}' ({pool.max_running} running)")
                return
            elif taken is Slot.KEY_FULL and execution.concurrency is not None:
                key = execution.concurrency
                self._wait_for_slot(execution, launch, f"a slot of concurrency key '{key.key}' ({key.limit} running)")
                return
            else:
                execution, fresh_slot = execution.with_changes(pool=pool.name), True
        if wait is not None and due is not None and due > self.clock():
            wait(due - self.clock())
            current = self.executions.get_execution(execution.job_id, execution.execution_id)
            if current is not None and fresh_slot and expiration is not None and self.clock() > expiration:
                current = self.ending.end(current, S.EXPIRED, error=EXPIRED)
            if current is None or current.status not in LAUNCHABLE:
                if fresh_slot and current is not None:
                    self.pools.release_slot(current)  # stopped or expired while it waited: no task was asked for
                return
        self._launch(execution, pool, launch, fresh_slot)

    def _current(self, launch: Launch) -> Execution | None:
        """The stored execution a launch message names, if that message may still act on it."""
        execution = self.executions.get_execution(launch.job_id, launch.execution_id)
        if execution is None or execution.status not in LAUNCHABLE:
            return None  # a duplicate, or it was stopped or launched already (an ending owed is the reconciler's)
        if launch.generation != execution.launches:
            return None  # a copy of a launch message that another one has replaced
        return execution

    def _wait_for_slot(self, execution: Execution, launch: Launch, waiting_for: str) -> None:
        """A full pool or key: the launch waits in the queue and is tried again, never dropped."""
        attempt = launch.attempt + 1
        delay = max(1.0, backoff(attempt, 0.5, 2.0, 30.0, jitter=0.2))
        if self.launches.renew(execution, delay, attempt=attempt, waiting_for=waiting_for):
            metrics.add_metric(name="LaunchesWaitingForPool", unit=MetricUnit.Count, value=1)

    def _throttle_delay(self) -> float:
        """When a throttled launch tries again: uniformly over the time the backlog takes at
        the launch rate (at least a second or two), so attempts arrive as evenly as the bucket
        refills instead of in waves, and most launches are throttled once at most."""
        at = self.clock()
        if self._backlog is None or at - self._backlog[0] > BACKLOG_READ_SECONDS:
            try:
                self._backlog = (at, self.queue.pending())
            except Exception:  # noqa: BLE001 - without a reading, the last one (or a small window) serves
                logger.exception("the jobs queue's backlog could not be read")
                self._backlog = (at, self._backlog[1] if self._backlog else 0)
        window = self._backlog[1] / (self.settings.launch_rate * LAUNCH_OVERDRIVE)
        return self._random.uniform(1.0, min(float(SQS_MAX_DELAY_SECONDS), max(2.0, window)))

    def _launch(self, execution: Execution, pool: Pool, launch: Launch, fresh_slot: bool) -> None:
        if self.clock() < self._paused_until:
            metrics.add_metric(name="LaunchesPaced", unit=MetricUnit.Count, value=1)
            self.launches.renew(execution, self._throttle_delay(), attempt=launch.attempt + 1,  # it keeps its slot
                                waiting_for=THROTTLED)
            return
        try:
            task_arn = self.runner.run(execution, execution.spec, pool)
        except LaunchFailed as failure:
            if failure.retryable:
                self._paused_until = self.clock() + THROTTLE_PAUSE_SECONDS
                delay = self._throttle_delay()
                logger.warning("launch throttled; trying again", extra={"reason": failure.reason, "delay": delay})
                metrics.add_metric(name="LaunchesThrottled", unit=MetricUnit.Count, value=1)
                self.launches.renew(execution, delay, attempt=launch.attempt + 1, waiting_for=THROTTLED)
                return
            ended = self.ending.end(execution, S.FAILED, error=f"The container could not be launched: {failure.reason}",
                                    reason=classify_refusal(failure.reason))
            if ended is not None and fresh_slot:
                self.pools.release_slot(ended)  # refused: no task exists
            # A slot held from an earlier attempt may have a task: the reconciler finds out.
            return
        at = self.clock()
        moved = self.executions.transition(execution, S.PULLING, task_arn=task_arn, launched_at=at, waiting_for=None,
                                           timeline_entry=timelines.entry(at, timelines.PULLING))
        if moved is None:
            current = self.executions.get_execution(execution.job_id, execution.execution_id)
            if current is not None and current.status.is_final and current.task_arn is None:
                # Stopped while it was being launched: the task must not run on.
                self.executions.update_execution(current, None, task_arn=task_arn)
                self.ending.stop_container(task_arn, current.error or STOPPED_BY_CLIENT)
            return
        metrics.add_metric(name="QueueWait", unit=MetricUnit.Seconds, value=max(0.0, at - execution.created_at))
        logger.info("execution launched", extra={"execution_id": execution.execution_id, "task_arn": task_arn})
