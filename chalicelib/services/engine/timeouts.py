"""Timeouts: a check message at a running execution's deadline, and its enforcement."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ...config import Settings
from ...domain.ecs import TaskState
from ...domain.lifecycle import ECS_STOPPED, TIMEABLE
from ...domain.messages import TimeoutCheck
from ...domain.model import Execution
from ...observability import logger
from ...ports import Executions, JobQueue, Runner
from .ending import Ending


@dataclass(frozen=True)
class Timeouts:
    executions: Executions
    queue: JobQueue
    runner: Runner
    ending: Ending
    settings: Settings
    clock: Callable[[], float]

    def started(self, execution: Execution) -> None:
        """A check message for a timeout shorter than two reconcile intervals; a longer one gets
        its check from the reconciler's pass before the deadline, so an execution that ends well
        before its timeout, most of them, costs no message."""
        limit = self.ending.timeout_of(execution)
        if limit > 2 * self.settings.reconcile_interval:
            return
        self.send_check(execution, round((execution.started_at or self.clock()) + limit, 3))

    def send_check(self, execution: Execution, deadline: float) -> None:
        try:
            self.queue.send(TimeoutCheck.of(execution, deadline), delay_seconds=deadline - self.clock())
        except Exception:  # noqa: BLE001 - the reconciler enforces timeouts whose check was lost
            logger.exception("timeout check not sent; the reconciler will enforce it")

    def check(self, check: TimeoutCheck) -> None:
        """A timeout check message: early, it goes back to the queue; at the deadline, the
        execution times out unless its container had in fact stopped before."""
        execution = self.executions.get_execution(check.job_id, check.execution_id)
        if execution is None or execution.status not in TIMEABLE:
            return
        remaining = check.due_at - self.clock()
        if remaining > 0.5:
            self.queue.send(check, delay_seconds=remaining)
            return
        state = self._stopped_by(execution, check.due_at)
        if state is not None:
            self.ending.container_stopped(execution, state)
            return
        self.ending.time_out(execution)

    def _stopped_by(self, execution: Execution, deadline: float) -> TaskState | None:
        """The stopped state of the container of an execution still recorded as running at its
        deadline, if it had in fact stopped before it (its STOPPED event late or lost, the
        reconciler's pass not yet come): then its own ending is recorded, not a timeout. One
        DescribeTasks, for the rare execution that reaches its deadline; with ECS out of reach
        the limit is enforced."""
        if not execution.task_arn:
            return None
        try:
            state = self.runner.describe([execution.task_arn]).get(execution.task_arn)
        except Exception:  # noqa: BLE001 - not knowing, the limit holds
            logger.exception("the task could not be described; its timeout is enforced")
            return None
        if state is None or state.last_status != ECS_STOPPED or (state.stopped_at or deadline) > deadline:
            return None
        return state
