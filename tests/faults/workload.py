"""Randomized workloads: what the clients of one schedule do, and when. Each job carries its
plan's number in `metadata.plan`, so the invariants find the plan of every job stored, even of
one a client posted twice because the first answer was lost."""
from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any

from .containers import Behaviour, command_of

HOOK_URL = "https://hooks.example.com/fastlane"
MAIL_TO = "ops@example.com"
CRON_EVERY_MINUTE = "* * * * *"


@dataclass(frozen=True)
class PoolLimits:
    narrow: int  # pool `narrow`: tasks `narrow-*`
    wide: int  # the default pool: every other task

    def pools_json(self) -> str:
        return json.dumps([{"name": "narrow", "match": "narrow-.*", "maxRunning": self.narrow},
                           {"name": "default", "match": ".*", "maxRunning": self.wide}])


@dataclass(frozen=True)
class Action:
    """One client request at `at` (seconds after the workload starts)."""

    at: float
    kind: str  # post, put, stop, retry, pause, resume
    plan: int
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass
class Workload:
    limits: PoolLimits
    duration: float  # seconds of virtual time during which clients act and faults happen
    actions: list[Action]
    tasks: dict[int, str]  # plan -> task id
    kinds: dict[int, str]  # plan -> what it is meant to exercise


def _behaviour(rng: random.Random, *, exit_code: int, low: float, high: float) -> Behaviour:
    return Behaviour(exit_code=exit_code, run_seconds=float(rng.randint(int(low), int(high))),
                     pull_seconds=float(rng.randint(1, 5)), ignores_term=rng.random() < 0.3)


def _payload(rng: random.Random, plan: int, behaviour: Behaviour, **fields: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {"image": f"sim/worker:{rng.randint(1, 3)}", "command": command_of(behaviour),
                               "envs": {"RUN": str(rng.randint(1, 9))}, "metadata": {"plan": plan}, **fields}
    if rng.random() < 0.45:
        payload["webhooks"] = {event: [{"url": f"{HOOK_URL}/{plan}/{event}", "retries": rng.randint(0, 2)}]
                               for event in rng.sample(["starts", "finishes", "succeeds", "fails"], rng.randint(1, 3))}
        payload["webhooks"].setdefault("starts", [{"url": f"{HOOK_URL}/{plan}/starts", "retries": 1}])
    if rng.random() < 0.15:
        payload["notify"] = {"finishes": [MAIL_TO]}
    if rng.random() < 0.3:  # one key shared by every task (limit 2), or one per task (limit 1)
        payload["concurrency"] = rng.choice([{"key": "shared", "limit": 2}, {"key": "per-{taskId}", "limit": 1}])
    return payload


def _changed(rng: random.Random, payload: dict[str, Any]) -> dict[str, Any]:
    """A PUT of the same job: another image and other envs, the same command and notifications."""
    return {**payload, "image": f"sim/worker:put-{rng.randint(1, 9)}", "envs": {"RUN": f"put-{rng.randint(1, 9)}"}}


def _schedule_policies(rng: random.Random, *, jitter: bool = False) -> dict[str, Any]:
    """A catch-up window some of the time, and (cron) a jitter: runs that could not fire on time
    (a lost firing, a throttled queue, a pause) run late within the window, else are counted."""
    fields: dict[str, Any] = {}
    if rng.random() < 0.5:
        fields["catchupWindow"] = rng.choice([0, 20, 60, 300])
    if jitter and rng.random() < 0.3:
        fields["jitter"] = rng.randint(1, 45)
    return fields


def _pauses(rng: random.Random, plan: int, at: float, chance: float = 0.4) -> list[Action]:
    """Some of the time, the job is paused a while after its post, and most of those resumed later."""
    if rng.random() >= chance:
        return []
    paused = round(at + rng.uniform(5, 300), 3)
    actions = [Action(paused, "pause", plan)]
    if rng.random() < 0.8:
        actions.append(Action(round(paused + rng.uniform(20, 240), 3), "resume", plan))
    return actions


def build(rng: random.Random, *, jobs: tuple[int, int], duration: tuple[float, float], start: float) -> Workload:
    """Between `jobs` posts over `duration` seconds, each of a kind drawn at random; `start` is
    the virtual time the workload starts at (expirations are absolute)."""
    limits = PoolLimits(narrow=rng.randint(1, 2), wide=rng.randint(2, 4))
    length = float(rng.randint(int(duration[0]), int(duration[1])))
    actions: list[Action] = []
    tasks: dict[int, str] = {}
    kinds: dict[int, str] = {}
    for plan in range(rng.randint(*jobs)):
        task = f"{rng.choice(['narrow', 'wide'])}-{rng.randint(1, 3)}"
        at = round(rng.uniform(0, length * 0.8), 3)
        kind = rng.choice(["succeeds", "succeeds", "fails", "fails", "times-out", "stopped", "expires", "later",
                           "cron", "cron", "put", "retried", "policy"])
        retries = rng.randint(0, 2)
        timeout = rng.randint(30, 120)
        if kind == "fails":
            payload = _payload(rng, plan, _behaviour(rng, exit_code=rng.choice([1, 2, 3]), low=5, high=90),
                               retries=retries)
        elif kind == "times-out":
            payload = _payload(rng, plan, _behaviour(rng, exit_code=0, low=timeout + 900, high=timeout + 1500),
                               retries=rng.randint(0, 1), timeout=timeout)
        elif kind == "stopped":
            payload = _payload(rng, plan, _behaviour(rng, exit_code=0, low=1000, high=1500))
            actions.append(Action(round(at + rng.uniform(5, 240), 3), "stop", plan))
        elif kind == "expires":
            payload = _payload(rng, plan, _behaviour(rng, exit_code=0, low=5, high=60),
                               expiration=round(start + at + rng.uniform(1, 40), 3))
        elif kind == "later":
            payload = _payload(rng, plan, _behaviour(rng, exit_code=rng.choice([0, 1]), low=5, high=60),
                               startIn=f"{rng.randint(5, 300)}s", retries=retries, **_schedule_policies(rng))
            actions += _pauses(rng, plan, at, chance=0.15)
        elif kind == "cron":
            payload = _payload(rng, plan, _behaviour(rng, exit_code=rng.choice([0, 0, 1]), low=5, high=100),
                               cron=CRON_EVERY_MINUTE, overlap=rng.choice(["allow", "forbid", "replace", "buffer"]),
                               **_schedule_policies(rng, jitter=True))
            actions.append(Action(round(at + rng.uniform(90, 600), 3), "stop", plan))
            actions += _pauses(rng, plan, at, chance=0.6)
        elif kind == "put":
            delayed = rng.random() < 0.5
            payload = _payload(rng, plan, _behaviour(rng, exit_code=0, low=5, high=60),
                               **({"startIn": f"{rng.randint(30, 120)}s"} if delayed else {}))
            actions.append(Action(round(at + rng.uniform(0.5, 20), 3), "put", plan, _changed(rng, payload)))
        elif kind == "policy":
            # A retry policy: exit 2 fails at once, exit 3 is ignored (up to the ceiling), exit 1
            # uses the attempts; the job's own backoff, with jitter or not.
            policy = {"attempts": rng.randint(0, 2), "default": "retry",
                      "backoff": {"initial": rng.choice([1, 5, 20]), "factor": 2, "max": 60,
                                  "jitter": rng.choice([0, 0.5])},
                      "rules": [{"exitCodes": [2], "action": "fail"}, {"exitCodes": ["3-4"], "action": "ignore"}]}
            payload = _payload(rng, plan, _behaviour(rng, exit_code=rng.choice([0, 1, 2, 3]), low=5, high=60),
                               retry=policy)
        elif kind == "retried":
            payload = _payload(rng, plan, _behaviour(rng, exit_code=rng.choice([0, 1]), low=5, high=40))
            actions.append(Action(round(at + rng.uniform(120, 400), 3), "retry", plan))
        else:
            payload = _payload(rng, plan, _behaviour(rng, exit_code=0, low=5, high=120), retries=retries,
                               timeout=float(rng.randint(180, 600)))
        if rng.random() < 0.08 and kind not in ("stopped", "cron"):
            actions.append(Action(round(at + rng.uniform(1, 120), 3), "stop", plan))  # a client changes its mind
        actions.append(Action(at, "post", plan, payload))
        tasks[plan] = task
        kinds[plan] = kind
    actions.sort(key=lambda action: (action.at, action.kind != "post"))
    return Workload(limits=limits, duration=length, actions=actions, tasks=tasks, kinds=kinds)
