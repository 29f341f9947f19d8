"""The execution lifecycle: the one state machine every status change goes through."""
from __future__ import annotations

from .model import ACTIVE_STATUSES, ExecutionStatus as S

# Which statuses an execution may move to from each status. Events can arrive late or twice
# (ECS events, SQS redeliveries), so a move is allowed only forwards; a final status is final.
TRANSITIONS: dict[S, frozenset[S]] = {
    S.ENQUEUED: frozenset({S.PULLING, S.RUNNING, S.DONE, S.FAILED, S.EXPIRED, S.STOPPED, S.TIMEDOUT}),
    S.PULLING: frozenset({S.RUNNING, S.DONE, S.FAILED, S.STOPPED, S.TIMEDOUT}),
    S.RUNNING: frozenset({S.DONE, S.FAILED, S.STOPPED, S.TIMEDOUT}),
    S.DONE: frozenset(),
    S.FAILED: frozenset(),
    S.TIMEDOUT: frozenset(),
    S.EXPIRED: frozenset(),
    S.STOPPED: frozenset(),
}


def can_move(current: S, target: S) -> bool:
    return target in TRANSITIONS[current]


def sources(target: S) -> frozenset[S]:
    """The statuses from which an execution may move to `target`: the condition of the write."""
    return frozenset(status for status, targets in TRANSITIONS.items() if target in targets)


# Outcomes after which a job with retries left runs again.
RETRYABLE = frozenset({S.FAILED, S.TIMEDOUT})

__all__ = ["TRANSITIONS", "can_move", "sources", "RETRYABLE", "ACTIVE_STATUSES"]


def backoff(retry_number: int, minimum: float, factor: float, maximum: float) -> float:
    """Seconds before retry number `retry_number` (0 for the first): minimum * factor**n, capped."""
    return float(min(maximum, minimum * (factor ** max(0, retry_number))))
