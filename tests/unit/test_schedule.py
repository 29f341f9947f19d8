"""Next runs of cron expressions, daylight-saving rules, and the Scheduler translation."""
from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from chalicelib.domain.schedule import next_cron_run, to_scheduler_cron
from infra.local.scheduler import first_fire

NY = ZoneInfo("America/New_York")


def at(*args, zone=ZoneInfo("UTC")) -> float:
    return datetime(*args, tzinfo=zone).timestamp()


def local(moment: float, zone=NY) -> str:
    return datetime.fromtimestamp(moment, zone).strftime("%Y-%m-%d %H:%M %z")


def test_next_run_is_strictly_after():
    assert next_cron_run("* * * * *", at(2026, 1, 1, 10, 0)) == at(2026, 1, 1, 10, 1)
    assert next_cron_run("0 9 * * *", at(2026, 1, 1, 9, 0)) == at(2026, 1, 2, 9, 0)


def test_in_a_time_zone():
    assert local(next_cron_run("0 9 * * *", at(2026, 1, 1, 0, 0), "America/New_York")) == "2026-01-01 09:00 -0500"


def test_a_tick_in_the_skipped_hour_is_skipped():
    moment = next_cron_run("30 2 * * *", at(2026, 3, 8, 0, 0, zone=NY), "America/New_York")
    assert local(moment) == "2026-03-09 02:30 -0400"


def test_a_tick_in_the_repeated_hour_runs_once():
    first = next_cron_run("30 1 * * *", at(2026, 11, 1, 0, 0, zone=NY), "America/New_York")
    second = next_cron_run("30 1 * * *", first, "America/New_York")
    assert local(first) == "2026-11-01 01:30 -0400"
    assert local(second) == "2026-11-02 01:30 -0500"


def test_day_of_month_or_day_of_week_as_in_unix():
    # the 13th, or any Friday
    ticks, moment = [], at(2026, 2, 1, 0, 0)
    for _ in range(4):
        moment = next_cron_run("0 0 13 * 5", moment)
        ticks.append(datetime.fromtimestamp(moment, ZoneInfo("UTC")).day)
    assert ticks == [6, 13, 20, 27]


@pytest.mark.parametrize("unix,aws", [
    ("* * * * *", "cron(* * * * ? *)"),
    ("*/15 9-17 * * mon-fri", "cron(0,15,30,45 9,10,11,12,13,14,15,16,17 ? * 2,3,4,5,6 *)"),
    ("0 0 1 * *", "cron(0 0 1 * ? *)"),
    ("0 12 * 6 0", "cron(0 12 ? 6 1 *)"),
])
def test_translation_to_scheduler(unix, aws):
    assert to_scheduler_cron(unix) == aws


def test_expressions_scheduler_cannot_say_are_not_translated():
    assert to_scheduler_cron("0 0 13 * 5") is None


@pytest.mark.parametrize("unix", ["* * * * *", "*/15 9-17 * * mon-fri", "0 0 1 * *", "0 12 * 6 0", "5 4 * * sun"])
def test_translated_expressions_fire_on_the_same_ticks(unix):
    aws = to_scheduler_cron(unix)
    ours, theirs = at(2026, 1, 1, 0, 0), at(2026, 1, 1, 0, 0)
    for _ in range(20):
        ours = next_cron_run(unix, ours, "Europe/Paris")
        theirs = first_fire(aws, "Europe/Paris", theirs)
        assert ours == theirs


def test_one_time_expressions_in_their_zone():
    assert first_fire("at(2026-07-01T09:00:00)", "Europe/Paris", at(2026, 1, 1, 0, 0)) == at(2026, 7, 1, 7, 0)


def test_either_day_field_matching_every_day_runs_every_day_and_translates_so():
    # Vixie cron: neither field starts with '*', so a day matching either runs; 1-31 matches all.
    monday, tuesday = at(2026, 1, 5, 0, 0), at(2026, 1, 6, 0, 0)
    assert next_cron_run("0 0 1-31 * 1", monday) == tuesday
    assert to_scheduler_cron("0 0 1-31 * 1") == "cron(0 0 * * ? *)"


def test_a_starred_day_field_means_both_must_match():
    # '*/2' starts with '*': odd days of the month that are also Mondays
    ticks, moment = [], at(2026, 1, 1, 0, 0)
    for _ in range(3):
        moment = next_cron_run("0 0 */2 * 1", moment)
        ticks.append(datetime.fromtimestamp(moment, ZoneInfo("UTC")).day)
    assert ticks == [5, 19, 9] and to_scheduler_cron("0 0 */2 * 1") is None


def test_sunday_is_0_and_7():
    assert next_cron_run("0 0 * * 7", at(2026, 1, 1, 0, 0)) == next_cron_run("0 0 * * 0", at(2026, 1, 1, 0, 0))


def test_a_day_no_month_has_is_not_a_cron():
    from chalicelib.domain.schedule import validate_cron

    with pytest.raises(ValueError):
        validate_cron("0 0 30 2 *")


# jitter, missed ticks and next runs ------------------------------------------------------------


def test_a_ticks_jitter_offset_is_in_its_range_and_the_same_for_every_copy() -> None:
    from chalicelib.domain.schedule import jitter_offset

    offsets = [jitter_offset("job", "v1", 1_800_000_000.0 + 60 * n, 30) for n in range(200)]

    assert all(0 <= offset < 30 for offset in offsets) and len(set(offsets)) > 100
    assert jitter_offset("job", "v1", 1_800_000_000.0, 30) == offsets[0]
    assert jitter_offset("job", "v1", 1_800_000_000.0, 0) == 0.0


def test_ticks_between_counts_both_ends_and_says_the_latest() -> None:
    from chalicelib.domain.schedule import ticks_between

    assert ticks_between("* * * * *", 1_800_000_000.0, 1_800_000_000.0 + 300) == (6, 1_800_000_300.0)
    assert ticks_between("0 0 1 1 *", 1_800_000_000.0, 1_800_000_100.0) == (0, None)


def test_next_runs_follow_the_daylight_saving_rule() -> None:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from chalicelib.domain.schedule import next_runs

    paris = ZoneInfo("Europe/Paris")
    after = datetime(2026, 3, 27, 12, tzinfo=paris).timestamp()

    runs = next_runs("30 2 * * *", after, "Europe/Paris")

    days = [datetime.fromtimestamp(run, paris).strftime("%m-%d %H:%M") for run in runs]
    assert days == ["03-28 02:30", "03-30 02:30", "03-31 02:30", "04-01 02:30", "04-02 02:30"]  # 29th: skipped
