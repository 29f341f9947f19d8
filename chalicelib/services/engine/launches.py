"""Sending launches: every launch of an execution leaves through `Launches.send`, whoever asks
for it (a client's enqueue or retry, a retry after a failure, a schedule's firing, the
reconciler's resend), with one error policy."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ...domain import timeline as timelines
from ...domain.limits import SQS_MAX_DELAY_SECONDS
from ...domain.messages import Launch
from ...domain.model import Execution
from ...observability import MetricUnit, logger, metrics
from ...ports import ExecutionChanges, Executions, JobQueue

# A caller that handles a jobs-queue message itself (a schedule's firing) launches in that same
# handling: the dispatcher, given the launch message it would have been sent.
Dispatch = Callable[[Launch], None]


@dataclass(frozen=True)
class Launches:
    executions: Executions
    queue: JobQueue
    clock: Callable[[], float]

    def send(self, execution: Execution, attempt: int = 0, *, dispatch: Dispatch | None = None) -> str | None:
        """Launch an execution that is stored as enqueued: a launch message on the jobs queue,
        delayed until its due time, or with `dispatch` in this very process. Never raises: the
        execution is stored, so one whose launch failed here is found by the reconciler when
        its launch is overdue and sent again; telling a client otherwise would make it enqueue
        the job twice. Returns the message id (None when dispatched here or not sent)."""
        due = execution.due_at
        delay = max(0.0, (due or 0) - self.clock())
        message = Launch.of(execution, due_at=due if delay > SQS_MAX_DELAY_SECONDS else None, attempt=attempt)
        try:
            if dispatch is not None:
                dispatch(message)
                return None
            return self.queue.send(message, delay_seconds=delay)
        except Exception:  # noqa: BLE001 - the reconciler resends a launch that never left
            logger.exception("launch not sent; the reconciler will send it",
                             extra={"execution_id": execution.execution_id})
            metrics.add_metric(name="LaunchMessagesDeferred", unit=MetricUnit.Count, value=1)
            return None

    def renew(self, execution: Execution, delay: float, *, attempt: int, due_at: float | None = None,
              resent: bool = False, waiting_for: str | None = None) -> bool:
        """Send the next launch message of an execution as the one that may act: the next launch
        generation is taken first, so the message being handled and any copy of it act no more.
        `waiting_for` says why it waits (a full pool or key, a throttled RunTask), in the same
        write. False when the execution moved on meanwhile."""
        fields: ExecutionChanges = {"due_at": round(due_at if due_at is not None else self.clock() + delay, 3)}
        if resent:
            fields["resends"] = execution.resends + 1
        if waiting_for is not None:
            fields["waiting_for"] = waiting_for
            fields["timeline_entry"] = timelines.entry(self.clock(), timelines.WAITING, waiting_for)
        renewed = self.executions.renew_launch(execution, **fields)
        if renewed is None:
            return False
        self.send(renewed, attempt)  # its delay is until the due time just stored
        return True
