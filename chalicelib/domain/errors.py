"""Errors the domain and services raise; the HTTP layer maps each to a status code."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

R = TypeVar("R")
T = TypeVar("T")


class FastlaneError(Exception):
    status = 500
    headers: dict[str, str] = {}  # headers of its answer besides Content-Type (Retry-After, ...)

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class ValidationError(FastlaneError):
    """The client sent something that breaks a rule (400)."""

    status = 400


class TooLarge(FastlaneError):
    """A body or field over a limit (413)."""

    status = 413


class NotFound(FastlaneError):
    status = 404


class Conflict(FastlaneError):
    """The request is valid but the resource's state does not allow it (409)."""

    status = 409


class TooManyActive(Conflict):
    """The job has as many executions that have not ended as a job may have: one more would
    grow its active set (an attribute of the job's item) without bound."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"The job has {limit} executions that have not ended, the most a job may have; "
                         "stop some or wait for them to end.", field="jobId")


class DependencyDown(FastlaneError):
    """An AWS service we depend on failed after retries (503)."""

    status = 503
    detail: str | None = None  # what the service said, for the log only

    @classmethod
    def of(cls, service: str, error: object) -> DependencyDown:
        """`service` failed with `error`. Clients read that the service is unavailable; what it
        said (which can name the account, the function's role, tables and queues) goes to the
        log only."""
        down = cls(f"{service} is unavailable just now; try again in a moment.")
        down.detail = f"{service}: {error}"
        return down


class LaunchFailed(Exception):
    """The container platform refused to start an execution; `retryable` when it was busy
    (throttled, out of capacity) rather than told something impossible."""

    def __init__(self, reason: str, retryable: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


class MailRejected(Exception):
    """The mail service refused a message for good (a bad address, an unverified sender)."""


class UnreadableRecords(Exception):
    """A worklist met stored records it cannot read (written by another version of the service,
    edited by hand): `readable` holds the others, in the listing's order, and `keys` names the
    ones left out. The reconciler repairs the readable ones and counts the rest, so one bad record
    cannot stop its pass; what needs every record (recounting pool slots) waits until none is bad."""

    def __init__(self, readable: list[Any], keys: list[str]) -> None:
        super().__init__(f"{len(keys)} stored record(s) could not be read: {', '.join(keys[:5])}")
        self.readable = readable
        self.keys = keys


def read_each(items: Iterable[R], read: Callable[[R], T], key: Callable[[R], str]) -> tuple[list[T], list[str]]:
    """Each stored item read on its own: the records read, and the keys of those that could not be."""
    readable: list[T] = []
    unreadable: list[str] = []
    for item in items:
        try:
            readable.append(read(item))
        except (KeyError, TypeError, ValueError, AttributeError):
            unreadable.append(key(item))
    return readable, unreadable


def all_readable(readable: list[T], unreadable: list[str]) -> list[T]:
    """The listing, or UnreadableRecords carrying it when some records were left out."""
    if unreadable:
        raise UnreadableRecords(readable, unreadable)
    return readable
