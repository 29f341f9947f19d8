"""The storage ports: jobs and tasks, executions, pools, schedules and statistics."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import Enum
from typing import Any, Protocol, TypedDict, Unpack

from ..domain.model import Execution, ExecutionStatus, Job, Page, Task

# Builds the execution a write adds, from the job as the write reads it (its sequence number is
# set by the store).
MakeExecution = Callable[[Job], Execution]


class ExecutionChanges(TypedDict, total=False):
    """Fields of an execution a write may set besides its status; None removes a field."""

    started_at: float | None
    finished_at: float | None
    exit_code: int | None
    error: str | None
    due_at: float | None
    launched_at: float | None
    task_arn: str | None
    notified: frozenset[str]
    resends: int
    announcing: bool
    watched: bool
    waiting_for: str | None
    # An entry the write adds to the execution's timeline (domain/timeline.py), to the timeline
    # as the write finds it stored: `transition` and `renew_launch` take one, `update_execution`
    # none (it records no change of state).
    timeline_entry: dict[str, Any]


class Slot(str, Enum):
    TAKEN = "taken"  # the execution now holds a slot of the pool
    FULL = "full"  # the pool is at its limit
    KEY_FULL = "key full"  # the execution's concurrency key is at its limit (its pool is not)
    MOVED = "moved"  # the execution no longer waits for a slot: it holds one, or is no longer launchable


# jobs and tasks --------------------------------------------------------------------------------


class Jobs(Protocol):
    def save_new_job(self, job: Job, execution: Execution | None, *,
                     known_absent: bool = False) -> tuple[Job, Execution | None]:
        """Create the job (and its task when new) with its first execution, atomically, and
        count them. Returns them with their sequence numbers. Conflict if the job exists.
        `known_absent`: the caller made its id or has just read that no job has it, so a store
        that would look first (to spare a sequence number) need not."""
        ...

    def replace_job(self, job: Job, execution: Execution | None, *,
                    max_active: int | None = None) -> tuple[Job, Execution | None]:
        """Replace an existing job's specification (same task), adding an execution, atomically.
        Keeps its creation time, sequence number and executions; clears `stopped` and retries.
        With `max_active`, TooManyActive (a Conflict) when the job already has that many
        executions that have not ended, and nothing is written."""
        ...

    def add_execution(self, job_id: str, make: MakeExecution, *, require_idle: bool = False,
                      clear_stopped: bool = False) -> tuple[Job, Execution]:
        """Add a new execution to a job (a retry asked by a client). With require_idle, a job
        with an execution that is not final gets Conflict; so does a job that does not exist."""
        ...

    def set_job_stopped(self, job_id: str, stopped: bool) -> None: ...

    def get_job(self, job_id: str) -> Job | None: ...

    def get_task(self, task_id: str) -> Task | None: ...

    def list_tasks(self, page: int, per_page: int) -> Page:
        """Oldest first; `total` from a counter. A page is the range of task numbers it covers: a
        store may leave a number unused after a failed write, and the page is then one short."""
        ...

    def list_jobs(self, task_id: str, page: int, per_page: int) -> Page:
        """A task's jobs, oldest first, in pages of job numbers as `list_tasks`."""
        ...

    def list_tasks_by_prefix(self, prefix: str, page: int, per_page: int) -> Page:
        """Listed tasks whose id starts with `prefix`, by id (byte order); `total` counts them up
        to listing.MAX_LISTED (a total of MAX_LISTED says "at least"). A page whose first entry
        lies past MAX_LISTED is the caller's to refuse: a store may read every entry before it."""
        ...

    def ping(self) -> None:
        """Raise when the store cannot be reached."""
        ...


class Executions(Protocol):
    def get_execution(self, job_id: str, execution_id: str) -> Execution | None: ...

    def list_executions(self, job_id: str, page: int, per_page: int, total: int | None = None) -> Page:
        """Newest first; `total` saves a read when the caller has the job at hand."""
        ...

    def list_all_executions(self, statuses: frozenset[ExecutionStatus], since: float | None, task_prefix: str | None,
                            page: int, per_page: int) -> Page:
        """Executions of every task in one of `statuses`, newest first by the time each entered
        its status (the time of the write that set it; creation for `enqueued`), at or after
        `since`, of tasks whose id starts with `task_prefix`: a Page of listing.ListedExecution,
        ties broken by execution id, newest first. `total` counts the matches up to
        listing.MAX_LISTED (a total of MAX_LISTED says "at least"); a page whose first entry lies
        past MAX_LISTED is the caller's to refuse (a store may read every entry before it). An
        index may lag its writes a moment: an execution that has just changed status may be
        missing, or listed with the status it has now."""
        ...

    def find_executions(self, execution_ids: Sequence[str]) -> dict[str, Execution]:
        """Executions by their id alone, whatever their job: id -> execution for each one found
        (an unknown id is left out). At most listing.MAX_RETRY_IDS ids. An execution created a
        moment ago may not be found yet by a store that reads an index."""
        ...

    def active_executions(self, status: ExecutionStatus, limit: int = 500) -> list[Execution]:
        """Executions in a status that is not final, oldest first (the reconciler's worklist of
        launched executions). The worklists below raise UnreadableRecords, carrying the readable
        ones, when some stored records cannot be read."""
        ...

    def overdue_launches(self, before: float, limit: int) -> list[Execution]:
        """Launchable executions that hold no pool slot and whose launch was due before `before`
        (their due time, else their creation), soonest due first: the reconciler's worklist of
        lost launch messages. One waiting out a delay (a retry's backoff, a full pool, a
        throttled launch) is not in it until its delay is over, however long it has waited."""
        ...

    def prepared_executions(self, limit: int = 500) -> list[Execution]:
        """Launchable executions that hold a pool slot (taken, the launch not yet recorded),
        oldest first: with the launched and the held ones, every holder of a slot the reconciler
        recounts."""
        ...

    def transition(self, execution: Execution, target: ExecutionStatus, *, follow_up: MakeExecution | None = None,
                   release_slot: bool = False, unless_job_stopped: bool = False, job: Job | None = None,
                   **fields: Unpack[ExecutionChanges]) -> tuple[Execution, Execution | None] | None:
        """Move an execution to `target` if the lifecycle allows it from its current status
        (lifecycle.sources), setting `fields` (ExecutionChanges); with `follow_up`, atomically
        add the execution it returns (a retry) to the job and count the retry, unless the job is
        stopped as the write reads it (then the move happens alone). A final target
        takes the execution out of the job's active set. With `release_slot`, the pool slot the
        execution holds is given back in the same write (its container is gone); with
        `unless_job_stopped`, nothing moves when its job is stopped. `job` is the caller's read
        of the job, which a store may use for the follow-up instead of reading it (its write
        still conditions on the job as read). Returns the moved execution
        (as stored: `pool` None once released) and the follow-up, or None when the execution had
        already moved on (a duplicate or late event) or its job is stopped."""
        ...

    def update_execution(self, execution: Execution, expected: frozenset[ExecutionStatus] | None = None,
                         **fields: Unpack[ExecutionChanges]) -> bool:
        """Set fields (ExecutionChanges) without changing the status, conditionally on it when
        `expected` is given. False when the condition failed or the execution does not exist."""
        ...

    def renew_launch(self, execution: Execution, **fields: Unpack[ExecutionChanges]) -> Execution | None:
        """Take the next launch generation (`launches` + 1) of a launchable execution whose
        stored generation is still the snapshot's, setting `fields`: the launch message sent
        next is then the only one that may act. None when it has moved on (no longer
        launchable, or another generation was taken first)."""
        ...

    def held_executions(self, limit: int = 500) -> list[Execution]:
        """Final executions that still hold a pool slot (their container was not yet seen gone)
        or are `announcing` (their notifications not yet published), oldest first: the
        reconciler's worklist of stops to repeat, slots to release and endings to announce."""
        ...

    def record_notification(self, job_id: str, execution_id: str, entry: dict[str, Any], keep: int = 50) -> None:
        """Append the result of a notification attempt to the execution, keeping the newest `keep`."""
        ...


class Pools(Protocol):
    def take_slot(self, execution: Execution, pool: str, max_running: int) -> Slot:
        """Take a slot of `pool` for a launchable execution that holds none and whose launch
        generation is still the snapshot's (so a launch message's own snapshot needs no read),
        atomically with recording the pool on it. max_running 0: no limit (still counted).
        An execution with a concurrency key (frozen on it) takes a slot of its key in the same
        write, up to the key's limit, or neither. MOVED when the execution is not as the
        snapshot says (whatever else is full), then FULL for its pool, then KEY_FULL."""
        ...

    def release_slot(self, execution: Execution) -> bool:
        """Give back the slot the execution holds (and its key's, in the same write), once;
        False when it holds none. A transition with `release_slot` gives back both too."""
        ...

    def keys_in_use(self, limit: int = 1000) -> dict[str, tuple[int, int]]:
        """Concurrency keys whose count is not 0: key -> (running, limit), at most `limit` of
        them (the reconciler recounts these; /status lists them)."""
        ...

    def recount_key(self, key: str, seen: int, holders: int, limit: int) -> bool:
        """As `recount`, for a concurrency key (`limit`: its limit, as its holders froze it)."""
        ...

    def pool_running(self, names: Sequence[str]) -> dict[str, int]: ...

    def recount(self, pool: str, seen: int, holders: int) -> bool:
        """Set the pool's running count to `holders` (the executions seen holding its slots) if
        it is still `seen`; False when it changed meanwhile (a slot was taken or released)."""
        ...


class Schedules(Protocol):
    def take_schedule(self, job_id: str, version: str, make: MakeExecution | None, *, tick_at: float | None,
                      next_run_at: float | None, skipped: bool = False, max_active: int | None = None,
                      job: Job | None = None, skip_reason: str | None = None, missed: int = 0,
                      buffer_at: float | None = None) -> tuple[Job, Execution | None] | None:
        """Take one firing of the job's schedule `version`, at most once: a one-shot (tick_at
        None) ends the schedule; a cron tick must be later than the last tick taken and sets the
        next run. With `make`, the execution it returns is added in the same write; `skipped`
        counts a tick not run. With `max_active`, a cron tick that finds the job with that many
        executions that have not ended adds none and is counted skipped (the job's active set,
        an attribute of its item, stays bounded); the caller sees no execution. None when the
        firing is stale (another version, a tick taken). `job`: the caller's read of the job,
        which a store may take instead of reading it (the write conditions on the version and
        execution count it holds, so its active set can only have shrunk since).
        Paused: a one-shot firing of a paused job is stale (None, nothing written: the schedule
        stays pending); a tick of a paused job adds nothing, is counted skipped (`paused`), and
        leaves the next run as it is. A job paused after the caller's read is seen by the write.
        `skip_reason`: the `last_skip_reason` of a tick counted skipped. `missed`: ticks before
        this one that never fired, counted skipped too (`missed`). `buffer_at` (overlap buffer):
        a tick that finds the job full waits as the job's `buffered_tick` (since `buffer_at`)
        when none waits yet, instead of being skipped; a tick that runs while one waits replaces
        it (the waiting one is counted skipped)."""
        ...

    def take_buffered(self, job_id: str, version: str, tick_at: float, make: MakeExecution | None,
                      skip_reason: str | None = None) -> tuple[Job, Execution | None] | None:
        """Run the job's waiting tick `tick_at` (overlap buffer) with the execution `make`
        returns, once the job has no execution that has not ended, clearing it in the same
        write; with `make` None (or the job paused) drop it, counted skipped (`skip_reason`, or
        `paused`). None when that tick no longer waits (another version, run or dropped
        already) or when the job still has an execution that has not ended (nothing written)."""
        ...

    def pause_schedule(self, job_id: str, at: float) -> Job | None:
        """Pause the job's pending schedule since `at`; idempotent (a paused job keeps its
        pausedAt). Returns the job as stored; None when it has no pending schedule."""
        ...

    def skip_ticks(self, job_id: str, version: str, *, paused: bool, last_tick: float | None, count: int,
                   skipped_at: float | None, reason: str, next_run_at: float | None, through: float | None = None,
                   resume: bool = False) -> Job | None:
        """Count `count` ticks (or one-shot firings) skipped without running (`lastSkippedAt`
        `skipped_at`, `lastSkipReason` `reason`), set the next run (None ends the schedule)
        and, with `through`, the last tick taken; with `resume`, the job is no longer paused.
        Conditional on the version, on the job being `paused` or not, and on its last tick
        taken being still `last_tick` (so no tick is counted twice, or counted and run); None
        when any of them changed."""
        ...

    def end_schedule(self, job_id: str, version: str | None = None) -> None:
        """Forget the job's pending schedule (any version, or only `version`)."""
        ...

    def scheduled_jobs(self, limit: int = 50, due_before: float | None = None) -> list[Job]:
        """Jobs with a pending schedule, soonest next run first; UnreadableRecords, carrying the
        readable ones, when some stored jobs cannot be read."""
        ...


class Statistics(Protocol):
    def stats(self) -> dict[str, int]:
        """`tasks`, `jobs`, `scheduled` and one count per execution status."""
        ...
