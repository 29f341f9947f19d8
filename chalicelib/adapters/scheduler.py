"""EventBridge Scheduler: one schedule per job, named after its task and job, in the
deployment's schedule group, sending the job's messages to the jobs queue."""
from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..config import Settings
from ..domain.errors import DependencyDown
from ..domain.messages import CronTick, JobMessage, ScheduleFiring, encode


def schedule_name(task_id: str, job_id: str) -> str:
    """At most 64 characters of [0-9A-Za-z-_.]: the task's start, then the whole job id."""
    task = re.sub(r"[^0-9A-Za-z_.-]", "_", task_id)[:27]
    return f"{task}-{job_id}"


def at_expression(moment: float) -> str:
    return "at(" + datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%S") + ")"


class EventBridgeScheduler:
    def __init__(self, client: Any, settings: Settings) -> None:
        self._scheduler = client
        self._settings = settings

    def _put(self, name: str, expression: str, zone: str, message: JobMessage, one_time: bool,
             enabled: bool = True) -> str:
        request: dict[str, Any] = {
            "Name": name,
            "GroupName": self._settings.schedule_group,
            "ScheduleExpression": expression,
            "ScheduleExpressionTimezone": zone,
            "FlexibleTimeWindow": {"Mode": "OFF"},
            "State": "ENABLED" if enabled else "DISABLED",
            "Target": {
                "Arn": self._settings.jobs_queue_arn,
                "RoleArn": self._settings.scheduler_role_arn,
                "Input": encode(message),
                "RetryPolicy": {"MaximumEventAgeInSeconds": 86400, "MaximumRetryAttempts": 185},
            },
            "Description": f"fastlane job {message.job_id} of task {message.task_id}"[:512],
        }
        if one_time:
            request["ActionAfterCompletion"] = "DELETE"
        try:
            try:
                return str(self._scheduler.create_schedule(**request)["ScheduleArn"])
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") != "ConflictException":
                    raise
                return str(self._scheduler.update_schedule(**request)["ScheduleArn"])
        except (BotoCoreError, ClientError) as error:
            raise DependencyDown.of("EventBridge Scheduler", error) from error

    def put_one_time(self, name: str, moment: float, message: ScheduleFiring | CronTick) -> str:
        return self._put(name, at_expression(moment), "UTC", message, one_time=True)

    def put_cron(self, name: str, expression: str, zone: str | None, message: CronTick, *, enabled: bool = True) -> str:
        # A paused job's schedule is put DISABLED whole (UpdateSchedule replaces every field), so
        # pausing needs no GetSchedule first.
        return self._put(name, expression, zone or "UTC", message, one_time=False, enabled=enabled)

    def is_enabled(self, name: str) -> bool | None:
        try:
            found = self._scheduler.get_schedule(Name=name, GroupName=self._settings.schedule_group)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                return None
            raise DependencyDown.of("EventBridge Scheduler", error) from error
        except BotoCoreError as error:
            raise DependencyDown.of("EventBridge Scheduler", error) from error
        return bool(found.get("State", "ENABLED") == "ENABLED")

    def delete(self, name: str) -> None:
        try:
            self._scheduler.delete_schedule(Name=name, GroupName=self._settings.schedule_group)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                raise DependencyDown.of("EventBridge Scheduler", error) from error
        except BotoCoreError as error:
            raise DependencyDown.of("EventBridge Scheduler", error) from error
