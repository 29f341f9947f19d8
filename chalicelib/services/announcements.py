"""Announcing executions' starts and ends: each event's notifications are published once, in
lifecycle order, and recorded on the execution, so a redelivered event publishes what a failed
attempt missed and a duplicate publishes nothing (docs/notifications.md)."""
from __future__ import annotations

from dataclasses import dataclass

from ..domain.lifecycle import ENDED, STARTED
from ..domain.model import Execution, Job
from ..ports import Executions, Jobs
from .notify import NotificationPublisher


@dataclass(eq=False)
class Announcer:
    """The engine's side of notifications. Without a publisher (no notify queue) it announces
    nothing and reads no job."""

    jobs: Jobs
    executions: Executions
    publisher: NotificationPublisher | None

    def job_for(self, execution: Execution, *, retrying: bool = False) -> Job | None:
        """The job, read only when announcing the execution or (`retrying`) starting its retry
        needs it: an execution whose job had no notifications and no retries left has its
        policy frozen on it, and costs no read."""
        # A retry made by the engine says which it is: the last one allowed has no retry after it.
        retries_left = int(execution.metadata.get("retry") or 0) < execution.job_retries
        if not ((self.publisher is not None and execution.notifies) or (retrying and retries_left)):
            return None
        return self.jobs.get_job(execution.job_id)

    def announce(self, event: str, job: Job | None, execution: Execution) -> Execution:
        """Publish `event` of the execution once: the event is recorded on the execution after it
        was published. Returns the execution with what it has announced."""
        if self.publisher is None or job is None or event in execution.notified:
            return execution
        if self.publisher.publish(event, job, execution):
            # Recorded only when something was published: a job without notifications pays nothing.
            notified = execution.notified | {event}
            if execution.announcing and (event == ENDED or not self.publisher.owes(ENDED, job, execution)):
                # The ending owes nothing more (its `started` was all it had to publish).
                self.executions.update_execution(execution, None, notified=notified, announcing=False)
                return execution.with_changes(notified=notified, announcing=False)
            self.executions.update_execution(execution, None, notified=notified)
            return execution.with_changes(notified=notified)
        return execution

    def announce_ending(self, job: Job | None, ended: Execution) -> None:
        """An execution just ended: its `started` first when its RUNNING event is late or lost
        (in order), then its end."""
        if ended.started_at is not None:
            ended = self.announce(STARTED, job, ended)
        self.announce(ENDED, job, ended)

    def owes_on_ending(self, job: Job, ending: Execution) -> bool:
        """Whether the ending of an execution has anything to publish: its `ended`, or the
        `started` that goes out before it when its RUNNING event was late or lost (a job with
        `starts` notifications only)."""
        if self.publisher is None or ENDED in ending.notified:
            return False
        if self.publisher.owes(ENDED, job, ending):
            return True
        return (ending.started_at is not None and STARTED not in ending.notified
                and self.publisher.owes(STARTED, job, ending))

    def announce_missed(self, current: Execution, event: str, job: Job | None = None) -> None:
        """A redelivered event found the execution moved already: publish what a failed earlier
        attempt may have left unpublished, in lifecycle order: a `started` whose `ended` was
        announced already is never published after it."""
        if self.publisher is None or event in current.notified:
            return
        if event == STARTED and (ENDED in current.notified or current.started_at is None):
            return
        if event == ENDED and not current.status.is_final:
            return
        job = job or self.job_for(current)
        if job is None:
            return  # its job had no notifications (or is gone): nothing to publish
        if event == ENDED:
            self.announce_ending(job, current)
        else:
            self.announce(event, job, current)

    def announce_owed(self, execution: Execution) -> None:
        """Publish the ending (and the start before it) that an attempt which died left owed;
        one that is announced already, or no longer owed anything, leaves the reconciler's
        worklist."""
        job = self.jobs.get_job(execution.job_id)
        if job is None or not self.owes_on_ending(job, execution):
            self.executions.update_execution(execution, None, announcing=False)
            return
        self.announce_missed(execution, ENDED, job)
