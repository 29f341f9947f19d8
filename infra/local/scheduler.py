"""Local stand-in for EventBridge Scheduler's firing: moto stores schedules but never fires
them, so this fires the schedules stored in the emulated Scheduler (one-time `at()` and `cron()`,
in their time zones) into their SQS targets, as Scheduler would, with the scheduled time filled
into the message."""
from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from chalicelib.domain.schedule import next_cron_run

from .event_sources import Periodic
from .timestamps import iso

SCHEDULED_TIME = "<aws.scheduler.scheduled-time>"


def with_scheduled_time(body: str, due: float) -> str:
    """A schedule's target input as Scheduler delivers it: its scheduled-time placeholder filled
    with the moment the firing was due, in UTC to the second."""
    return body.replace(SCHEDULED_TIME, iso(due))


def from_scheduler_cron(expression: str) -> str:
    """A Scheduler `cron(min hour day month weekday year)` as a Unix cron expression. Covers
    numbers, lists, ranges, steps, `*` and `?` (what the app writes); the year must be `*`."""
    fields = expression.strip()[len("cron("):-1].split()
    if len(fields) != 6 or fields[5] != "*":
        raise ValueError(f"unsupported Scheduler cron expression: {expression}")
    minute, hour, day, month, weekday, _ = ["*" if f == "?" else f for f in fields]
    if weekday != "*":
        # Scheduler counts Sunday as 1, Unix as 0.
        def shift(part: str) -> str:
            step = ""
            if "/" in part:
                part, step = part.split("/", 1)
                step = "/" + step
            if part == "*":
                return part + step
            return "-".join(str(int(p) - 1) if p.isdigit() else p for p in part.split("-")) + step

        weekday = ",".join(shift(p) for p in weekday.split(","))
    return " ".join([minute, hour, day, month, weekday])


def first_fire(expression: str, zone: str, after: float) -> float | None:
    """When a schedule fires next, strictly after `after`."""
    if expression.startswith("at("):
        local = datetime.fromisoformat(expression[3:-1]).replace(tzinfo=ZoneInfo(zone or "UTC"))
        moment = local.timestamp()
        return moment if moment > after - 1 else None
    if expression.startswith("cron("):
        return next_cron_run(from_scheduler_cron(expression), after, zone or "UTC")
    raise ValueError(f"unsupported schedule expression: {expression}")


class ScheduleFirer:
    """Fires the schedules stored in an EventBridge Scheduler API that stores them only (moto),
    each into its SQS target."""

    def __init__(self, scheduler: Any, sqs: Any, group: str, *, interval: float = 0.2,
                 cron_tick_seconds: float | None = None) -> None:
        self._scheduler, self._sqs, self._group = scheduler, sqs, group
        # Test mode: cron schedules fire every N seconds instead of on their expression's ticks.
        self._cron_tick = cron_tick_seconds
        self._next: dict[str, tuple[str, float | None]] = {}  # name -> (definition, next fire)
        self._queues: dict[str, str] = {}
        self._loop = Periodic(lambda: self.fire_due(time.time()), interval, "scheduler")

    def start(self) -> None:
        self._loop.start()

    def stop(self) -> None:
        self._loop.stop()

    def _schedules(self) -> list[dict[str, Any]]:
        names, token = [], None
        while True:
            kwargs: dict[str, Any] = {"GroupName": self._group}
            if token:
                kwargs["NextToken"] = token
            page = self._scheduler.list_schedules(**kwargs)
            names += [s["Name"] for s in page.get("Schedules", [])]
            token = page.get("NextToken")
            if not token:
                break
        schedules = []
        for name in names:
            try:
                schedules.append(self._scheduler.get_schedule(Name=name, GroupName=self._group))
            except self._scheduler.exceptions.ResourceNotFoundException:
                continue
        return schedules

    def fire_due(self, at: float) -> int:
        fired = 0
        seen = set()
        for schedule in self._schedules():
            name = schedule["Name"]
            seen.add(name)
            if schedule.get("State", "ENABLED") != "ENABLED":
                continue
            expression = schedule["ScheduleExpression"]
            zone = schedule.get("ScheduleExpressionTimezone") or "UTC"
            definition = json.dumps([expression, zone, schedule["Target"].get("Input")])
            known = self._next.get(name)
            if known is None or known[0] != definition:
                if self._cron_tick and expression.startswith("cron("):
                    due: float | None = at + self._cron_tick
                else:
                    due = first_fire(expression, zone, at)
                known = (definition, due)
                self._next[name] = known
            due = known[1]
            if due is None or due > at:
                continue
            self._deliver(schedule, due)
            fired += 1
            if expression.startswith("at("):
                if schedule.get("ActionAfterCompletion") == "DELETE":
                    self._scheduler.delete_schedule(Name=name, GroupName=self._group)
                self._next[name] = (definition, None)
            elif self._cron_tick:
                self._next[name] = (definition, due + self._cron_tick)
            else:
                self._next[name] = (definition, first_fire(expression, zone, due))
        for name in set(self._next) - seen:
            del self._next[name]
        return fired

    def _deliver(self, schedule: dict[str, Any], due: float) -> None:
        target = schedule["Target"]
        body = with_scheduled_time(target.get("Input") or "{}", due)
        arn = target["Arn"]
        if arn not in self._queues:
            self._queues[arn] = self._sqs.get_queue_url(QueueName=arn.rsplit(":", 1)[-1])["QueueUrl"]
        self._sqs.send_message(QueueUrl=self._queues[arn], MessageBody=body)
