"""Following ECS task state changes: a container seen running or stopped moves its execution."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ...domain import timeline as timelines
from ...domain.ecs import TaskState, TaskStateChange
from ...domain.lifecycle import ECS_RUNNING, ECS_STOPPED, ENDED_BY_SERVICE, RECORDED_ECS_STATUSES, STARTED, sources
from ...domain.model import Execution
from ...domain.model import ExecutionStatus as S
from ...observability import MetricUnit, logger, metrics
from ...ports import Executions
from ..announcements import Announcer
from .ending import STOPPED_BY_CLIENT, Ending
from .timeouts import Timeouts


@dataclass(frozen=True)
class Monitor:
    executions: Executions
    ending: Ending
    timeouts: Timeouts
    announcer: Announcer
    clock: Callable[[], float]

    def task_changed(self, change: TaskStateChange) -> Execution | None:
        """Record what an ECS task state change says; returns the execution as it then is."""
        if change.state.last_status not in RECORDED_ECS_STATUSES:
            return None  # PROVISIONING, PENDING, DEPROVISIONING ...: nothing to record, nothing to read
        execution = self.executions.get_execution(change.job_id, change.execution_id)  # by its key
        if execution is None:
            logger.warning("task state change for an unknown execution", extra={"execution_id": change.execution_id})
            return None
        return self.apply(execution, change.state)

    def apply(self, execution: Execution, state: TaskState) -> Execution | None:
        """What a task state means for its execution, however it was learnt (an event, the
        reconciler's DescribeTasks). Returns the execution as it then is (None if it is gone)."""
        if state.last_status == ECS_RUNNING:
            return self._running(execution, state)
        if state.last_status == ECS_STOPPED:
            return self.ending.container_stopped(execution, state)
        return execution

    def _running(self, execution: Execution, state: TaskState) -> Execution | None:
        started = state.started_at or self.clock()
        entry = timelines.entry(started, timelines.RUNNING, pullStartedAt=state.pull_started_at,
                                pullStoppedAt=state.pull_stopped_at)
        # Conditional on its job not being stopped, so the usual case reads no job.
        moved = self.executions.transition(execution, S.RUNNING, started_at=started, task_arn=state.arn,
                                            unless_job_stopped=True, timeline_entry=entry)
        if moved is not None:
            return self._started(execution, moved[0])
        current = self.executions.get_execution(execution.job_id, execution.execution_id)
        if current is None:
            return None
        if current.status in sources(S.RUNNING):
            # Its job was stopped by a client while it was being launched, before the stop
            # reached it: recorded as running, then stopped.
            moved = self.executions.transition(current, S.RUNNING, started_at=started, task_arn=state.arn,
                                                timeline_entry=entry)
            if moved is not None:
                self.ending.stop(self._started(current, moved[0]))
                return self.executions.get_execution(execution.job_id, execution.execution_id)
            return current
        self._stop_if_it_should_not_run(current, state)
        self.announcer.announce_missed(current, STARTED)
        return current

    def _started(self, execution: Execution, running: Execution) -> Execution:
        """What follows a recorded start: the timeout check and the `starts` notifications."""
        latency = (running.started_at or self.clock()) - execution.created_at
        metrics.add_metric(name="LaunchLatency", unit=MetricUnit.Seconds, value=max(0.0, latency))
        job = self.announcer.job_for(running)
        self.timeouts.started(running)
        return self.announcer.announce(STARTED, job, running)

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
            self.executions.update_execution(current, None, task_arn=state.arn)
        self.ending.stop_container(state.arn, current.error or STOPPED_BY_CLIENT)
        logger.warning("a container of an ended execution was running; stopped",
                       extra={"execution_id": current.execution_id, "task_arn": state.arn})
