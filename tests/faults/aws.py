"""A schedule on the aws backend: the AWS adapters on moto in process, in virtual time, under IAM.

The DynamoDB, SQS, Scheduler, CloudWatch Logs and SES adapters run on moto in process, and each
handler under its function's IAM role (tests/iam.py). moto's SQS reads the wall clock for delays,
visibility timeouts and timestamps, and its Scheduler stamps schedules with it: while a schedule
runs, both modules' time functions read the schedule's clock instead (restored after), so a delay,
a visibility timeout, a receive count and the redrive to a dead-letter queue happen in virtual
time. moto's Scheduler never fires: the schedules the adapter stored fire here when due, from
moto's own records (expression, time zone, target input), into the jobs queue, as EventBridge
Scheduler would. When each queue next has a message due is read from moto's records of its
messages; ECS task state changes go onto the events queue there too, as the EventBridge rule
puts them (no function's call)."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import replace
from typing import Any

from chalicelib.ports import Backend
from infra.local.scheduler import first_fire, with_scheduled_time
from infra.local.sqlite.queues import EVENTS
from tests.contract.support import FakeClock

from .deployments import (
    ACCOUNT,
    MAIL_SENDER,
    MAX_RECEIVE_COUNT,
    QUEUES,
    REGION,
    SCHEDULER,
    VISIBILITY_TIMEOUT,
    Unserved,
)
from .environment import swapped

PREFIX = "fastlane"  # the queues are then named as the local backend's
# What would point boto3 elsewhere than moto in process.
FOREIGN = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_SQS", "AWS_PROFILE",
           "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")


@contextmanager
def virtual_time(clock: FakeClock) -> Iterator[None]:
    """moto's SQS and Scheduler read `clock`, in whole milliseconds as SQS keeps its times: the
    moment the driver computes for a message is then exactly the one moto compares with."""
    from moto.scheduler import models as scheduler_models
    from moto.sqs import models as sqs_models

    def millis(dt: Any = None) -> float:
        return float(round(clock.value * 1000))

    def seconds(dt: Any = None) -> float:
        return millis() / 1000

    patched = [(sqs_models, "unix_time", seconds), (sqs_models, "unix_time_millis", millis),
               (scheduler_models, "unix_time", seconds)]
    saved = [(module, name, getattr(module, name)) for module, name, _ in patched]
    for module, name, function in patched:
        setattr(module, name, function)
    try:
        yield
    finally:
        for module, name, original in saved:
            setattr(module, name, original)


class AwsDeployment:
    name = "aws"
    batched = True

    def __init__(self, clock: FakeClock) -> None:
        self._clock = clock
        self._urls: dict[str, str] = {}
        self._due: dict[str, tuple[tuple[Any, ...], float | None]] = {}  # schedule -> (its definition, next fire)

    @contextmanager
    def opened(self) -> Iterator[Backend]:
        import boto3
        from moto import mock_aws

        from chalicelib import wiring
        from chalicelib.adapters.deliveries import DeliveryLog
        from chalicelib.config import get_settings
        from infra.local.botocore_models import share_botocore_models
        from infra.local.provision import local_environment, provision
        from tests import iam

        share_botocore_models()
        iam.install()
        settings = {"AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION, "AWS_ACCESS_KEY_ID": "testing",
                    "AWS_SECRET_ACCESS_KEY": "testing", "ECS_CLUSTER": PREFIX, **local_environment(PREFIX)}
        with swapped(settings, removed=FOREIGN), mock_aws(), virtual_time(self._clock):
            wiring.reset()
            self._sqs = boto3.client("sqs", region_name=REGION)
            env = provision(self._sqs, PREFIX, MAX_RECEIVE_COUNT, logs=boto3.client("logs", region_name=REGION),
                            visibility_timeout=VISIBILITY_TIMEOUT)
            boto3.client("ses", region_name=REGION).verify_email_identity(EmailAddress=MAIL_SENDER)
            self._urls = {name: env[f"{name.rsplit('-', 1)[-1].upper()}_QUEUE_URL"] for name in QUEUES}
            with swapped(env, removed=FOREIGN):
                wiring.reset()  # the settings are read again, with the queues'
                built = wiring.build_aws_backend(get_settings())
                # The delivery log's leases are measured on the schedule's clock, as on AWS on the real one.
                deliveries = DeliveryLog(wiring.lazy_client("dynamodb"), get_settings().deliveries_table,
                                         clock=self._clock)
                yield replace(built, deliveries=deliveries, runner=Unserved("runner"), webhooks=Unserved("webhooks"),
                              starter=Unserved("starter"), read_secret=Unserved("secrets"))

    # moto's records --------------------------------------------------------------------------------

    # The AWS services' own doings (EventBridge putting an event on a queue, Scheduler firing) are
    # no function's calls: they go to moto's records directly, under no role.

    @staticmethod
    def _sqs_backend() -> Any:
        from moto.sqs.models import sqs_backends

        return sqs_backends[ACCOUNT][REGION]

    @staticmethod
    def _group() -> Any:
        from moto.scheduler.models import scheduler_backends

        return scheduler_backends[ACCOUNT][REGION].schedule_groups[PREFIX]

    def _queue(self, name: str) -> Any:
        return self._sqs_backend().queues[name]

    def moments(self) -> dict[str, float]:
        moments: dict[str, float] = {}
        for name in QUEUES:
            # moto hands a message out once its clock is past `visible_at` and not before `delayed_until`.
            due = [max(message.visible_at + 1, message.delayed_until) for message in self._queue(name)._messages]
            if due:
                moments[name] = min(due) / 1000
        fires = [due for _, due in self._schedules().values() if due is not None]
        if fires:
            moments[SCHEDULER] = min(fires)
        return moments

    def _schedules(self) -> dict[str, tuple[tuple[Any, ...], float | None]]:
        """Each stored schedule's next fire: a one-time schedule's moment, a cron schedule's
        first tick after it was put (moto stamps that in virtual time), then each tick after."""
        known = {}
        for name, schedule in self._group().schedules.items():
            if schedule.state != "ENABLED":
                continue
            expression, zone = schedule.schedule_expression, schedule.schedule_expression_timezone or "UTC"
            definition = (schedule.last_modified_date, expression, zone, schedule.target.get("Input"))
            entry = self._due.get(name)
            if entry is None or entry[0] != definition:
                after = float("-inf") if expression.startswith("at(") else schedule.last_modified_date
                entry = (definition, first_fire(expression, zone, after))
            known[name] = entry
        self._due = known
        return known

    def fire_schedules(self) -> None:
        for name, (definition, due) in list(self._schedules().items()):
            if due is None or due > self._clock.value:
                continue
            schedule = self._group().schedules[name]
            body = with_scheduled_time(schedule.target.get("Input") or "{}", due)
            self._sqs_backend().send_message(schedule.target["Arn"].rsplit(":", 1)[-1], body)
            expression, zone = definition[1], definition[2]
            if expression.startswith("at("):
                self._due[name] = (definition, None)
                if schedule.action_after_completion == "DELETE":
                    self._group().delete_schedule(name)
            else:
                self._due[name] = (definition, first_fire(expression, zone, due))

    # the event sources -----------------------------------------------------------------------------

    def receive(self, queue: str) -> list[dict[str, Any]]:
        answer = self._sqs.receive_message(QueueUrl=self._urls[queue], MaxNumberOfMessages=10, WaitTimeSeconds=0,
                                           AttributeNames=["All"])
        messages: list[dict[str, Any]] = answer.get("Messages", [])
        return messages

    def delete(self, queue: str, receipt_handles: list[str]) -> None:
        if receipt_handles:
            self._sqs.delete_message_batch(QueueUrl=self._urls[queue], Entries=[
                {"Id": str(index), "ReceiptHandle": handle} for index, handle in enumerate(receipt_handles)])

    def send_event(self, body: str, delay_seconds: float) -> None:
        self._sqs_backend().send_message(EVENTS, body, delay_seconds=int(round(delay_seconds)))

    def holds_messages(self, queue: str) -> bool:
        return bool(self._queue(queue)._messages)

    def dead_letters(self) -> dict[str, int]:
        return {name: len(self._queue(name + "-dlq")._messages) for name in QUEUES}

    def acting_as(self, function: str) -> AbstractContextManager[None]:
        from tests import iam

        return iam.acting_as(function)

    def refusals(self) -> list[str]:
        from tests import iam

        return iam.take_violations()
