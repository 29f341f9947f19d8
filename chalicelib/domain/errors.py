"""Errors the domain and services raise; the HTTP layer maps each to a status code."""
from __future__ import annotations


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
