"""Listings across tasks (executions by status and time, tasks by id prefix) and the bulk retry:
how deep a listing reaches, and the rules of their query parameters and body."""
from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import ValidationError
from .model import Execution, ExecutionStatus, Job
from .payload import TASK_ID, validate_uuid

# A listing reaches the newest (or, for tasks, first) this many matches, and counts up to this
# many: page N of a store that cannot skip reads N pages' worth of entries, so the depth is what
# bounds the cost of a page, whatever the store holds (docs/storage.md#executions-across-tasks).
MAX_LISTED = 10_000
# How far ahead of the service's clock `since` may be: the client's clock may run a little fast.
CLOCK_SKEW_SECONDS = 5.0
# The ids one bulk retry may name.
MAX_RETRY_IDS = 100

_SINCE = re.compile(r"-?[0-9]{1,12}(?:\.[0-9]{1,6})?")
_STATUSES = {status.value: status for status in ExecutionStatus}


@dataclass(frozen=True)
class ListedExecution:
    """An execution as a listing across tasks finds it, with the time it entered its status."""

    execution: Execution
    status_at: float


@dataclass(frozen=True)
class RetryOutcome:
    """What retrying the job of one id of a bulk retry came to: `status` is what the single retry
    route (POST .../jobs/{jobId}/retry) answers for that job, with the new execution or why not."""

    execution_id: str  # the id asked
    status: int
    task_id: str | None = None  # of the execution asked (None: unknown)
    job_id: str | None = None
    job: Job | None = None  # retried: the job, its new execution and the launch message's id
    execution: Execution | None = None
    queue_job_id: str | None = None
    error: str | None = None  # not retried: why, as the single route's error says it
    field: str | None = None


def statuses_of(raw: str | None) -> frozenset[ExecutionStatus]:
    """`status`: one status or several, comma-separated; none (absent or empty): every status."""
    if raw is None or raw == "":
        return frozenset(ExecutionStatus)
    found = set()
    for name in raw.split(","):
        status = _STATUSES.get(name.strip())
        if status is None:
            raise ValidationError(f"status must be one or more of {', '.join(_STATUSES)}, comma-separated; "
                                  f"got '{name[:32]}'.", field="status")
        found.add(status)
    return frozenset(found)


def since_of(raw: str | None, clock: Callable[[], float] = time.time) -> float | None:
    """`since`: epoch seconds, not negative, not later than now (give or take CLOCK_SKEW_SECONDS)."""
    if raw is None or raw == "":
        return None
    if not _SINCE.fullmatch(raw):
        raise ValidationError(f"since must be epoch seconds (a number such as 1547737982.644), got '{raw[:32]}'.",
                              field="since")
    since = float(raw)
    if since < 0 or not math.isfinite(since):
        raise ValidationError(f"since must not be negative, got {raw[:32]}.", field="since")
    if since > clock() + CLOCK_SKEW_SECONDS:
        raise ValidationError(f"since is in the future ({raw[:32]}); it takes a moment in the past.", field="since")
    return since


def task_prefix_of(raw: Any, field: str) -> str | None:
    """A task id prefix (`task`, `prefix`): the characters of task ids, 1 to 255 of them."""
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str) or not TASK_ID.fullmatch(raw):
        raise ValidationError(f"{field} must be the start of a task id: 1 to 255 characters of letters, digits, "
                              "'-', '_', '.' or ':'.", field=field)
    return raw


def prefix_bounds(prefix: str) -> tuple[str, str]:
    """The ids that start with `prefix` are those from the first bound (included) to the second
    (excluded), in byte order: every character an id may hold sorts before DEL."""
    return prefix, prefix + "\x7f"


def check_depth(page: int, per_page: int, what: str, narrow: str) -> None:
    """A page beyond the MAX_LISTED entries a listing reaches is a 400 saying how to narrow it."""
    if (page - 1) * per_page >= MAX_LISTED:
        raise ValidationError(f"page {page} is past the {MAX_LISTED:,} {what} a listing reaches; {narrow}.",
                              field="page")


def retry_request(body: dict[str, Any]) -> tuple[list[str], str | None]:
    """The ids (canonical, in the order given) and the optional task prefix of a bulk retry."""
    ids = body.get("executions")
    if not isinstance(ids, list) or not ids:
        raise ValidationError("executions must be a list of 1 to 100 execution ids.", field="executions")
    if len(ids) > MAX_RETRY_IDS:
        raise ValidationError(f"executions holds {len(ids)} ids; a request may name at most {MAX_RETRY_IDS}.",
                              field="executions")
    checked = []
    for index, value in enumerate(ids):
        field = f"executions[{index}]"
        if not isinstance(value, str):
            raise ValidationError(f"{field} must be an execution id (a UUID string).", field=field)
        checked.append(validate_uuid(value, field))
    return checked, task_prefix_of(body.get("task"), "task")
