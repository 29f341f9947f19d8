"""Sequence numbers of tasks and jobs (the `seq` that list pages are ranges of), each taken with
one atomic `ADD` that answers the new value. No value is read first and no condition is written,
so concurrent writers never refuse one another: a number is taken at the first try, and the write
that uses it follows. A number whose write never lands is a hole in its list (docs/storage.md)."""
from __future__ import annotations

from dataclasses import dataclass

from .tables import TASKS_COUNTER_ID, Tables
from .transactions import retry_single_write

# A task is listed (it gets its number in the task list) by the writer of its first job, in that
# job's transaction. A task that has gone this long without, while its jobs were numbered, lost
# that writer (it died, or its write failed) and the next writer lists it instead. Longer than a
# write takes with botocore's retries, so that two writers rarely both list it (the second one's
# number would be a hole).
LISTING_GRACE_SECONDS = 30.0


@dataclass(frozen=True)
class JobNumber:
    """What taking a job's number in its task answered."""

    seq: int  # the job's number within its task
    task_seq: int | None  # the task's number in the task list; None while it is not listed yet
    task_created_at: float

    def lists_task(self, at: float) -> bool:
        """Whether the writer of this job lists its task: it holds the task's first job, or the
        writer of that one did not list it in time."""
        if self.task_seq is not None:
            return False
        return self.seq == 1 or at - self.task_created_at > LISTING_GRACE_SECONDS


def take_job_number(tables: Tables, task_id: str, at: float) -> JobNumber:
    """The next job number of the task (the task item is made by the first one), touching the task."""
    TaskM = tables.Task
    task = TaskM(task_id=task_id)
    actions = [TaskM.jobs_count.add(1), TaskM.last_modified_at.set(at), TaskM.created_at.set(TaskM.created_at | at)]
    retry_single_write(lambda: task.update(actions=actions))  # the item is read back whole (ALL_NEW)
    return JobNumber(seq=int(task.jobs_count), task_seq=int(task.seq) if task.seq is not None else None,
                     task_created_at=float(task.created_at))


def take_task_number(tables: Tables) -> int:
    """The next number of the task list (the `#tasks` counter's `total`)."""
    TaskM = tables.Task
    counter = TaskM(task_id=TASKS_COUNTER_ID)
    retry_single_write(lambda: counter.update(actions=[TaskM.total.add(1)]))
    return int(counter.total)
