"""The execution lifecycle: the one transition table, and every rule derived from it.

The store's conditional writes, the engine's "may this message still act", the reconciler's
worklists, what an ECS task status means for an execution and which notifications an ending
calls for are all read from here, never restated as literal sets elsewhere."""
from __future__ import annotations

import random

from .model import ACTIVE_STATUSES, FINAL_STATUSES
from .model import ExecutionStatus as S

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


# Derived worklists and guards ------------------------------------------------------------------

# Waiting to be launched: the only status in which a launch message may act or a pool slot be taken.
LAUNCHABLE = frozenset(s for s in ACTIVE_STATUSES if can_move(s, S.PULLING))
# A container was asked for: its ECS task may exist and is watched by the reconciler.
LAUNCHED = frozenset(s for s in ACTIVE_STATUSES if s not in LAUNCHABLE)
# Only a running execution can time out by running too long.
TIMEABLE = frozenset(s for s in ACTIVE_STATUSES if can_move(s, S.TIMEDOUT) and not can_move(s, S.PULLING))
# Outcomes after which a job with retries left runs again.
RETRYABLE = frozenset({S.FAILED, S.TIMEDOUT})
# Final statuses the service itself decides before the container is gone (it is then stopped);
# the container's exit code, when it comes, is still recorded on them.
ENDED_BY_SERVICE = frozenset({S.STOPPED, S.TIMEDOUT})

# ECS task statuses --------------------------------------------------------------------------

# The ECS `lastStatus` values the monitor records; every other one (PROVISIONING, PENDING,
# ACTIVATING, DEACTIVATING, STOPPING, DEPROVISIONING) says nothing the execution needs.
ECS_RUNNING, ECS_STOPPED = "RUNNING", "STOPPED"
RECORDED_ECS_STATUSES = frozenset({ECS_RUNNING, ECS_STOPPED})


def status_of_stopped_task(exit_code: int | None) -> S:
    """What a container that stopped means for its execution."""
    return S.DONE if exit_code == 0 else S.FAILED


# Notifications ------------------------------------------------------------------------------

STARTS, SUCCEEDS, FAILS, FINISHES = "starts", "succeeds", "fails", "finishes"
STARTED, ENDED = "started", "ended"  # what the engine announces
NOTIFICATION_EVENTS = (STARTS, SUCCEEDS, FAILS, FINISHES)

# Which of a job's `webhooks` / `notify` lists an ended execution calls, by its final status.
EVENTS_BY_STATUS: dict[S, tuple[str, ...]] = {
    S.DONE: (SUCCEEDS, FINISHES),
    S.FAILED: (FAILS, FINISHES),
    S.TIMEDOUT: (FAILS, FINISHES),
    S.EXPIRED: (FINISHES,),
    S.STOPPED: (FINISHES,),
}
assert set(EVENTS_BY_STATUS) == set(FINAL_STATUSES), "every final status names its notifications"


def events_for(announced: str, status: S) -> tuple[str, ...]:
    """The notification events that an engine announcement (`started`/`ended`) calls for."""
    if announced == STARTED:
        return (STARTS,)
    if announced == ENDED:
        return EVENTS_BY_STATUS.get(status, ())
    return ()


# Backoff ------------------------------------------------------------------------------------


def backoff(attempt: int, minimum: float, factor: float = 2.0, maximum: float = 3600.0, jitter: float = 0.0) -> float:
    """Seconds before attempt `attempt` (0 for the first retry): minimum × factor^attempt,
    capped at `maximum`, then spread by ±`jitter` (a fraction) so that waiters do not come back
    together. The one backoff of the service: retries of jobs, waits for a pool slot, throttled
    launches and webhook retries all use it."""
    delay = float(min(maximum, minimum * (factor ** max(0, min(attempt, 64)))))
    if jitter:
        delay *= random.uniform(1 - jitter, 1 + jitter)
    return delay


__all__ = ["TRANSITIONS", "can_move", "sources", "RETRYABLE", "ACTIVE_STATUSES", "LAUNCHABLE", "LAUNCHED",
           "TIMEABLE", "ENDED_BY_SERVICE", "RECORDED_ECS_STATUSES", "status_of_stopped_task", "events_for",
           "EVENTS_BY_STATUS", "backoff"]
