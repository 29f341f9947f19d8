"""Schedule inputs: startIn durations, cron expressions (parsed and iterated by cronsim) and time
zones, and the one daylight-saving rule next runs follow."""
from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

# ASCII digits only: `\d` would take any script's digits (and int() would read them).
_DURATION = re.compile(r"(?:([0-9]{1,9})h)?(?:([0-9]{1,9})m)?(?:([0-9]{1,9})s)?")
_ZONE = re.compile(r"[A-Za-z0-9_+-]+(?:/[A-Za-z0-9_+-]+)*")


def schedule_name(task_id: str, job_id: str) -> str:
    """A job's Scheduler schedule: at most 64 characters of [0-9A-Za-z-_.], the task's start,
    then the whole job id, so an operator finds a job's schedule by its name."""
    task = re.sub(r"[^0-9A-Za-z_.-]", "_", task_id)[:27]
    return f"{task}-{job_id}"


def parse_duration(text: str) -> int:
    """Seconds in a duration such as `4h30m25s`, `10s` or `2m`; ValueError when it does not parse."""
    match = _DURATION.fullmatch(text) if isinstance(text, str) else None
    if not match or not any(match.groups()):
        shown = text[:64] if isinstance(text, str) else text
        raise ValueError(f"'{shown}' is not a duration like 10s, 2m30s or 4h30m25s")
    hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if total <= 0:
        raise ValueError("duration must be longer than 0 seconds")
    return total


# cron ------------------------------------------------------------------------------------------
#
# cronsim parses and iterates; what is ours is the dialect (plain Unix cron: numbers, names, `*`,
# lists, ranges and steps; not cronsim's L, W, # or seconds, which EventBridge Scheduler cannot
# be told exactly) and the daylight-saving rule below.

_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 6))
_CRON_FIELD = re.compile(r"[0-9A-Za-z*,/-]{1,100}")
_NAMES = re.compile(r"[A-Za-z]+")
_MONTH_NAMES = "jan feb mar apr may jun jul aug sep oct nov dec".split()
_DAY_NAMES = "sun mon tue wed thu fri sat".split()
MAX_CRON_CHARS = 256


def _check_field(text: str, index: int) -> None:
    name, low, high = _FIELDS[index]
    allowed = _MONTH_NAMES if index == 3 else _DAY_NAMES if index == 4 else []
    bad_name = any(word.lower() not in allowed for word in _NAMES.findall(text))
    if not _CRON_FIELD.fullmatch(text) or bad_name:
        raise ValueError(f"cron {name} '{text[:32]}' is not valid: use numbers {low}-{high}"
                         + (", names," if allowed else ",") + " *, lists a,b, ranges a-b and steps /n")


def _fields(expression: str) -> list[str]:
    return [text for text in expression.split(" ") if text]


def validate_cron(expression: str) -> tuple[frozenset[int], ...]:
    """The values each field of a 5-field Unix cron expression selects (Sunday is 0, also
    written 7); ValueError naming the bad part."""
    if not isinstance(expression, str) or len(expression) > MAX_CRON_CHARS:
        raise ValueError(f"cron must be a string of 5 fields, at most {MAX_CRON_CHARS} characters")
    if any(ch != " " and not (ch.isascii() and ch.isprintable()) for ch in expression):
        raise ValueError("cron holds a character other than ASCII fields and the spaces between them")
    fields = _fields(expression)
    if len(fields) != 5:
        raise ValueError(f"cron must have 5 fields (minute hour day-of-month month day-of-week), got {len(fields)}")
    for index, text in enumerate(fields):
        _check_field(text, index)
    try:
        parsed = CronSim(" ".join(fields), datetime(2000, 1, 1))
    except CronSimError as error:
        raise ValueError(f"cron '{' '.join(fields)[:64]}' is not valid: {str(error).lower()}") from None
    weekdays = {int(v) for v in parsed.weekdays if isinstance(v, int)}
    weekdays = {0 if v == 7 else v for v in weekdays}
    return (frozenset(parsed.minutes), frozenset(parsed.hours), frozenset(parsed.days), frozenset(parsed.months),
            frozenset(weekdays))


def validate_timezone(name: str) -> ZoneInfo:
    if not isinstance(name, str) or len(name) > 64 or not _ZONE.fullmatch(name) or ".." in name:
        raise ValueError("timezone must be an IANA time zone name such as Europe/Paris")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"timezone '{name}' is not a known IANA time zone") from None


# Next runs ---------------------------------------------------------------------------------------
#
# One rule for daylight-saving changes, the one EventBridge Scheduler follows: a tick whose local
# time does not exist (the clock jumps forward over it) is skipped; a tick whose local time
# happens twice (the clock goes back) runs once, at its first occurrence. cronsim is asked for
# ticks in local wall-clock time (a naive datetime, which it iterates without any time-zone
# handling of its own); each is then placed in the zone by this rule.

MAX_SEARCH_DAYS = 366 * 5


def next_cron_run(expression: str, after: float, timezone: str | None = None) -> float | None:
    """The first tick of a Unix cron expression strictly after `after` (epoch seconds), in the
    time zone (UTC by default), within five years. Day of month and day of week combine as in
    Vixie cron: when either field starts with `*`, a day must match both; otherwise either."""
    return next(cron_ticks(expression, after, timezone), None)


def cron_ticks(expression: str, after: float, timezone: str | None = None) -> Iterator[float]:
    """The ticks strictly after `after`, soonest first, within five years of it."""
    validate_cron(expression)
    zone = validate_timezone(timezone) if timezone else ZoneInfo("UTC")
    start = datetime.fromtimestamp(after, zone).replace(tzinfo=None)
    horizon = start + timedelta(days=MAX_SEARCH_DAYS)
    for local in CronSim(" ".join(expression.split()), start):
        if local > horizon:
            return
        placed = local.replace(tzinfo=zone)  # fold=0: the first occurrence of a repeated time
        moment = placed.timestamp()
        if datetime.fromtimestamp(moment, zone).replace(tzinfo=None) != local:
            continue  # a local time the clock skipped
        if moment <= after:
            continue  # the repeated hour's second pass, whose first occurrence is behind us
        yield moment


def _restricted(values: frozenset[int], index: int) -> bool:
    _, low, high = _FIELDS[index]
    return set(values) != set(range(low, high + 1))


def to_scheduler_cron(expression: str) -> str | None:
    """The EventBridge Scheduler form `cron(min hour day month weekday year)` that fires exactly
    when the Unix expression does, or None when Scheduler cannot say it (both day of month and
    day of week restricted: Scheduler allows only one of them)."""
    fields = validate_cron(expression)
    restricted = [_restricted(values, i) for i, values in enumerate(fields)]
    texts = _fields(expression)
    if not (texts[2].startswith("*") or texts[4].startswith("*")) and not (restricted[2] and restricted[4]):
        # Either day field matching is enough, and one of them matches every day.
        restricted[2] = restricted[4] = False
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


# Jitter, missed ticks and next runs -------------------------------------------------------------

MAX_COUNTED_TICKS = 100_000  # missed ticks are counted up to this many (a paused per-minute cron: 69 days)


def jitter_offset(job_id: str, version: str, tick: float, jitter: float) -> float:
    """The tick's offset in [0, jitter): drawn from the job, its schedule version and the tick, so
    every copy of a tick (a duplicate delivery, the reconciler's resend) agrees on when it fires
    and how late it is."""
    if jitter <= 0:
        return 0.0
    digest = hashlib.sha256(f"{job_id}/{version}/{tick:.3f}".encode()).digest()
    return round(int.from_bytes(digest[:8], "big") / 2**64 * jitter, 3)


def ticks_between(expression: str, start: float, end: float, timezone: str | None = None,
                  limit: int = MAX_COUNTED_TICKS) -> tuple[int, float | None]:
    """How many ticks fall in [start, end] (counted up to `limit`), and the latest of them (None
    when none does)."""
    count, latest = 0, None
    for tick in cron_ticks(expression, start - 0.001, timezone):
        if tick > end or count >= limit:
            break
        count, latest = count + 1, tick
    return count, latest


def next_runs(expression: str, after: float, timezone: str | None = None, count: int = 5) -> list[float]:
    """The next `count` ticks strictly after `after`, by the daylight-saving rule of next_cron_run."""
    return list(itertools.islice(cron_ticks(expression, after, timezone), count))
