"""The backend-specific parts of a schedule's driver, behind one interface (local.py, aws.py).

What differs between backends: the ports, when each queue and the scheduler next have something
due, receiving and deleting messages, firing schedules, putting ECS events on the events queue,
and the roles handlers run under."""
from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any, Protocol

from chalicelib.ports import Backend
from infra.local.sqlite.queues import EVENTS, JOBS, NOTIFY

# The queues carry the same names on both backends (the aws one provisions them as the local one
# creates them), so a trace reads the same whichever ran it.
QUEUES = (JOBS, EVENTS, NOTIFY)
SCHEDULER = "scheduler"  # the scheduler's key among the queues' moments
# The function each queue's event source invokes, as infra/fastlane.yaml names it.
FUNCTIONS = {JOBS: "Dispatch", EVENTS: "Monitor", NOTIFY: "Notify"}
API, RECONCILER = "APIHandler", "Reconciler"
VISIBILITY_TIMEOUT = 30
MAX_RECEIVE_COUNT = 5
REGION = "us-east-1"
ACCOUNT = "123456789012"
MAIL_SENDER = "fastlane@example.com"


class Unserved:
    """A port the harness does not serve (live logs over websockets), or one the driver replaces
    with its own (the runner, the webhook poster): using one is a harness bug."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, method: str) -> Any:
        raise AssertionError(f"the fault harness does not serve {self._name}.{method}")


class Deployment(Protocol):
    """One backend under a schedule. Messages are handed around as SQS's ReceiveMessage answers
    them (MessageId, ReceiptHandle, Body, Attributes), the shape Lambda's event is built from."""

    name: str
    # Lambda hands a whole batch to one invocation; the local harness has always handed each
    # message to an invocation of its own (its seeds replay as they did).
    batched: bool

    def opened(self) -> AbstractContextManager[Backend]:
        """The backend's ports without faults (runner, webhooks, starter and secrets unserved:
        the driver puts its own), for as long as the schedule runs."""
        ...

    def moments(self) -> dict[str, float]:
        """When each queue (and the scheduler, under SCHEDULER) next has something to hand out."""
        ...

    def fire_schedules(self) -> None:
        """Put every schedule due now on the jobs queue, as EventBridge Scheduler would."""
        ...

    def receive(self, queue: str) -> list[dict[str, Any]]:
        """One batch of up to 10 visible messages, as the queue's event source receives it."""
        ...

    def delete(self, queue: str, receipt_handles: list[str]) -> None: ...

    def send_event(self, body: str, delay_seconds: float) -> None:
        """An ECS task state change, as the EventBridge rule puts it on the events queue."""
        ...

    def holds_messages(self, queue: str) -> bool:
        """Anything on the queue: visible, in flight or delayed."""
        ...

    def dead_letters(self) -> dict[str, int]: ...

    def acting_as(self, function: str) -> AbstractContextManager[None]:
        """AWS calls made inside run as the function would, under its role."""
        ...

    def refusals(self) -> list[str]:
        """The calls a function's role refused since the last call, forgotten."""
        ...


def queue_arn(queue: str) -> str:
    return f"arn:aws:sqs:{REGION}:{ACCOUNT}:{queue}"
