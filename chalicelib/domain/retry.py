"""Retry policies: why an execution failed (its reason, classified from what ECS or the local
runner reports), and what a job's `retry` rules decide for it (docs/execution.md#retry-policies)."""
from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any

from .errors import ValidationError
from .lifecycle import backoff

# Why an execution failed. `expired` and `stopped` executions are never retried, so have none.
EXIT, TIMEOUT, OOM, LAUNCH, CAPACITY, LOST = "exit", "timeout", "oom", "launch", "capacity", "lost"
REASONS = (EXIT, TIMEOUT, OOM, LAUNCH, CAPACITY, LOST)
RETRY, FAIL, IGNORE = "retry", "fail", "ignore"
ACTIONS = (RETRY, FAIL, IGNORE)
MAX_RULES = 20
MAX_EXIT_CODE = 255
# `ignore` retries without counting against `attempts`, for platform failures; this many at most
# in a run of a job (a post, a PUT or a client's retry starts a new run), after which an ignored
# failure counts as `retry` does, so a job that keeps failing the same way ends.
MAX_IGNORED_RETRIES = 10
MAX_BACKOFF_SECONDS = 86_400.0
MAX_BACKOFF_FACTOR = 10.0
RULE_FIELDS = ("reasons", "exitCodes", "action")
POLICY_FIELDS = ("attempts", "backoff", "rules", "default")
BACKOFF_FIELDS = ("initial", "factor", "max", "jitter")
_RANGE = re.compile(r"(\d{1,3})-(\d{1,3})")

# What ECS says, as its task state change events and DescribeTasks give it. A task that never
# started: its stop code, or a stopped reason naming the error that kept it from starting.
SPOT_STOP_CODES = frozenset({"SpotInterruption", "TerminationNotice"})
LAUNCH_ERRORS = ("CannotPullContainerError", "CannotStartContainerError", "CannotCreateContainerError",
                 "CannotInspectContainerError", "ResourceInitializationError", "InvalidParameterException",
                 "ContainerRuntimeError", "Task failed to start", "unable to pull", "executable file not found")
CAPACITY_ERRORS = ("Capacity is unavailable", "RESOURCE:", "AGENT", "No Container Instances", "ThrottlingException",
                   "Rate exceeded")
OOM_SIGNS = ("OutOfMemory", "OOMKilled", "out of memory")


def classify_stop(exit_code: int | None, reason: str | None, stop_code: str | None = None) -> str:
    """Why a container that stopped failed: from its exit code, its container's reason or the
    task's stopped reason, and the task's stop code (a Spot interruption says it there)."""
    said = reason or ""
    if any(sign.lower() in said.lower() for sign in OOM_SIGNS):
        return OOM
    if exit_code is not None:
        return EXIT
    if stop_code in SPOT_STOP_CODES or ("spot" in said.lower() and "interrupt" in said.lower()):
        return CAPACITY
    if stop_code == "TaskFailedToStart" or any(error.lower() in said.lower() for error in LAUNCH_ERRORS):
        return LAUNCH
    return LOST


def classify_refusal(reason: str) -> str:
    """Why a launch ECS refused failed: no capacity (or throttled past the resends), or the
    launch itself is wrong (bad image, bad parameters)."""
    return CAPACITY if any(error.lower() in reason.lower() for error in CAPACITY_ERRORS) else LAUNCH


@dataclass(frozen=True)
class Backoff:
    initial: float
    factor: float
    max: float
    jitter: float = 0.0

    def delay(self, retry: int, rng: random.Random | None = None) -> float:
        """Seconds before retry `retry` (0 is the first): min(initial × factor^retry, max), less up
        to `jitter` of it drawn at random."""
        delay = backoff(retry, self.initial, self.factor, self.max)
        if self.jitter:
            delay -= delay * self.jitter * (rng or random).random()
        return delay

    def to_dict(self) -> dict[str, Any]:
        return {"initial": self.initial, "factor": self.factor, "max": self.max, "jitter": self.jitter}


@dataclass(frozen=True)
class Rule:
    reasons: tuple[str, ...] = ()
    exit_codes: tuple[tuple[int, int], ...] = ()  # inclusive ranges
    action: str = RETRY

    def matches(self, reason: str, exit_code: int | None) -> bool:
        if self.reasons and reason not in self.reasons:
            return False
        if self.exit_codes and (exit_code is None or not any(a <= exit_code <= b for a, b in self.exit_codes)):
            return False
        return True

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"action": self.action}
        if self.reasons:
            body["reasons"] = list(self.reasons)
        if self.exit_codes:
            body["exitCodes"] = [a if a == b else f"{a}-{b}" for a, b in self.exit_codes]
        return body


@dataclass(frozen=True)
class Decision:
    """What a policy decided for one failure: the action, and which rule (None: the default)."""

    action: str
    rule: int | None

    @property
    def by(self) -> str:
        return "default" if self.rule is None else f"rules[{self.rule}]"


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int
    backoff: Backoff | None = None
    rules: tuple[Rule, ...] = ()
    default: str = RETRY

    def decide(self, reason: str, exit_code: int | None) -> Decision:
        for index, rule in enumerate(self.rules):
            if rule.matches(reason, exit_code):
                return Decision(rule.action, index)
        return Decision(self.default, None)

    @property
    def may_ignore(self) -> bool:
        return self.default == IGNORE or any(rule.action == IGNORE for rule in self.rules)

    @property
    def budget(self) -> int:
        """The most retries a run of the job can make: its attempts, and the ignored ones."""
        return self.attempts + (MAX_IGNORED_RETRIES if self.may_ignore else 0)

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"attempts": self.attempts, "rules": [r.to_dict() for r in self.rules],
                                "default": self.default}
        if self.backoff is not None:
            body["backoff"] = self.backoff.to_dict()
        return body

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RetryPolicy:
        """A stored policy (validated when it was accepted)."""
        raw = data.get("backoff")
        return cls(
            attempts=int(data["attempts"]),
            backoff=Backoff(float(raw["initial"]), float(raw["factor"]), float(raw["max"]), float(raw["jitter"]))
            if raw else None,
            rules=tuple(Rule(tuple(r.get("reasons") or ()), tuple(_ranges(r.get("exitCodes") or [], "")),
                             r["action"]) for r in data.get("rules") or []),
            default=data.get("default") or RETRY,
        )


# validation ---------------------------------------------------------------------------------


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _only(data: dict[str, Any], allowed: tuple[str, ...], field: str) -> None:
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise ValidationError(f"{field} has no field '{unknown[0]}'; it takes {', '.join(allowed)}.",
                              field=f"{field}.{unknown[0]}")


def _ranges(values: list[Any], field: str) -> list[tuple[int, int]]:
    ranges = []
    for index, value in enumerate(values):
        where = f"{field}[{index}]"
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_EXIT_CODE:
            ranges.append((value, value))
            continue
        match = _RANGE.fullmatch(value) if isinstance(value, str) else None
        if match is None:
            raise ValidationError(f"{where} must be an exit code from 0 to {MAX_EXIT_CODE} or a range \"a-b\".",
                                  field=where)
        low, high = int(match.group(1)), int(match.group(2))
        if high > MAX_EXIT_CODE:
            raise ValidationError(f"{where} must stay within exit codes 0 to {MAX_EXIT_CODE}.", field=where)
        if low > high:
            raise ValidationError(f"{where} is an inverted range: {low} is above {high}.", field=where)
        ranges.append((low, high))
    return ranges


def _backoff(value: Any) -> Backoff:
    if not isinstance(value, dict):
        raise ValidationError("retry.backoff must be a JSON object with initial, factor, max and jitter.",
                              field="retry.backoff")
    _only(value, BACKOFF_FIELDS, "retry.backoff")
    initial, factor = value.get("initial", 2), value.get("factor", 2)
    if not _number(initial) or not 0 < initial <= MAX_BACKOFF_SECONDS:
        raise ValidationError(f"retry.backoff.initial must be a number of seconds above 0 and at most "
                              f"{MAX_BACKOFF_SECONDS:g}.", field="retry.backoff.initial")
    if not _number(factor) or not 1 <= factor <= MAX_BACKOFF_FACTOR:
        raise ValidationError(f"retry.backoff.factor must be a number from 1 to {MAX_BACKOFF_FACTOR:g}.",
                              field="retry.backoff.factor")
    maximum = value.get("max", max(float(initial), 600.0))
    if not _number(maximum) or not initial <= maximum <= MAX_BACKOFF_SECONDS:
        raise ValidationError(f"retry.backoff.max must be a number of seconds from initial ({initial:g}) to "
                              f"{MAX_BACKOFF_SECONDS:g}.", field="retry.backoff.max")
    jitter = value.get("jitter", 0)
    if not _number(jitter) or not 0 <= jitter <= 1:
        raise ValidationError("retry.backoff.jitter must be a number from 0 to 1.", field="retry.backoff.jitter")
    return Backoff(float(initial), float(factor), float(maximum), float(jitter))


def _rule(value: Any, index: int) -> Rule:
    where = f"retry.rules[{index}]"
    if not isinstance(value, dict):
        raise ValidationError(f"{where} must be a JSON object with reasons and/or exitCodes, and an action.",
                              field=where)
    _only(value, RULE_FIELDS, where)
    action = value.get("action")
    if action not in ACTIONS:
        raise ValidationError(f"{where}.action must be one of {', '.join(ACTIONS)}.", field=f"{where}.action")
    reasons, codes = value.get("reasons"), value.get("exitCodes")
    if reasons is None and codes is None:
        raise ValidationError(f"{where} must say what it matches: reasons, exitCodes or both.", field=where)
    if reasons is not None:
        if not isinstance(reasons, list) or not reasons:
            raise ValidationError(f"{where}.reasons must be a non-empty list of {', '.join(REASONS)}.",
                                  field=f"{where}.reasons")
        for position, reason in enumerate(reasons):
            if reason not in REASONS:
                raise ValidationError(f"{where}.reasons[{position}] is not a reason: {str(reason)[:64]!r}; the "
                                      f"reasons are {', '.join(REASONS)}.", field=f"{where}.reasons[{position}]")
    if codes is not None and (not isinstance(codes, list) or not codes):
        raise ValidationError(f"{where}.exitCodes must be a non-empty list of exit codes and \"a-b\" ranges.",
                              field=f"{where}.exitCodes")
    return Rule(tuple(dict.fromkeys(reasons or ())), tuple(_ranges(codes or [], f"{where}.exitCodes")), action)


def parse_retry(value: Any, max_retries: int) -> RetryPolicy:
    """The `retry` object of a payload, or ValidationError naming the field and the rule."""
    if not isinstance(value, dict):
        raise ValidationError("retry must be a JSON object with attempts, backoff, rules and default.", field="retry")
    _only(value, POLICY_FIELDS, "retry")
    attempts = value.get("attempts", 0)
    if not isinstance(attempts, int) or isinstance(attempts, bool) or not 0 <= attempts <= max_retries:
        raise ValidationError(f"retry.attempts must be an integer from 0 to {max_retries}.", field="retry.attempts")
    rules = value.get("rules", [])
    if not isinstance(rules, list):
        raise ValidationError("retry.rules must be a list of rules.", field="retry.rules")
    if len(rules) > MAX_RULES:
        raise ValidationError(f"retry.rules has {len(rules)} rules; at most {MAX_RULES} are accepted.",
                              field="retry.rules")
    default = value.get("default", RETRY)
    if default not in ACTIONS:
        raise ValidationError(f"retry.default must be one of {', '.join(ACTIONS)}.", field="retry.default")
    raw_backoff = value.get("backoff")
    return RetryPolicy(attempts=attempts, backoff=_backoff(raw_backoff) if raw_backoff is not None else None,
                       rules=tuple(_rule(rule, index) for index, rule in enumerate(rules)), default=default)
