"""The bench's table and JSON: stable keys, numbers apart from the text, and --only."""
from __future__ import annotations

import json

import pytest

from bench.report import Row, table, write_json
from bench.run import GROUPS, selected_groups


def test_every_row_of_the_json_has_a_unique_key_and_its_number(tmp_path):
    rows = [Row("4a", "calls", "9", key="cost.single_run.calls", value=9),
            Row("4a", "  units written", "3", key="cost.single_run.write_units", value=3, printed=False),
            Row("4a", "unnamed", "1"), Row("4a", "unnamed too", "2")]
    document = json.loads(write_json(rows, tmp_path, {}).read_text())
    keys = [row["key"] for row in document["rows"]]
    assert len(set(keys)) == len(keys)
    first = document["rows"][0]
    assert (first["number"], first["text"], first["value"], first["key"]) == ("4a", "9", 9, "cost.single_run.calls")


def test_a_row_kept_for_the_json_only_is_not_printed():
    printed = table([Row("4a", "shown", "1"), Row("4a", "hidden", "2", printed=False)])
    assert "shown" in printed and "hidden" not in printed


def test_only_selects_the_named_groups_and_refuses_unknown_ones():
    assert selected_groups("cost,scale") == {"cost", "scale"}
    assert selected_groups(None) == set(GROUPS)
    with pytest.raises(SystemExit):
        selected_groups("cost,speed")


def test_the_bounds_of_the_enqueue_rate_are_printed_next_to_rqs_enqueue_rate():
    from bench.run import _bound_rows

    bounds = {"requests": 2000, "clients": 8, "notFoundPerSecond": 850.0, "laterPostsPerSecond": 570.0}
    floor, alone = _bound_rows(bounds, {"enqueuesPerSecond": 1000.0})
    assert (floor.key, floor.value, floor.reference, floor.ratio) == ("throughput.http_floor", 850.0, "1000", "0.85x")
    assert (alone.key, alone.value, alone.ratio) == ("throughput.posts_alone", 570.0, "0.57x")
    assert _bound_rows(None, None) == []  # the aws backend, or a run that broke before measuring them
