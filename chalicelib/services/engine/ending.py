"""Ending executions: every execution ends through `Ending.end` (its retry started in the same
write, its ending announced), whatever ended it: its container stopping, a client's stop, a
timeout, an expiration, a refused launch, a lost task."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ...config import Settings
from ...domain import timeline as timelines
from ...domain.ecs import TaskState
from ...domain.lifecycle import ENDED, ENDED_BY_SERVICE, RETRYABLE, backoff, status_of_stopped_task
from ...domain.limits import MAX_ERROR_CHARS
from ...domain.model import Execution, Job, Placement, new_execution
from ...domain.model import ExecutionStatus as S
from ...domain.retry import EXIT, FAIL, IGNORE, MAX_IGNORED_RETRIES, RETRY, TIMEOUT, classify_stop
from ...observability import MetricUnit, logger, metrics
from ...ports import ExecutionChanges, Executions, MakeExecution, Pools, Runner
from ..announcements import Announcer
from .launches import Launches

STOPPED_BY_CLIENT = "stopped by a client"


@dataclass(frozen=True)
class Ending:
    executions: Executions
    pools: Pools
    runner: Runner
    launches: Launches
    announcer: Announcer
    settings: Settings
    placement: Callable[[str], Placement]
    clock: Callable[[], float]

    def timeout_of(self, execution: Execution) -> float:
        """The timeout frozen on the execution (none frozen: the default)."""
        return float(execution.timeout or self.settings.default_timeout)

    def end(self, execution: Execution, status: S, *, exit_code: int | None = None, error: str | None = None,
            started_at: float | None = None, finished_at: float | None = None, release_slot: bool = False,
            reason: str | None = None, stopped: TaskState | None = None) -> Execution | None:
        """End an execution (if it has not ended yet), and start its retry when one is due;
        `release_slot` when its container is gone (the slot is given back in the same write);
        `reason` why a failure failed (domain/retry.py; by default `timeout` for a timeout,
        `exit` otherwise), which a job's retry rules decide on; `stopped` the stopped ECS task,
        whose stop code and reason its timeline records. Returns the ended execution, or None
        when something else ended it first."""
        retrying = status in RETRYABLE
        job = self.announcer.job_for(execution, retrying=retrying)
        if reason is None:
            reason = TIMEOUT if status is S.TIMEDOUT else EXIT
        follow_up = self._retry_of(job, execution, reason, exit_code) if job is not None and retrying else None
        at = finished_at or self.clock()
        fields: ExecutionChanges = {"finished_at": at}
        if exit_code is not None:
            fields["exit_code"] = exit_code
        if error is not None:
            fields["error"] = error[:MAX_ERROR_CHARS]
        if started_at is not None and execution.started_at is None:
            fields["started_at"] = started_at
        fields["timeline_entry"] = timelines.ended(
            at, status.value, exit_code=exit_code, reason=None if error is None else error[:MAX_ERROR_CHARS],
            stop_code=stopped.stop_code if stopped else None, stopped_reason=stopped.stopped_reason if stopped else None,
            cause=reason if status in RETRYABLE else None)
        ending = execution.with_changes(status=status, started_at=execution.started_at or started_at)
        if job is not None and self.announcer.owes_on_ending(job, ending):
            # On the reconciler's worklist until announced: a function that dies between this
            # write and publishing loses no notification.
            fields["announcing"] = True
        moved = self.executions.transition(execution, status, follow_up=follow_up, release_slot=release_slot,
                                            job=job if follow_up is not None else None, **fields)
        if moved is None:
            return None
        ended, retry = moved
        self.announcer.announce_ending(job, ended)
        metrics.add_metric(name=f"Executions{status.value.capitalize()}", unit=MetricUnit.Count, value=1)
        logger.info("execution ended", extra={"execution_id": execution.execution_id, "status": status.value,
                                              "exit_code": exit_code, "error": error})
        if retry is not None:
            logger.info("retry scheduled", extra={"execution_id": retry.execution_id, "due_at": retry.due_at})
            self.launches.send(retry)
        return ended

    def _retry_of(self, job: Job, ended: Execution, reason: str, exit_code: int | None) -> MakeExecution | None:
        """The next execution of a job whose execution failed, if its retries (`retries`, or its
        `retry` policy's rules on `reason` and `exit_code`) call for one."""
        if job.stopped:
            return None
        policy = job.spec.retry
        said: dict[str, Any] = {}
        ignored = int(ended.metadata.get("ignored") or 0)  # retries of this run that counted for nothing
        if policy is None:
            if job.spec.retries <= job.retry_count:
                return None
        else:
            decision = policy.decide(reason, exit_code)
            action = decision.action
            if action == IGNORE and ignored >= MAX_IGNORED_RETRIES:
                action = RETRY  # the ceiling: a failure that keeps coming back counts from now on
            if action == FAIL or (action == RETRY and job.retry_count - ignored >= policy.attempts):
                return None
            ignored += action == IGNORE
            said = {"reason": reason, "rule": decision.by, **({"ignored": ignored} if ignored else {})}

        def make(current: Job) -> Execution:
            if policy is not None and policy.backoff is not None:
                delay = policy.backoff.delay(current.retry_count)
            else:
                settings = self.settings
                delay = backoff(current.retry_count, settings.retry_backoff_min, settings.retry_backoff_factor,
                                settings.retry_backoff_max)
            at = self.clock()
            why = timelines.accepted(at, timelines.RETRY_AFTER_FAILURE, after=round(delay, 3), cause=reason,
                                     rule=said.get("rule"))
            return new_execution(current, at, placement=self.placement(current.task_id),
                                 request_ip=ended.request_ip, due_at=round(at + delay, 3),
                                 metadata={"retryOf": ended.execution_id, "retry": current.retry_count + 1, **said},
                                 accepted=why)

        return make

    def container_stopped(self, execution: Execution, state: TaskState) -> Execution | None:
        """The execution's container was seen stopped (an ECS event, DescribeTasks): its ending
        is recorded with the container's exit code, and its pool slot given back in the same
        write; one ended first by someone else keeps its status, gains the exit code, and gives
        its slot back here (once, whoever sees it first). Returns the execution as it then is."""
        error = None if state.exit_code is not None else (state.reason or "The container stopped without an exit code.")
        reason = classify_stop(state.exit_code, " ".join(filter(None, (state.reason, state.stopped_reason))),
                               state.stop_code)
        ended = self.end(execution, status_of_stopped_task(state.exit_code), exit_code=state.exit_code, error=error,
                         started_at=state.started_at, finished_at=state.stopped_at, release_slot=True, reason=reason,
                         stopped=state)
        if ended is not None:
            return ended
        current = self.executions.get_execution(execution.job_id, execution.execution_id)
        if current is None:
            return None
        if state.exit_code is not None and current.exit_code is None and current.status in ENDED_BY_SERVICE:
            # Stopped or timed out by us before the container ended: keep its exit code.
            self.executions.update_execution(current, frozenset({current.status}), exit_code=state.exit_code)
            current = current.with_changes(exit_code=state.exit_code)
        self.announcer.announce_missed(current, ENDED)
        if current.pool is not None and self.pools.release_slot(current):
            current = current.with_changes(pool=None)
        return current

    def stop(self, execution: Execution, reason: str = STOPPED_BY_CLIENT) -> bool:
        """Stop one execution; False when it had already ended. Its container is asked to stop
        and keeps the slot until it is seen stopped; a slot taken for a launch that may be in
        flight (no task recorded yet) is given back by the dispatcher or the reconciler."""
        if execution.status.is_final:
            return False
        ended = self.end(execution, S.STOPPED, error=reason)
        if ended is None:
            return False
        current = self.executions.get_execution(execution.job_id, execution.execution_id) or ended
        if current.task_arn:
            self.stop_container(current.task_arn, reason)
        return True

    def time_out(self, execution: Execution) -> None:
        """Time the execution out, then stop its container; the slot stays held until the
        container is seen stopped, and the reconciler repeats the stop until it is."""
        limit = self.timeout_of(execution)
        ended = self.end(execution, S.TIMEDOUT, error=f"The execution ran longer than its timeout of {limit:g} s.",
                         reason=TIMEOUT)
        if ended is not None and execution.task_arn:
            self.stop_container(execution.task_arn, f"timed out after {limit:g} s")

    def stop_container(self, task_arn: str, reason: str) -> bool:
        """Ask for an ECS task to stop; a failure is left to the reconciler, which asks again
        until the task is seen stopped (the execution keeps its slot until then)."""
        try:
            self.runner.stop(task_arn, reason)
            return True
        except Exception:  # noqa: BLE001 - repeated by the reconciler
            logger.exception("StopTask failed; the reconciler will ask again", extra={"task_arn": task_arn})
            metrics.add_metric(name="StopTaskFailed", unit=MetricUnit.Count, value=1)
            return False
