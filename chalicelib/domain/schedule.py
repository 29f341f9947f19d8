"""Schedule inputs: startIn durations, cron expressions and time zones."""
from __future__ import annotations

import re
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_duration(text: str) -> int:
    """Seconds in a duration such as `4h30m25s`, `10s` or `2m`; ValueError when it does not parse."""
    match = _DURATION.match(text.strip()) if isinstance(text, str) else None
    if not match or not any(match.groups()):
        raise ValueError(f"'{text}' is not a duration like 10s, 2m30s or 4h30m25s")
    hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if total <= 0:
        raise ValueError("duration must be longer than 0 seconds")
    return total


_MONTHS = {m: i for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split(), start=1)}
_DAYS = {d: i for i, d in enumerate("sun mon tue wed thu fri sat".split())}
# (name, low, high, names) for the five fields of a Unix cron expression.
_CRON_FIELDS = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _DAYS),
)


def _cron_value(text: str, low: int, high: int, names: dict[str, int], field: str) -> int:
    value = names.get(text.lower()) if names else None
    if value is None:
        if not text.isdigit():
            raise ValueError(f"cron {field} '{text}' is not a number")
        value = int(text)
    if not low <= value <= high:
        raise ValueError(f"cron {field} {value} is outside {low}-{high}")
    return value


def parse_cron_field(text: str, index: int) -> frozenset[int]:
    """The values one field of a cron expression selects."""
    field, low, high, names = _CRON_FIELDS[index]
    values: set[int] = set()
    for part in text.split(","):
        step = 1
        if "/" in part:
            part, step_text = part.split("/", 1)
            if not step_text.isdigit() or int(step_text) == 0:
                raise ValueError(f"cron {field} step '{step_text}' must be a positive number")
            step = int(step_text)
        if part == "*":
            start, end = low, high
        elif "-" in part:
            first, last = part.split("-", 1)
            start = _cron_value(first, low, high, names, field)
            end = _cron_value(last, low, high, names, field)
            if start > end:
                raise ValueError(f"cron {field} range '{part}' goes backwards")
        else:
            start = _cron_value(part, low, high, names, field)
            end = high if step > 1 else start
        values.update(range(start, end + 1, step))
    if index == 4 and 7 in values:  # 7 is Sunday too
        values.discard(7)
        values.add(0)
    return frozenset(values)


def validate_cron(expression: str) -> tuple[frozenset[int], ...]:
    """The parsed fields of a 5-field Unix cron expression; ValueError naming the bad part."""
    if not isinstance(expression, str):
        raise ValueError("cron must be a string with 5 fields")
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(f"cron must have 5 fields (minute hour day-of-month month day-of-week), got {len(fields)}")
    return tuple(parse_cron_field(text, i) for i, text in enumerate(fields))


def validate_timezone(name: str) -> ZoneInfo:
    if not isinstance(name, str) or not name or name.startswith("/") or ".." in name:
        raise ValueError("timezone must be an IANA time zone name such as Europe/Paris")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"timezone '{name}' is not a known IANA time zone") from None
