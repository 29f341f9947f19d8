"""Validation of job payloads and ids: every rule checked before anything is written. Each
pattern is matched whole (`fullmatch`): `$` would accept a final newline. docs/decisions.md#input."""
from __future__ import annotations

import json
import math
import re
import shlex
import time
from typing import Any

from .errors import TooLarge, ValidationError
from .limits import ECS_MAX_OVERRIDE_BYTES
from .model import Concurrency, Hook, JobSpec
from .retry import parse_retry
from .schedule import next_cron_run, parse_duration, validate_cron, validate_timezone

TASK_ID = re.compile(r"[A-Za-z0-9_.:-]{1,255}")
# Keys the store keeps next to tasks ("#tasks", "#pool:...", "#stats:...") start with these; no
# id may, whatever the character rules become.
RESERVED_KEY_PREFIXES = ("#",)
UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")
# The service sets these in every container (chalicelib/adapters/ecs.py); a job may not.
SERVICE_ENV_NAMES = ("FASTLANE_TASK_ID", "FASTLANE_JOB_ID", "FASTLANE_EXECUTION_ID")
# name, name:tag, registry:port/name:tag, name@sha256:digest (lower-case repository path).
IMAGE = re.compile(
    r"(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:[._-]+[a-z0-9]+)*(?:/[a-z0-9]+(?:[._-]+[a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?"
)
EMAIL = re.compile(r"[^@\s\x00-\x1f\x7f]{1,64}@[^@\s\x00-\x1f\x7f]+\.[^@\s\x00-\x1f\x7f]+")
# scheme://host[:port] then anything but whitespace and control characters.
WEBHOOK_URL = re.compile(r"https?://[^\s/?#@\x00-\x1f\x7f]+(?:[/?#][^\s\x00-\x1f\x7f]*)?", re.IGNORECASE)
HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}")  # an RFC 9110 token
CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # every control character but tab
EVENTS = ("starts", "succeeds", "fails", "finishes")
MAX_HOOKS_PER_EVENT = 10
MAX_HEADERS_PER_HOOK = 20
MAX_HEADER_VALUE_CHARS = 4096
MAX_URL_CHARS = 2048
OVERLAP_POLICIES = ("allow", "forbid", "replace", "buffer")
DEFAULT_CATCHUP_WINDOW = 60.0  # seconds: a run that could not fire on time still runs this late
MAX_CATCHUP_WINDOW = 86_400.0
MAX_JITTER = 3_600.0
MAX_CONCURRENCY_LIMIT = 10_000
CONCURRENCY_KEY = re.compile(r"(?:[A-Za-z0-9_.:/-]|\{taskId\}){1,128}")
# EventBridge Scheduler takes one-time dates far ahead, but a schedule five years out is a mistake.
MAX_SCHEDULE_AHEAD = 5 * 366 * 86400
MAX_RECIPIENTS_PER_EVENT = 50
MAX_EPOCH = 253402300799  # 9999-12-31T23:59:59Z: the last second a date can be written
# Fargate's largest task: what the overrides of any pool can carry as cpu and memory.
MAX_CPU, MAX_MEMORY = "16384", "122880"

ONE_SCHEDULE = "Only ONE of 'startAt', 'startIn' and 'cron' should be in the request."
IMAGE_AND_COMMAND = "image and command must be filled in the request."


def validate_task_id(task_id: str) -> str:
    if not isinstance(task_id, str) or not TASK_ID.fullmatch(task_id):
        raise ValidationError(
            "taskId must be 1 to 255 characters of letters, digits, '-', '_', '.' or ':'.", field="taskId"
        )
    if task_id in (".", ".."):
        raise ValidationError("taskId may not be '.' or '..'.", field="taskId")
    if task_id.startswith(RESERVED_KEY_PREFIXES):
        raise ValidationError(f"taskId may not start with {' or '.join(RESERVED_KEY_PREFIXES)}.", field="taskId")
    return task_id


def validate_uuid(value: str, field: str) -> str:
    """The id in its canonical lower-case form; the hyphenated 36-character form only."""
    if not isinstance(value, str) or not UUID.fullmatch(value):
        shown = value[:64] if isinstance(value, str) else value
        raise ValidationError(f"{field} must be a UUID like 5a023792-1445-44e9-8a8b-cfe5ad05d1c6, got '{shown}'.",
                              field=field)
    return value.lower()


def stored_bytes(spec: JobSpec) -> int:
    """The size of a job's specification as the store writes it (JSON with non-ASCII escaped,
    so a character can take 6 or 12 bytes where the request body had 2 to 4)."""
    return len(json.dumps(spec.to_dict()).encode("utf-8"))


def override_bytes(command: list[str], envs: dict[str, str], task_id: str | None = None) -> int:
    """The size of the RunTask overrides as ECS counts them: the JSON of the whole structure,
    with the job's environment and the service's own variables (chalicelib/adapters/ecs.py), for
    the largest cpu and memory a pool may set and, without a task id, the longest one."""
    environment = [{"name": k, "value": v} for k, v in envs.items()]
    ids = {"FASTLANE_TASK_ID": task_id or "t" * 255, "FASTLANE_JOB_ID": "0" * 36, "FASTLANE_EXECUTION_ID": "0" * 36}
    environment += [{"name": name, "value": ids[name]} for name in SERVICE_ENV_NAMES]
    overrides = {"cpu": MAX_CPU, "memory": MAX_MEMORY,
                 "containerOverrides": [{"name": "job", "command": command, "environment": environment}]}
    return len(json.dumps(overrides, separators=(",", ":")).encode("utf-8"))


# fields -----------------------------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _epoch(value: Any, field: str) -> float:
    if not _is_number(value) or not 0 < value <= MAX_EPOCH:
        raise ValidationError(f"{field} must be a time in epoch seconds, above 0 and at most {MAX_EPOCH}.", field=field)
    return float(value)


def _envs(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValidationError("envs must be an object of names to string values.", field="envs")
    for key, item in value.items():
        if not ENV_NAME.fullmatch(key):
            raise ValidationError(
                f"envs name '{key[:64]}' must start with a letter or '_' and hold only letters, digits and '_' "
                "(at most 255).", field=f"envs.{key[:64]}")
        if key in SERVICE_ENV_NAMES:
            raise ValidationError(f"envs name '{key}' is set by the service in every container.", field=f"envs.{key}")
        if not isinstance(item, str):
            raise ValidationError(f"envs.{key} must be a string.", field=f"envs.{key}")
        if "\x00" in item:
            raise ValidationError(f"envs.{key} may not hold a NUL character.", field=f"envs.{key}")
    return dict(value)


def _headers(value: Any, where: str) -> dict[str, str]:
    field = f"{where}.headers"
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValidationError(f"{field} must be an object of header names to string values.", field=field)
    if len(value) > MAX_HEADERS_PER_HOOK:
        raise ValidationError(f"{field} holds at most {MAX_HEADERS_PER_HOOK} headers.", field=field)
    for name, item in value.items():
        if not HEADER_NAME.fullmatch(name):
            raise ValidationError(f"{field} name '{name[:64]}' must be an HTTP header name (letters, digits and "
                                  "!#$%&'*+.^_`|~-, no spaces).", field=f"{field}.{name[:64]}")
        if not isinstance(item, str):
            raise ValidationError(f"{field}.{name} must be a string.", field=f"{field}.{name}")
        if len(item) > MAX_HEADER_VALUE_CHARS or CONTROL.search(item) or item != item.strip(" \t"):
            raise ValidationError(f"{field}.{name} must be at most {MAX_HEADER_VALUE_CHARS} characters, without CR, LF "
                                  "or other control characters and without leading or trailing spaces.",
                                  field=f"{field}.{name}")
    return dict(value)


def _events(value: Any, field: str) -> dict[str, list[Any]]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValidationError(f"{field} must be an object with keys {', '.join(EVENTS)}.", field=field)
    for key, items in value.items():
        if key not in EVENTS:
            raise ValidationError(f"{field} key '{key[:64]}' must be one of {', '.join(EVENTS)}.",
                                  field=f"{field}.{key[:64]}")
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
            if not isinstance(address, str) or len(address) > 254 or not EMAIL.fullmatch(address):
                shown = address[:64] if isinstance(address, str) else address
                raise ValidationError(f"{field} entry '{shown}' is not an e-mail address.", field=field)
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
            if not isinstance(url, str) or len(url) > MAX_URL_CHARS or not WEBHOOK_URL.fullmatch(url):
                raise ValidationError(f"{where}.url must be an http or https URL of at most {MAX_URL_CHARS} characters, "
                                      "without spaces or control characters.", field=f"{where}.url")
            retries = hook.get("retries", 0)
            if not _is_int(retries) or not 0 <= retries <= max_retries:
                raise ValidationError(
                    f"{where}.retries must be an integer from 0 to {max_retries}.", field=f"{where}.retries"
                )
            hooks.append(Hook(url=url, headers=_headers(hook.get("headers"), where), retries=retries))
        result[event] = hooks
    return result


def _command(command: Any) -> list[str]:
    if not isinstance(command, str):
        raise ValidationError("command must be a string.", field="command")
    if "\x00" in command:
        raise ValidationError("command may not hold a NUL character.", field="command")
    try:
        words = shlex.split(command)
    except ValueError as error:
        raise ValidationError(f"command could not be split into arguments: {error}.", field="command") from None
    if not words:
        raise ValidationError("command could not be split into arguments: it holds no words.", field="command")
    return words


def _schedule(data: dict[str, Any], current: float) -> tuple[float | None, str | None, str | None, str | None, str]:
    """startAt, startIn, cron, timezone and overlap, checked together."""
    schedules = [key for key in ("startAt", "startIn", "cron") if data.get(key) not in (None, "")]
    if len(schedules) > 1:
        raise ValidationError(ONE_SCHEDULE, field=schedules[1])
    raw_start_at = data.get("startAt")
    start_at = None if raw_start_at in (None, "") else _epoch(raw_start_at, "startAt")
    if start_at is not None and start_at > current + MAX_SCHEDULE_AHEAD:
        raise ValidationError("startAt is more than five years ahead.", field="startAt")
    start_in = data.get("startIn") or None
    if start_in is not None:
        try:
            seconds = parse_duration(start_in)
        except ValueError as error:
            raise ValidationError(f"startIn {error}.", field="startIn") from None
        if seconds > MAX_SCHEDULE_AHEAD:
            raise ValidationError("startIn is more than five years.", field="startIn")
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
    return start_at, start_in, cron, timezone, overlap


def _catchup_window(data: dict[str, Any], scheduled: bool) -> float | None:
    window = data.get("catchupWindow")
    if window is None:
        return None
    if not scheduled:
        raise ValidationError("catchupWindow applies to scheduled jobs only (startAt, startIn or cron).",
                              field="catchupWindow")
    if not _is_number(window) or not 0 <= window <= MAX_CATCHUP_WINDOW:
        raise ValidationError(f"catchupWindow must be a number of seconds from 0 to {MAX_CATCHUP_WINDOW:g}.",
                              field="catchupWindow")
    return float(window)


def _jitter(data: dict[str, Any], cron: str | None, timezone: str | None, current: float) -> float:
    jitter = data.get("jitter")
    if jitter is None:
        return 0.0
    if cron is None:
        raise ValidationError("jitter applies to cron only.", field="jitter")
    if not _is_number(jitter) or not 0 <= jitter <= MAX_JITTER:
        raise ValidationError(f"jitter must be a number of seconds from 0 to {MAX_JITTER:g}.", field="jitter")
    first = next_cron_run(cron, current, timezone)
    second = next_cron_run(cron, first, timezone) if first is not None else None
    if first is not None and second is not None and jitter >= second - first:
        raise ValidationError(f"jitter must be less than the time between two ticks ({second - first:g} s), so "
                              "ticks stay in order.", field="jitter")
    return float(jitter)


def _concurrency(value: Any) -> Concurrency | None:
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) != {"key", "limit"}:
        raise ValidationError('concurrency must be a JSON object with a key and a limit, like '
                              '{"key": "reports-{taskId}", "limit": 2}.', field="concurrency")
    key, limit = value["key"], value["limit"]
    if not isinstance(key, str) or not CONCURRENCY_KEY.fullmatch(key):
        raise ValidationError("concurrency.key must be 1 to 128 letters, digits and _ . : / -, with {taskId} "
                              "standing for the task's id.", field="concurrency.key")
    if not _is_int(limit) or not 1 <= limit <= MAX_CONCURRENCY_LIMIT:
        raise ValidationError(f"concurrency.limit must be an integer from 1 to {MAX_CONCURRENCY_LIMIT}.",
                              field="concurrency.limit")
    return Concurrency(key, int(limit))


def validate_job_payload(
    data: dict[str, Any], *, max_timeout: float, max_retries: int, clock: Any = time.time,
    task_id: str | None = None, max_stored_bytes: int | None = None,
) -> JobSpec:
    """The job specification a payload asks for, or ValidationError naming the first bad field
    (TooLarge when it would be stored larger than `max_stored_bytes`)."""
    image, command = data.get("image"), data.get("command")
    if not image or not command:
        raise ValidationError(IMAGE_AND_COMMAND, field="image" if not image else "command")
    if not isinstance(image, str) or len(image) > 1024 or not IMAGE.fullmatch(image):
        shown = image[:128] if isinstance(image, str) else image
        raise ValidationError(
            f"image '{shown}' is not an image reference like name, name:tag, registry:port/name:tag or name@sha256:digest.",
            field="image",
        )
    words = _command(command)
    envs = _envs(data.get("envs"))
    size = override_bytes(words, envs, task_id)
    if size > ECS_MAX_OVERRIDE_BYTES:
        raise ValidationError(
            f"command and envs make a container launch of {size} bytes (with the service's own variables and the "
            f"JSON around them, as ECS counts it); ECS accepts at most {ECS_MAX_OVERRIDE_BYTES}.",
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
    retry = None
    if data.get("retry") is not None:
        if data.get("retries") is not None:
            raise ValidationError("Give retries or retry, not both: retry.attempts says how many retries.",
                                  field="retry")
        retry = parse_retry(data["retry"], max_retries)

    timeout = data.get("timeout")
    if timeout is not None and (not _is_number(timeout) or not 0 < timeout <= max_timeout):
        raise ValidationError(f"timeout must be a number of seconds above 0 and at most {max_timeout:g}.", field="timeout")

    current = clock()
    expiration = None if data.get("expiration") is None else _epoch(data["expiration"], "expiration")
    if expiration is not None and expiration <= current:
        raise ValidationError("expiration must be in the future.", field="expiration")

    start_at, start_in, cron, timezone, overlap = _schedule(data, current)
    catchup_window = _catchup_window(data, start_at is not None or start_in is not None or cron is not None)
    jitter = _jitter(data, cron, timezone, current)
    concurrency = _concurrency(data.get("concurrency"))
    spec = JobSpec(
        image=image,
        command=command,
        envs=envs,
        metadata=metadata,
        retries=retries,
        timeout=float(timeout) if timeout is not None else None,
        expiration=expiration,
        start_at=start_at,
        start_in=start_in,
        cron=" ".join(cron.split()) if cron else None,
        timezone=timezone,
        overlap=overlap,
        notify=_notify(data.get("notify")),
        webhooks=_webhooks(data.get("webhooks"), max_retries),
        retry=retry,
        catchup_window=catchup_window,
        jitter=jitter,
        concurrency=concurrency,
    )
    if max_stored_bytes is not None and (stored := stored_bytes(spec)) > max_stored_bytes:
        raise TooLarge(f"The job takes {stored} bytes as stored (non-ASCII text is stored escaped); at most "
                       f"{max_stored_bytes} are accepted.", field="body")
    return spec
