"""The local backend's Scheduler (infra/local/sqlite/scheduler.py): schedules in the state file,
fired onto the jobs queue at their second, in their time zones, once, and across restarts. A
clock of the test's own moves time; the firing loop itself is driven for real in one test."""
from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from chalicelib.domain.messages import CronTick, ScheduleFiring, decode_job_message
from infra.local.sqlite.db import Database
from infra.local.sqlite.queues import JOBS, LocalQueues, create_queues
from infra.local.sqlite.scheduler import SqliteScheduler


class Clock:
    def __init__(self, at: float) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at


def epoch(text: str, zone: str = "UTC") -> float:
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone)).timestamp()


class Local:
    def __init__(self, path: str, clock: Clock, **options: Any) -> None:
        self.db = Database(path)
        self.queues = LocalQueues(self.db, clock)
        create_queues(self.queues)
        self.scheduler = SqliteScheduler(self.db, self.queues, clock=clock, **options)

    def sent(self) -> list[dict[str, Any]]:
        bodies = []
        for message in self.queues.receive(JOBS, 10):
            self.queues.delete(JOBS, message.receipt_handle)
            bodies.append(json.loads(message.body))
        return bodies

    def close(self) -> None:
        self.scheduler.stop()
        self.queues.close()
        self.db.close()


@pytest.fixture
def clock() -> Clock:
    return Clock(epoch("2026-03-28T12:00:00"))


@pytest.fixture
def local(tmp_path: Path, clock: Clock) -> Iterator[Local]:
    made = Local(str(tmp_path / "state.db"), clock)
    try:
        yield made
    finally:
        made.close()


FIRING = ScheduleFiring("task", "job", "v1", due_at=1.0)
TICK = CronTick("task", "job", "v2")


def test_a_one_time_schedule_fires_at_its_second_once_and_deletes_itself(local: Local, clock: Clock) -> None:
    local.scheduler.put_one_time("task-job", clock.at + 10, FIRING)
    clock.at += 9.9
    assert local.scheduler.fire_due() == 0 and local.sent() == []
    clock.at += 0.1
    assert local.scheduler.fire_due() == 1
    assert [decode_job_message(body) for body in local.sent()] == [FIRING]
    clock.at += 3600
    assert local.scheduler.fire_due() == 0 and local.scheduler.next_fire("task-job") is None


def test_a_cron_schedule_fires_on_its_ticks_in_its_time_zone_with_the_time_filled_in(local: Local,
                                                                                    clock: Clock) -> None:
    local.scheduler.put_cron("task-job", "cron(30 9 * * ? *)", "Europe/Paris", TICK)
    first = epoch("2026-03-29T09:30:00", "Europe/Paris")  # the clocks go forward that night
    assert local.scheduler.next_fire("task-job") == first
    clock.at = first
    assert local.scheduler.fire_due() == 1
    (body,) = local.sent()
    assert body["scheduledAt"] == "2026-03-29T07:30:00Z"
    assert decode_job_message(body) == CronTick("task", "job", "v2", scheduled_at=first)
    assert local.scheduler.next_fire("task-job") == epoch("2026-03-30T09:30:00", "Europe/Paris")


def test_a_disabled_cron_schedule_fires_nothing_and_fires_again_from_now_once_enabled(local: Local,
                                                                                      clock: Clock) -> None:
    local.scheduler.put_cron("task-job", "cron(0 * * * ? *)", None, TICK, enabled=False)
    assert local.scheduler.is_enabled("task-job") is False
    clock.at += 3 * 3600
    assert local.scheduler.fire_due() == 0 and local.sent() == []

    local.scheduler.put_cron("task-job", "cron(0 * * * ? *)", None, TICK)

    assert local.scheduler.is_enabled("task-job") is True and local.scheduler.is_enabled("other") is None
    assert local.scheduler.next_fire("task-job") == epoch("2026-03-28T16:00:00")  # the hours it missed are gone


def test_weekdays_count_from_sunday_as_scheduler_counts_them(local: Local, clock: Clock) -> None:
    local.scheduler.put_cron("task-job", "cron(0 8 ? * 2 *)", None, TICK)  # 2: Monday
    assert local.scheduler.next_fire("task-job") == epoch("2026-03-30T08:00:00")


def test_putting_again_replaces_and_deleting_is_idempotent(local: Local, clock: Clock) -> None:
    local.scheduler.put_one_time("task-job", clock.at + 5, FIRING)
    local.scheduler.put_one_time("task-job", clock.at + 60, FIRING)
    clock.at += 10
    assert local.scheduler.fire_due() == 0
    local.scheduler.delete("task-job")
    local.scheduler.delete("task-job")
    local.scheduler.delete("never-there")
    clock.at += 100
    assert local.scheduler.fire_due() == 0


def test_an_expression_scheduler_cannot_fire_is_refused(local: Local) -> None:
    with pytest.raises(ValueError):
        local.scheduler.put_cron("task-job", "cron(0 8 * * ? 2027)", None, TICK)


def test_schedules_survive_a_restart_and_what_came_due_meanwhile_fires_on_start(tmp_path: Path, clock: Clock) -> None:
    path = str(tmp_path / "state.db")
    before = Local(path, clock)
    before.scheduler.put_one_time("once", clock.at + 60, FIRING)
    before.scheduler.put_cron("hourly", "cron(0 * * * ? *)", "UTC", TICK)
    before.close()
    clock.at += 5 * 3600 + 90  # the runtime was down for five hours
    after = Local(path, clock)
    try:
        assert after.scheduler.fire_due() == 2
        sent = after.sent()
        assert sorted(body["kind"] for body in sent) == ["schedule", "tick"]
        # The missed ticks fire once, for the latest of them; the next one is the one to come.
        (tick,) = [body for body in sent if body["kind"] == "tick"]
        assert tick["scheduledAt"] == "2026-03-28T17:00:00Z"
        assert after.scheduler.next_fire("hourly") == epoch("2026-03-28T18:00:00")
        assert after.scheduler.fire_due() == 0
    finally:
        after.close()


def test_the_cron_tick_setting_fires_every_n_seconds(tmp_path: Path, clock: Clock) -> None:
    local = Local(str(tmp_path / "state.db"), clock, cron_tick_seconds=5)
    try:
        local.scheduler.put_cron("task-job", "cron(0 0 1 1 ? *)", "UTC", TICK)
        for _ in range(3):
            clock.at += 5
            assert local.scheduler.fire_due() == 1
        assert len(local.sent()) == 3
    finally:
        local.close()


def test_the_loop_fires_a_schedule_within_milliseconds_of_its_time(tmp_path: Path) -> None:
    db = Database(str(tmp_path / "state.db"))
    queues = LocalQueues(db)
    create_queues(queues)
    scheduler = SqliteScheduler(db, queues)
    scheduler.start()
    try:
        due = time.time() + 0.5
        scheduler.put_one_time("task-job", due, FIRING)
        received = queues.receive(JOBS, 10, wait_seconds=5)
        late = time.time() - due
        assert received and 0 <= late < 0.05
    finally:
        scheduler.stop()
        queues.close()
        db.close()
