"""An execution's timeline: where its time went, one entry per change of state and per wait.

Entries are plain JSON objects, oldest first: `{"at", "status", "reason"?, ...details}`. The
first says why the execution exists (`accepted`: a post, a client's retry, run now, a retry after
a failure, a schedule's firing); then its waits (`waiting`: a full pool or concurrency key, a
throttled launch), `pulling` (the ECS task asked for), `running` (with the image pull's times
as ECS reports them) and its end (exit code, ECS's stop code and reason, the service's reason).

Each entry is written by the write that makes the change it records, never by a write of its
own. The list is bounded: a wait repeated for the same reason is counted on its entry (`count`,
`lastAt`) rather than repeated, and past `MAX_ENTRIES` the oldest entries after the first are
folded into one `omitted` entry that counts them."""
from __future__ import annotations

from typing import Any

Entry = dict[str, Any]
Timeline = tuple[Entry, ...]

MAX_ENTRIES = 50
ACCEPTED, WAITING, PULLING, RUNNING, OMITTED = "accepted", "waiting", "pulling", "running", "omitted"

# Why an execution was accepted.
POSTED = "posted"
REPLACED = "job replaced"  # PUT of an existing job
RETRIED = "retried by a client"
RUN_NOW = "run now"  # a client's retry of a scheduled job
RETRY_AFTER_FAILURE = "retry after a failure"
SCHEDULED = "scheduled run"  # a one-shot's time came
TICK = "cron tick"
LATE_TICK = "late cron tick (catch-up)"
BUFFERED_TICK = "buffered cron tick"


def entry(at: float, status: str, reason: str | None = None, **details: Any) -> Entry:
    """One entry; details that are None are left out."""
    made: Entry = {"at": round(at, 3), "status": status}
    if reason is not None:
        made["reason"] = reason
    made.update({key: value for key, value in details.items() if value is not None})
    return made


def add(timeline: Timeline, new: Entry) -> Timeline:
    """The timeline with `new` recorded: a wait for the same reason as the last entry's wait
    counts on it; the list never grows past MAX_ENTRIES."""
    last = timeline[-1] if timeline else None
    if (last is not None and new.get("status") == WAITING and last.get("status") == WAITING
            and last.get("reason") == new.get("reason")):
        return (*timeline[:-1], {**last, "count": int(last.get("count") or 1) + 1, "lastAt": new["at"]})
    entries = (*timeline, new)
    if len(entries) <= MAX_ENTRIES:
        return entries
    first, rest = entries[0], list(entries[1:])
    folded = 0
    if rest and rest[0].get("status") == OMITTED:
        folded = int(rest.pop(0).get("count") or 0)
    keep = MAX_ENTRIES - 2  # the first entry and the omitted one stay
    dropped, rest = rest[:-keep], rest[-keep:]
    omitted = entry(dropped[-1]["at"], OMITTED, "older entries left out to keep the timeline bounded",
                    count=folded + len(dropped))
    return (first, omitted, *rest)


def accepted(at: float, reason: str, **details: Any) -> Entry:
    return entry(at, ACCEPTED, reason, **details)


def ended(at: float, status: str, *, exit_code: int | None = None, reason: str | None = None,
          stop_code: str | None = None, stopped_reason: str | None = None, cause: str | None = None) -> Entry:
    """The end: the exit code, ECS's stop code and stopped reason when its container stopped,
    the service's reason (`reason`, e.g. a timeout or a client's stop) and the failure's class
    for retry rules (`cause`: exit, timeout, oom, launch, capacity, lost)."""
    return entry(at, status, reason, exitCode=exit_code, stopCode=stop_code, stoppedReason=stopped_reason,
                 cause=cause)


def shown(timeline: Timeline, task_arn: str | None, metadata: dict[str, Any]) -> list[Entry]:
    """The timeline as clients see it: the ECS task's ARN on the `pulling` entry and the failed
    execution on a retry's `accepted` entry are the execution's own fields (`taskArn`, metadata's
    `retryOf`), not stored twice: every write to the execution bills its whole item, per KB."""
    entries = []
    for item in timeline:
        if item.get("status") == PULLING and task_arn:
            item = {**item, "taskArn": task_arn}
        elif item.get("reason") == RETRY_AFTER_FAILURE and metadata.get("retryOf"):
            item = {**item, "retryOf": metadata["retryOf"]}
        entries.append(item)
    return entries


def parse(value: Any) -> Timeline:
    """A stored timeline; anything that is not a list of entries reads as an empty one."""
    if not isinstance(value, (list, tuple)):
        return ()
    return tuple(dict(item) for item in value if isinstance(item, dict) and "at" in item and "status" in item)
