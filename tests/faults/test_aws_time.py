"""The aws backend of the fault harness keeps the schedule's time: moto's queues delay, hide and
redrive messages, and the stored schedules fire, by the virtual clock alone."""
from __future__ import annotations

import json

from chalicelib.domain.messages import CronTick, ScheduleFiring, decode_job_message
from infra.local.sqlite.queues import EVENTS, JOBS
from tests.contract.support import FakeClock

from .aws import AwsDeployment
from .deployments import MAIL_SENDER, MAX_RECEIVE_COUNT, SCHEDULER, VISIBILITY_TIMEOUT
from .environment import settings
from .simulation import START

SETTINGS = {"MAIL_SENDER": MAIL_SENDER, "POWERTOOLS_METRICS_DISABLED": "1"}


def test_a_message_is_delayed_hidden_and_dead_lettered_in_virtual_time() -> None:
    clock = FakeClock(START)
    deployment = AwsDeployment(clock)
    with settings(SETTINGS), deployment.opened():
        deployment.send_event(json.dumps({"detail": {}}), 90)
        assert deployment.moments()[EVENTS] == START + 90
        clock.value = START + 89.999
        assert deployment.receive(EVENTS) == []
        for receive in range(1, MAX_RECEIVE_COUNT + 1):
            clock.value = deployment.moments()[EVENTS]
            [message] = deployment.receive(EVENTS)
            assert message["Attributes"]["ApproximateReceiveCount"] == str(receive)
            assert deployment.moments()[EVENTS] == round(clock.value + VISIBILITY_TIMEOUT + 0.001, 3)
        clock.value = deployment.moments()[EVENTS]
        assert deployment.receive(EVENTS) == []  # received as often as the redrive policy allows
        assert not deployment.holds_messages(EVENTS)
        assert deployment.dead_letters()[EVENTS] == 1


def test_stored_schedules_fire_into_the_jobs_queue_when_due() -> None:
    clock = FakeClock(START + 30)  # half a minute past a whole minute
    deployment = AwsDeployment(clock)
    with settings(SETTINGS), deployment.opened() as ports:
        ports.scheduler.put_cron("cron", "cron(*/5 * * * ? *)", "UTC", CronTick("t", "cron-job", "v1"))
        ports.scheduler.put_one_time("once", START + 100, ScheduleFiring("t", "once-job", "v1", START + 100))
        assert deployment.moments()[SCHEDULER] == START + 100
        clock.value = START + 100
        deployment.fire_schedules()
        next_tick = START + 300 - START % 300 if START % 300 else START + 300
        assert deployment.moments()[SCHEDULER] == next_tick  # the one-time schedule is gone
        clock.value = next_tick
        deployment.fire_schedules()
        fired = [decode_job_message(message["Body"]) for message in deployment.receive(JOBS)]
        assert [message.job_id for message in fired] == ["once-job", "cron-job"]
        assert isinstance(fired[1], CronTick) and fired[1].scheduled_at == next_tick
        assert deployment.moments()[SCHEDULER] == next_tick + 300


def test_moto_reads_the_wall_clock_again_after_a_schedule() -> None:
    from moto.sqs import models

    before = models.__dict__["unix_time"]
    with settings(SETTINGS), AwsDeployment(FakeClock(START)).opened():
        assert models.__dict__["unix_time"]() == START
    assert models.__dict__["unix_time"] is before
