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


# Next runs ---------------------------------------------------------------------------------------
#
# One rule for daylight-saving changes, the one EventBridge Scheduler follows: a tick whose local
# time does not exist (the clock jumps forward over it) is skipped; a tick whose local time
# happens twice (the clock goes back) runs once, at its first occurrence.

MAX_SEARCH_DAYS = 366 * 5


def _restricted(values: frozenset[int], index: int) -> bool:
    _, low, high, _ = _CRON_FIELDS[index]
    full = set(range(low, high + 1)) - ({7} if index == 4 else set())
    return set(values) != full


def next_cron_run(expression: str, after: float, timezone: str | None = None) -> float | None:
    """The first tick of a Unix cron expression strictly after `after` (epoch seconds), in the
    time zone (UTC by default). Day of month and day of week combine as in Unix cron: when both
    are restricted, a day matching either runs."""
    from datetime import datetime, timedelta

    minutes, hours, days, months, weekdays = validate_cron(expression)
    zone = validate_timezone(timezone) if timezone else ZoneInfo("UTC")
    day_restricted, weekday_restricted = _restricted(days, 2), _restricted(weekdays, 4)
    start = datetime.fromtimestamp(after, zone)
    for offset in range(MAX_SEARCH_DAYS):
        date = (start + timedelta(days=offset)).date()
        if date.month not in months:
            continue
        in_days, in_weekdays = date.day in days, (date.isoweekday() % 7) in weekdays
        if day_restricted and weekday_restricted:
            matches = in_days or in_weekdays
        else:
            matches = (in_days or not day_restricted) and (in_weekdays or not weekday_restricted)
        if not matches:
            continue
        for hour in sorted(hours):
            for minute in sorted(minutes):
                local = datetime(date.year, date.month, date.day, hour, minute, tzinfo=zone)
                moment = local.timestamp()
                if moment <= after:
                    continue
                if datetime.fromtimestamp(moment, zone).replace(tzinfo=None) != local.replace(tzinfo=None):
                    continue  # a local time the clock skipped
                return moment
    return None


def to_scheduler_cron(expression: str) -> str | None:
    """The EventBridge Scheduler form `cron(min hour day month weekday year)` that fires exactly
    when the Unix expression does, or None when Scheduler cannot say it (both day of month and
    day of week restricted: Unix means either, Scheduler allows only one)."""
    fields = validate_cron(expression)
    restricted = [_restricted(values, i) for i, values in enumerate(fields)]
    if restricted[2] and restricted[4]:
        return None

    def render(index: int) -> str:
        if not restricted[index]:
            return "*"
        values = sorted(fields[index])
        if index == 4:
            values = sorted(v + 1 for v in values)  # Scheduler counts Sunday as 1
        return ",".join(str(v) for v in values)

    day = render(2) if restricted[2] else ("?" if restricted[4] else "*")
    weekday = render(4) if restricted[4] else "?"
    text = f"cron({render(0)} {render(1)} {day} {render(3)} {weekday} *)"
    return text if len(text) <= 256 else None
