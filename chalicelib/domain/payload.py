"""Validation of job payloads and ids: every rule checked before anything is written."""
from __future__ import annotations

import json
import math
import re
import shlex
import time
import uuid
from typing import Any

from .errors import ValidationError
from .model import Hook, JobSpec
from .schedule import next_cron_run, parse_duration, validate_cron, validate_timezone

TASK_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,255}$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# name, name:tag, registry:port/name:tag, name@sha256:digest (lower-case repository path).
IMAGE = re.compile(
    r"^(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:[._-]+[a-z0-9]+)*(?:/[a-z0-9]+(?:[._-]+[a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$"
)
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
EVENTS = ("starts", "succeeds", "fails", "finishes")
# ECS accepts at most 8 KiB of container overrides (command and environment together).
MAX_OVERRIDES_BYTES = 8192
MAX_HOOKS_PER_EVENT = 10
OVERLAP_POLICIES = ("allow", "forbid", "replace")
# EventBridge Scheduler takes one-time dates far ahead, but a schedule five years out is a mistake.
MAX_SCHEDULE_AHEAD = 5 * 366 * 86400
MAX_RECIPIENTS_PER_EVENT = 50

ONE_SCHEDULE = "Only ONE of 'startAt', 'startIn' and 'cron' should be in the request."
IMAGE_AND_COMMAND = "image and command must be filled in the request."
UNPARSABLE = "Failed to enqueue task because JSON body could not be parsed."


def validate_task_id(task_id: str) -> str:
    if not TASK_ID.match(task_id or ""):
        raise ValidationError(
            "taskId must be 1 to 255 characters of letters, digits, '-', '_', '.' or ':'.", field="taskId"
        )
    return task_id


def validate_uuid(value: str, field: str) -> str:
    try:
        parsed = uuid.UUID(value)
    except (ValueError, TypeError, AttributeError):
        raise ValidationError(f"{field} must be a UUID, got '{value}'.", field=field) from None
    return str(parsed)


def parse_json_object(body: bytes | str | None) -> dict[str, Any]:
    try:
        data = json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError):
        data = None
    if not isinstance(data, dict):
        raise ValidationError(UNPARSABLE, field="body")
    return data


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _string_map(value: Any, field: str, key_rule: re.Pattern[str] | None = None) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValidationError(f"{field} must be an object of names to string values.", field=field)
    for key, item in value.items():
        if key_rule is not None and not key_rule.match(key):
            raise ValidationError(
                f"{field} name '{key}' must start with a letter or '_' and hold only letters, digits and '_'.",
                field=f"{field}.{key}",
            )
        if not isinstance(item, str):
            raise ValidationError(f"{field}.{key} must be a string.", field=f"{field}.{key}")
    return dict(value)


def _events(value: Any, field: str) -> dict[str, list[Any]]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValidationError(f"{field} must be an object with keys {', '.join(EVENTS)}.", field=field)
    for key, items in value.items():
        if key not in EVENTS:
            raise ValidationError(f"{field} key '{key}' must be one of {', '.join(EVENTS)}.", field=f"{field}.{key}")
        if not isinstance(items, list):
            raise ValidationError(f"{field}.{key} must be a list.", field=f"{field}.{key}")
    return value


def _notify(value: Any) -> dict[str, list[str]]:
    result: dict[str, list[str]] = {}
    for event, items in _events(value, "notify").items():
        field = f"notify.{event}"
        if len(items) > MAX_RECIPIENTS_PER_EVENT:
            raise ValidationError(f"{field} holds at most {MAX_RECIPIENTS_PER_EVENT} addresses.", field=field)
        for address in items:
            if not isinstance(address, str) or not EMAIL.match(address):
                raise ValidationError(f"{field} entry '{address}' is not an e-mail address.", field=field)
        result[event] = list(items)
    return result


def _webhooks(value: Any, max_retries: int) -> dict[str, list[Hook]]:
    result: dict[str, list[Hook]] = {}
    for event, items in _events(value, "webhooks").items():
        field = f"webhooks.{event}"
        if len(items) > MAX_HOOKS_PER_EVENT:
            raise ValidationError(f"{field} holds at most {MAX_HOOKS_PER_EVENT} hooks.", field=field)
        hooks = []
        for index, hook in enumerate(items):
            where = f"{field}[{index}]"
            if not isinstance(hook, dict):
                raise ValidationError(f"{where} must be an object with a 'url'.", field=where)
            url = hook.get("url")
            if not isinstance(url, str) or not re.match(r"^https?://[^\s/]+", url):
                raise ValidationError(f"{where}.url must be an http or https URL.", field=f"{where}.url")
            retries = hook.get("retries", 0)
            if not _is_int(retries) or not 0 <= retries <= max_retries:
                raise ValidationError(
                    f"{where}.retries must be an integer from 0 to {max_retries}.", field=f"{where}.retries"
                )
            headers = _string_map(hook.get("headers"), f"{where}.headers")
            hooks.append(Hook(url=url, headers=headers, retries=retries))
        result[event] = hooks
    return result


def validate_job_payload(
    data: dict[str, Any], *, max_timeout: float, max_retries: int, clock: Any = time.time
) -> JobSpec:
    """The job specification a payload asks for, or ValidationError naming the first bad field."""
    image, command = data.get("image"), data.get("command")
    if not image or not command:
        raise ValidationError(IMAGE_AND_COMMAND, field="image" if not image else "command")
    if not isinstance(image, str) or len(image) > 1024 or not IMAGE.match(image):
        raise ValidationError(
            f"image '{image}' is not an image reference like name, name:tag, registry:port/name:tag or name@sha256:digest.",
            field="image",
        )
    if not isinstance(command, str):
        raise ValidationError("command must be a string.", field="command")
    try:
        if not shlex.split(command):
            raise ValueError("it holds no words")
    except ValueError as error:
        raise ValidationError(f"command could not be split into arguments: {error}.", field="command") from None

    envs = _string_map(data.get("envs"), "envs", ENV_NAME)
    overrides = len(json.dumps(shlex.split(command))) + len(json.dumps([{"name": k, "value": v} for k, v in envs.items()]))
    if overrides > MAX_OVERRIDES_BYTES:
        raise ValidationError(
            f"command and envs take {overrides} bytes; a container launch carries at most {MAX_OVERRIDES_BYTES} bytes of them.",
            field="envs" if envs else "command",
        )

    metadata = data.get("metadata", {})
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise ValidationError("metadata must be a JSON object.", field="metadata")

    retries = data.get("retries", 0)
    if retries is None:
        retries = 0
    if not _is_int(retries) or not 0 <= retries <= max_retries:
        raise ValidationError(f"retries must be an integer from 0 to {max_retries}.", field="retries")

    timeout = data.get("timeout")
    if timeout is not None and (not _is_number(timeout) or not 0 < timeout <= max_timeout):
        raise ValidationError(f"timeout must be a number of seconds above 0 and at most {max_timeout:g}.", field="timeout")

    current = clock()
    expiration = data.get("expiration")
    if expiration is not None:
        if not _is_number(expiration) or expiration <= 0:
            raise ValidationError("expiration must be a time in epoch seconds.", field="expiration")
        if expiration <= current:
            raise ValidationError("expiration must be in the future.", field="expiration")

    schedules = [key for key in ("startAt", "startIn", "cron") if data.get(key) not in (None, "")]
    if len(schedules) > 1:
        raise ValidationError(ONE_SCHEDULE, field=schedules[1])
    start_at = data.get("startAt")
    if start_at in ("",):
        start_at = None
    if start_at is not None and (not _is_number(start_at) or start_at <= 0):
        raise ValidationError("startAt must be a time in epoch seconds.", field="startAt")
    start_in = data.get("startIn") or None
    if start_in is not None:
        try:
            parse_duration(start_in)
        except ValueError as error:
            raise ValidationError(f"startIn {error}.", field="startIn") from None
    cron = data.get("cron") or None
    if cron is not None:
        try:
            validate_cron(cron)
        except ValueError as error:
            raise ValidationError(f"{error}.", field="cron") from None
    timezone = data.get("timezone") or None
    if timezone is not None:
        if cron is None:
            raise ValidationError("timezone applies to cron only.", field="timezone")
        try:
            validate_timezone(timezone)
        except ValueError as error:
            raise ValidationError(f"{error}.", field="timezone") from None
    overlap = data.get("overlap") or "allow"
    if overlap not in OVERLAP_POLICIES:
        raise ValidationError(f"overlap must be one of {', '.join(OVERLAP_POLICIES)}.", field="overlap")
    if overlap != "allow" and cron is None:
        raise ValidationError("overlap applies to cron only.", field="overlap")
    if cron is not None and next_cron_run(cron, current, timezone) is None:
        raise ValidationError("cron never runs in the next five years.", field="cron")
    if start_at is not None and start_at > current + MAX_SCHEDULE_AHEAD:
        raise ValidationError("startAt is more than five years ahead.", field="startAt")
    if start_in is not None and parse_duration(start_in) > MAX_SCHEDULE_AHEAD:
        raise ValidationError("startIn is more than five years.", field="startIn")

    return JobSpec(
        image=image,
        command=command,
        envs=envs,
        metadata=metadata,
        retries=retries,
        timeout=float(timeout) if timeout is not None else None,
        expiration=float(expiration) if expiration is not None else None,
        start_at=float(start_at) if start_at is not None else None,
        start_in=start_in,
        cron=" ".join(cron.split()) if cron else None,
        timezone=timezone,
        overlap=overlap,
        notify=_notify(data.get("notify")),
        webhooks=_webhooks(data.get("webhooks"), max_retries),
    )


def redact_envs(envs: dict[str, str], patterns: tuple[str, ...]) -> dict[str, str]:
    """envs with the values of secret-looking names shown as ***."""
    lowered = tuple(p.lower() for p in patterns)
    return {k: ("***" if any(p in k.lower() for p in lowered) else v) for k, v in envs.items()}
