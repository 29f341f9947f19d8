"""Exit codes and the one-line failures of the command line (docs/cli.md#exit-codes).

`run` and `logs -f` exit with the container's own code when the execution failed with one; the
command line's own codes sit in 118-125 (after docker's 125-127 convention) so that a script can
tell "the service is down" from "the job failed" for all the usual exit codes of programs."""
from __future__ import annotations

OK = 0
USAGE = 2  # a bad option, argument or configuration; or the service refused the request as invalid (400, 413)
CONFLICT = 118  # 409: the idempotency key was used with another body, or the job's state forbids it
NOT_FOUND = 119  # 404: unknown task, job or execution
AUTH = 120  # 401/403, or no credentials to sign with
UNAVAILABLE = 121  # the service cannot be reached, or answers 5xx/503
UNEXPECTED = 122  # an answer the command line does not understand
STOPPED = 123  # the execution was stopped
TIMEDOUT = 124  # the execution ran longer than its timeout
NOT_RUN = 125  # the execution could not run: launch failure, expired, ended without an exit code
INTERRUPTED = 130  # Ctrl-C

CODES = {
    OK: "success (run, logs -f: the execution ended done)",
    USAGE: "usage: a bad option, argument or configuration, or the service refused the request as invalid",
    CONFLICT: "conflict: an idempotency key reused with another body, or a state that forbids the action (409)",
    NOT_FOUND: "not found: unknown task, job or execution (404)",
    AUTH: "auth refused (401/403) or no credentials to sign with",
    UNAVAILABLE: "the service cannot be reached or is unavailable (connection refused, timeout, 5xx)",
    UNEXPECTED: "an answer the command line does not understand",
    STOPPED: "run, logs -f: the execution was stopped",
    TIMEDOUT: "run, logs -f: the execution timed out",
    NOT_RUN: "run, logs -f: the execution could not run (launch failure, expired, no exit code)",
    INTERRUPTED: "interrupted (Ctrl-C)",
}


def epilog() -> str:
    """The exit codes, for the commands' --help."""
    lines = ["Exit codes:", "", "\b", f"  {OK:>5}  {CODES[OK]}",
             f"  {'1-255':>5}  run, logs -f: the container's own exit code when the execution failed"]
    lines += [f"  {code:>5}  {meaning}" for code, meaning in sorted(CODES.items()) if code != OK]
    return "\n".join(lines)


class CliError(Exception):
    """A failure the command line reports as one line on stderr, and exits with `code`."""

    def __init__(self, message: str, code: int = UNEXPECTED) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
