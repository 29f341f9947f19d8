"""The notification ports: the delivery log, the webhook poster and the mailer."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

from ..domain.webhooks import HookResult

# notifications ---------------------------------------------------------------------------------


class ClaimState(str, Enum):
    CLAIMED = "claimed"  # this worker sends
    SENT = "sent"  # an earlier worker sent and died before its bookkeeping; its outcome is kept
    DONE = "done"  # a duplicate: nothing to do
    BUSY = "busy"  # another worker is sending right now


@dataclass(frozen=True)
class Claim:
    state: ClaimState
    outcome: dict[str, Any] = field(default_factory=dict)


class Deliveries(Protocol):
    """The delivery log: each notification (execution, notification, attempt) is sent once."""

    def claim(self, key: str, lease_seconds: float) -> Claim: ...

    def mark_sent(self, key: str, outcome: dict[str, Any], lease_seconds: float) -> None: ...

    def complete(self, key: str) -> None: ...

    def release(self, key: str) -> None:
        """Give a claim back after a failure before anything was sent."""
        ...


class WebhookPoster(Protocol):
    """POSTs one webhook body; never raises for what the receiver or the network did."""

    def __call__(self, url: str, body: bytes, headers: dict[str, str], *, timeout: float,
                 allow_private: bool = False) -> HookResult: ...


class Mailer(Protocol):
    def send(self, to: Sequence[str], subject: str, text: str, html: str) -> str:
        """Send one message; its id. MailRejected when it can never be sent as it is."""
        ...
