"""The fault layer: a proxy around each port that, per call and from the schedule's seeded RNG,
makes the call fail before or after it takes effect, throttles RunTask, or kills the handler
(a BaseException that no `except Exception` of the engine catches: the Lambda is gone and its
queue message comes back after the visibility timeout); and the message faults of queues and
of EventBridge (duplicates, delays that reorder, lost events). Every fault is counted and
written to the schedule's trace."""
from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from chalicelib.domain.errors import DependencyDown, LaunchFailed
from chalicelib.domain.webhooks import HookResult

BEFORE, AFTER, KILL_BEFORE, KILL_AFTER = "fail-before", "fail-after", "kill-before", "kill-after"
CALL_FAULTS = (BEFORE, AFTER, KILL_BEFORE, KILL_AFTER)
TRACE_KEEP = 400  # the newest trace lines kept for a failing schedule's report


class HandlerKilled(BaseException):
    """The handler's Lambda died between two calls (timeout, out of memory, a crash): not an
    Exception, so no `except Exception` of the code under test can swallow it."""


@dataclass(frozen=True)
class Rates:
    """Probabilities per port call and per message of one schedule."""

    call: float  # a port call fails or kills (split evenly over CALL_FAULTS)
    throttle: float  # RunTask answers throttling
    duplicate: float  # a sent message or ECS event is delivered twice
    delay: float  # a message or event arrives late (and so out of order)
    lose_event: float  # EventBridge drops an ECS event
    lose_delete: float  # the event source's DeleteMessage is lost: the message comes back


@dataclass
class FaultPlan:
    """Decides the faults of one schedule; `enabled` False turns them all off (the quiet period)."""

    rng: random.Random
    rates: Rates
    clock: Callable[[], float]
    start: float  # trace times are seconds from here
    enabled: bool = True
    keep_trace: bool = False  # keep every line (a replay), not only the newest
    counts: Counter[str] = field(default_factory=Counter)
    trace: list[str] = field(default_factory=list)

    @property
    def injected(self) -> int:
        return sum(self.counts.values())

    def note(self, line: str) -> None:
        self.trace.append(f"t+{self.clock() - self.start:.3f} {line}")
        if not self.keep_trace and len(self.trace) > 2 * TRACE_KEEP:
            del self.trace[:TRACE_KEEP]

    def _chance(self, rate: float) -> bool:
        return self.enabled and rate > 0 and self.rng.random() < rate

    def fault(self, kind: str, where: str) -> str:
        self.counts[kind] += 1
        self.note(f"FAULT {kind} {where}")
        return kind

    def call_fault(self, where: str) -> str | None:
        if not self._chance(self.rates.call):
            return None
        return self.fault(self.rng.choice(CALL_FAULTS), where)

    def throttled(self, where: str) -> bool:
        return self._chance(self.rates.throttle) and bool(self.fault("throttle", where))

    def duplicated(self, where: str) -> bool:
        return self._chance(self.rates.duplicate) and bool(self.fault("duplicate", where))

    def delay(self, where: str) -> float:
        """Extra seconds of delay of one message (0: none)."""
        if not self._chance(self.rates.delay):
            return 0.0
        self.fault("delay", where)
        return float(self.rng.randint(1, 90))

    def event_lost(self, where: str) -> bool:
        return self._chance(self.rates.lose_event) and bool(self.fault("lose-event", where))

    def delete_lost(self, where: str) -> bool:
        return self._chance(self.rates.lose_delete) and bool(self.fault("lose-delete", where))

    def shuffle(self, items: list[Any], where: str) -> None:
        if len(items) > 1 and self._chance(self.rates.delay):
            self.fault("reorder", where)
            self.rng.shuffle(items)


Observer = Callable[[str, tuple[Any, ...], dict[str, Any], Any], None]


def _client_error(operation: str) -> BaseException:
    error: BaseException = ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded (injected)"}}, operation)
    return error


class FaultyPort:
    """Any port: each method call may fail before or after it takes effect (DependencyDown, as
    every adapter raises for a dependency out of reach) or kill the handler. `observe` sees
    every call that took effect (the harness's ledger of what really happened)."""

    def __init__(self, target: Any, name: str, plan: FaultPlan, observe: Observer | None = None) -> None:
        self._target = target
        self._name = name
        self._plan = plan
        self._observe = observe

    def _failure(self, where: str) -> BaseException:
        return DependencyDown(f"injected: {where} failed")

    def _failure_after(self, where: str) -> BaseException:
        return self._failure(where)

    def _perform(self, method: str, call: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        where = f"{self._name}.{method}"
        fault = self._plan.call_fault(where)
        if fault == BEFORE:
            raise self._failure(where)
        if fault == KILL_BEFORE:
            raise HandlerKilled(where)
        result = call(*args, **kwargs)
        if self._observe is not None:
            self._observe(method, args, kwargs, result)
        if fault == AFTER:
            raise self._failure_after(where)
        if fault == KILL_AFTER:
            raise HandlerKilled(where)
        return result

    def __getattr__(self, method: str) -> Any:
        attribute = getattr(self._target, method)
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._perform(method, attribute, args, kwargs)

        return call


class FaultyRunner(FaultyPort):
    """ECS: RunTask may be throttled, or time out after it started the task (EcsRunner turns
    both into a retryable LaunchFailed); StopTask and DescribeTasks fail with the ClientError
    EcsRunner lets through."""

    def _failure(self, where: str) -> BaseException:
        if where.endswith(".run"):
            return LaunchFailed("ThrottlingException: Rate exceeded (injected)", retryable=True)
        return _client_error(where.rsplit(".", 1)[-1])

    def _failure_after(self, where: str) -> BaseException:
        if where.endswith(".run"):
            return LaunchFailed("Read timeout on endpoint URL (injected, after RunTask took effect)", retryable=True)
        return _client_error(where.rsplit(".", 1)[-1])

    def run(self, *args: Any, **kwargs: Any) -> Any:
        if self._plan.throttled(f"{self._name}.run"):
            raise LaunchFailed("ThrottlingException: Rate exceeded (injected)", retryable=True)
        return self._perform("run", self._target.run, args, kwargs)


class FaultyQueue(FaultyPort):
    """A queue port: besides failing, a sent message may be delivered twice or late."""

    def __init__(self, target: Any, name: str, plan: FaultPlan, messages_faulted: bool = True) -> None:
        super().__init__(target, name, plan)
        self._messages_faulted = messages_faulted

    def send(self, message: Any, delay_seconds: float = 0) -> str:
        where = f"{self._name}.send"
        extra = self._plan.delay(where) if self._messages_faulted else 0.0

        def send_it(message: Any, delay_seconds: float) -> str:
            sent: str = self._target.send(message, delay_seconds)
            if self._plan.duplicated(where):
                self._target.send(message, delay_seconds + (self._plan.rng.randint(0, 30) if self._messages_faulted else 0))
            return sent

        result: str = self._perform("send", send_it, (message, delay_seconds + extra), {})
        return result

    def send_all(self, messages: Any) -> None:
        where = f"{self._name}.send_all"

        def send_them(messages: Any) -> None:
            self._target.send_all(messages)
            if self._plan.duplicated(where):
                self._target.send_all(messages)

        self._perform("send_all", send_them, (messages,), {})


class FaultyPoster:
    """The webhook poster: a receiver out of reach answers no status (before it got the body,
    or after: then it got it, but the answer is lost), or the handler dies around the POST."""

    def __init__(self, target: Any, plan: FaultPlan) -> None:
        self._target = target
        self._plan = plan

    def __call__(self, url: str, body: bytes, headers: dict[str, str], *, timeout: float,
                 allow_private: bool = False) -> HookResult:
        fault = self._plan.call_fault("webhooks.post")
        if fault == BEFORE:
            return HookResult(error="connection refused (injected)")
        if fault == KILL_BEFORE:
            raise HandlerKilled("webhooks.post")
        result: HookResult = self._target(url, body, headers, timeout=timeout, allow_private=allow_private)
        if fault == AFTER:
            return HookResult(error="read timed out (injected)")
        if fault == KILL_AFTER:
            raise HandlerKilled("webhooks.post")
        return result
