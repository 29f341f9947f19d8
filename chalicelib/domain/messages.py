"""The queue messages, one typed value per kind, with their JSON encoding written once.

The wire format is the one schedules already stored in EventBridge Scheduler carry, so it must
not change lightly: a launch has no `kind`; the others say theirs."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Union

from . import timeline as timelines
from .model import Concurrency, Execution, ExecutionStatus, Hook, Placement

LAUNCH, TIMEOUT, SCHEDULE, TICK = "launch", "timeout", "schedule", "tick"
WEBHOOK, EMAIL = "webhook", "email"
# EventBridge Scheduler writes the time a firing was due where a target's input says this.
SCHEDULED_TIME = "<aws.scheduler.scheduled-time>"


class MalformedMessage(ValueError):
    """A body that is not one of our messages: its record fails alone in its batch, and after the
    queue's redrive count it is in the dead-letter queue, where an operator sees it."""


@dataclass(frozen=True)
class Frozen:
    """What an execution froze when it was made (launch parameters, its job's policy) and the
    pool slot it holds, carried by its launch message so the dispatcher launches it without
    reading it first: the writes it makes are conditional on the execution being as the message
    says."""

    image: str
    command: str
    envs: dict[str, str]
    created_at: float
    notifies: bool
    job_retries: int
    timeout: float | None = None
    expiration: float | None = None
    due_at: float | None = None
    request_ip: str | None = None
    pool: str | None = None
    placement: Placement | None = None
    concurrency: Concurrency | None = None
    # Its timeline as stored when the message was sent (a wait is recorded by the write that
    # sends the next message), so the dispatcher's writes extend it without reading it.
    timeline: tuple[dict[str, Any], ...] = ()

    @classmethod
    def of(cls, execution: Execution) -> Frozen:
        return cls(execution.image, execution.command, dict(execution.envs), execution.created_at,
                   execution.notifies, execution.job_retries, execution.timeout, execution.expiration,
                   execution.due_at, execution.request_ip, execution.pool, execution.placement,
                   execution.concurrency, execution.timeline)

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"image": self.image, "command": self.command, "envs": self.envs,
                                "createdAt": self.created_at, "notifies": self.notifies, "jobRetries": self.job_retries}
        for key, value in (("timeout", self.timeout), ("expiration", self.expiration), ("dueAt", self.due_at),
                           ("requestIp", self.request_ip), ("pool", self.pool)):
            if value is not None:
                body[key] = value
        if self.placement is not None:
            body["placement"] = self.placement.to_dict()
        if self.concurrency is not None:
            body["concurrency"] = self.concurrency.to_dict()
        if self.timeline:
            body["timeline"] = list(self.timeline)
        return body

    @classmethod
    def from_dict(cls, body: Any) -> Frozen | None:
        """None for what is not a snapshot (a message cut short or garbled): the dispatcher then
        reads the execution."""
        if not isinstance(body, dict):
            return None
        try:
            envs = body["envs"]
            if not isinstance(envs, dict) or not all(isinstance(v, str) for v in envs.values()):
                return None
            optional = {key: body.get(key) for key in ("timeout", "expiration", "dueAt")}
            if any(isinstance(v, bool) or not isinstance(v, (int, float, type(None))) for v in optional.values()):
                return None
            if not isinstance(body["image"], str) or not isinstance(body["command"], str):
                return None
            return cls(body["image"], body["command"], {str(k): v for k, v in envs.items()},
                       float(body["createdAt"]), bool(body["notifies"]), int(body["jobRetries"]),
                       optional["timeout"], optional["expiration"], optional["dueAt"],
                       body.get("requestIp") if isinstance(body.get("requestIp"), str) else None,
                       body.get("pool") if isinstance(body.get("pool"), str) else None,
                       Placement.from_dict(body.get("placement")), _concurrency(body.get("concurrency")),
                       timelines.parse(body.get("timeline")))
        except (KeyError, TypeError, ValueError):
            return None


def _concurrency(value: Any) -> Concurrency | None:
    if value is None:
        return None
    key, limit = value["key"], value["limit"]
    if not isinstance(key, str) or not isinstance(limit, int) or isinstance(limit, bool):
        raise ValueError("not a concurrency key")
    return Concurrency(key, limit)


@dataclass(frozen=True)
class Launch:
    """Launch one execution. `due_at` rides along when the launch is due later than a queue
    can delay it; `attempt` counts waits for a pool slot or a throttled RunTask; `generation`
    is the execution's launch generation it was sent with (0, the first, is left out of the body);
    `frozen` its launch snapshot (None only when a message's snapshot could not be read)."""

    task_id: str
    job_id: str
    execution_id: str
    due_at: float | None = None
    attempt: int = 0
    generation: int = 0
    frozen: Frozen | None = None

    @classmethod
    def of(cls, execution: Execution, due_at: float | None = None, attempt: int = 0) -> Launch:
        return cls(execution.task_id, execution.job_id, execution.execution_id, due_at, attempt, execution.launches,
                   Frozen.of(execution))

    def snapshot(self) -> Execution | None:
        """The enqueued execution as the message knows it; None without a snapshot."""
        frozen = self.frozen
        if frozen is None:
            return None
        return Execution(task_id=self.task_id, job_id=self.job_id, execution_id=self.execution_id,
                         image=frozen.image, command=frozen.command, status=ExecutionStatus.ENQUEUED,
                         created_at=frozen.created_at, request_ip=frozen.request_ip, due_at=frozen.due_at,
                         envs=dict(frozen.envs), timeout=frozen.timeout, expiration=frozen.expiration,
                         launches=self.generation, notifies=frozen.notifies, job_retries=frozen.job_retries,
                         pool=frozen.pool, placement=frozen.placement, concurrency=frozen.concurrency,
                         timeline=frozen.timeline)


@dataclass(frozen=True)
class TimeoutCheck:
    """Enforce the timeout of a running execution at `due_at`."""

    task_id: str
    job_id: str
    execution_id: str
    due_at: float

    @classmethod
    def of(cls, execution: Execution, due_at: float) -> TimeoutCheck:
        return cls(execution.task_id, execution.job_id, execution.execution_id, due_at)


@dataclass(frozen=True)
class ScheduleFiring:
    """The one firing of a startAt/startIn schedule `version`."""

    task_id: str
    job_id: str
    version: str
    due_at: float


@dataclass(frozen=True)
class CronTick:
    """One tick of a cron schedule `version`. `scheduled_at` None: the scheduler fills in the
    time it fired for (Scheduler's native cron schedules); per-tick schedules say it."""

    task_id: str
    job_id: str
    version: str
    scheduled_at: float | None = None
    per_tick: bool = False
    buffered: bool = False  # overlap buffer: the tick waiting for the job's execution to end looks again


JobMessage = Union[Launch, TimeoutCheck, ScheduleFiring, CronTick]


@dataclass(frozen=True)
class Notification:
    """One webhook hook or one e-mail recipient list of one lifecycle event of an execution."""

    kind: str  # webhook or email
    event: str  # starts, succeeds, fails, finishes
    task_id: str
    job_id: str
    execution_id: str
    status: str
    index: int = 0
    attempt: int = 1
    base_url: str = ""
    hook: Hook | None = None
    to: tuple[str, ...] = field(default=())

    @property
    def delivery_key(self) -> str:
        """`<executionId>/<kind>/<event>/<index>/<attempt>`: the same for every copy of one message."""
        return "/".join((self.execution_id, self.kind, self.event, str(self.index), str(self.attempt)))


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: Any) -> float:
    """Epoch seconds from a number or an ISO-8601 string (what Scheduler fills in)."""
    if isinstance(value, bool):
        raise MalformedMessage("a time is not a boolean")
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError as error:
        raise MalformedMessage(f"not a time: {value!r}") from error


def to_dict(message: JobMessage | Notification) -> dict[str, Any]:
    if isinstance(message, Launch):
        body: dict[str, Any] = {"taskId": message.task_id, "jobId": message.job_id,
                                "executionId": message.execution_id}
        if message.due_at is not None:
            body["dueAt"] = message.due_at
        if message.attempt:
            body["attempt"] = message.attempt
        if message.generation:
            body["generation"] = message.generation
        if message.frozen is not None:
            body["execution"] = message.frozen.to_dict()
        return body
    if isinstance(message, TimeoutCheck):
        return {"taskId": message.task_id, "jobId": message.job_id, "executionId": message.execution_id,
                "kind": TIMEOUT, "dueAt": message.due_at}
    if isinstance(message, ScheduleFiring):
        return {"kind": SCHEDULE, "taskId": message.task_id, "jobId": message.job_id, "version": message.version,
                "dueAt": message.due_at}
    if isinstance(message, CronTick):
        return {"kind": TICK, "taskId": message.task_id, "jobId": message.job_id, "version": message.version,
                "scheduledAt": SCHEDULED_TIME if message.scheduled_at is None else _iso(message.scheduled_at),
                "perTick": message.per_tick, **({"buffered": True} if message.buffered else {})}
    body = {"kind": message.kind, "event": message.event, "index": message.index, "taskId": message.task_id,
            "jobId": message.job_id, "executionId": message.execution_id, "status": message.status,
            "attempt": message.attempt}
    if message.base_url:
        body["baseUrl"] = message.base_url
    if message.hook is not None:
        body["hook"] = message.hook.to_dict()
    if message.to:
        body["to"] = list(message.to)
    return body


def encode(message: JobMessage | Notification) -> str:
    return json.dumps(to_dict(message), separators=(",", ":"))


def _text(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise MalformedMessage(f"missing {key}")
    return value


def _number(body: dict[str, Any], key: str) -> float:
    value = body.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MalformedMessage(f"missing {key}")
    return float(value)


def _object(raw: str | dict[str, Any]) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as error:
        raise MalformedMessage("not JSON") from error
    if not isinstance(body, dict):
        raise MalformedMessage("not a JSON object")
    return body


def decode_job_message(raw: str | dict[str, Any]) -> JobMessage:
    body = _object(raw)
    kind = body.get("kind", LAUNCH)
    if kind == LAUNCH:
        due = body.get("dueAt")
        attempt = body.get("attempt", 0)
        generation = body.get("generation", 0)
        return Launch(str(body.get("taskId") or ""), _text(body, "jobId"),
                      _text(body, "executionId"), None if due is None else _number(body, "dueAt"),
                      attempt if isinstance(attempt, int) and not isinstance(attempt, bool) else 0,
                      generation if isinstance(generation, int) and not isinstance(generation, bool) else 0,
                      Frozen.from_dict(body.get("execution")))
    if kind == TIMEOUT:
        return TimeoutCheck(str(body.get("taskId") or ""), _text(body, "jobId"), _text(body, "executionId"),
                            _number(body, "dueAt"))
    if kind == SCHEDULE:
        return ScheduleFiring(str(body.get("taskId") or ""), _text(body, "jobId"), _text(body, "version"),
                              _number(body, "dueAt"))
    if kind == TICK:
        scheduled = body.get("scheduledAt")
        if scheduled is None or scheduled == SCHEDULED_TIME:
            raise MalformedMessage("a tick without the time it was due")
        return CronTick(str(body.get("taskId") or ""), _text(body, "jobId"), _text(body, "version"),
                        parse_time(scheduled), bool(body.get("perTick")), bool(body.get("buffered")))
    raise MalformedMessage(f"unknown kind {kind!r}")


def decode_notification(raw: str | dict[str, Any]) -> Notification:
    body = _object(raw)
    kind = body.get("kind")
    if kind not in (WEBHOOK, EMAIL):
        raise MalformedMessage(f"unknown kind {kind!r}")
    hook = None
    raw_hook = body.get("hook")
    if kind == WEBHOOK:
        if not isinstance(raw_hook, dict) or not isinstance(raw_hook.get("url"), str):
            raise MalformedMessage("a webhook without its hook")
        hook = Hook(url=raw_hook["url"], headers={str(k): str(v) for k, v in (raw_hook.get("headers") or {}).items()},
                    retries=int(raw_hook.get("retries") or 0))
    index, attempt = body.get("index", 0), body.get("attempt", 1)
    return Notification(
        kind=kind, event=_text(body, "event"), task_id=str(body.get("taskId") or ""), job_id=_text(body, "jobId"),
        execution_id=_text(body, "executionId"), status=str(body.get("status") or ""),
        index=index if isinstance(index, int) else 0, attempt=attempt if isinstance(attempt, int) else 1,
        base_url=str(body.get("baseUrl") or ""), hook=hook,
        to=tuple(str(address) for address in body.get("to") or ()),
    )
