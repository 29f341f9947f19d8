"""The idempotency keys port: each Idempotency-Key runs its action once."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from ..domain.idempotency import Answer

# idempotency keys ------------------------------------------------------------------------------


class KeyState(str, Enum):
    RAN = "ran"  # this request ran the action (its answer is kept when it is a success)
    REPLAYED = "replayed"  # the answer of the key's first request, kept
    REUSED = "reused"  # the key was used with another body
    IN_PROGRESS = "in_progress"  # the key's first request has not answered yet


@dataclass(frozen=True)
class KeyOutcome:
    state: KeyState
    answer: Answer | None = None  # RAN: this request's answer; REPLAYED: the first request's


class IdempotencyKeys(Protocol):
    """Requests that carry an Idempotency-Key (domain/idempotency.py): each key runs its action
    once, and its first answer is kept for KEEP_SECONDS after it was given."""

    def run_once(self, key: str, fingerprint: str, action: Callable[[], Answer]) -> KeyOutcome:
        """A key not seen, expired, or whose first request died (its in-progress lease,
        LEASE_SECONDS, ran out): run `action` while holding the key, RAN. Its answer is kept when
        `Answer.kept`; any other answer, or an exception (raised on), frees the key. A key held
        with another fingerprint: REUSED, even while in progress; in progress: IN_PROGRESS;
        answered: REPLAYED with the first answer. DependencyDown when the store cannot be
        reached, before the action ran or after (then the answer could not be kept)."""
        ...
