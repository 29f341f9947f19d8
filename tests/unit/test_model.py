"""Ids, pages and durations."""
from __future__ import annotations

import uuid

import pytest

from chalicelib.domain.model import Page, new_id, seq_range
from chalicelib.domain.schedule import parse_duration, validate_cron


def test_new_ids_are_time_ordered_uuid7():
    ids = [new_id() for _ in range(50)]
    assert all(uuid.UUID(i).version == 7 for i in ids)
    assert len(set(ids)) == 50


@pytest.mark.parametrize("page,expected", [(1, (1, 10)), (2, (11, 20)), (3, (21, 25)), (4, (31, 25))])
def test_pages_cover_dense_sequence_numbers_oldest_first(page, expected):
    assert seq_range(page, 10, 25) == expected


@pytest.mark.parametrize("page,expected", [(1, (16, 25)), (2, (6, 15)), (3, (1, 5))])
def test_pages_cover_dense_sequence_numbers_newest_first(page, expected):
    assert seq_range(page, 10, 25, newest_first=True) == expected


def test_page_flags():
    assert Page([], 1, 10, 0).pages == 0
    page = Page([], 2, 10, 25)
    assert (page.pages, page.has_next, page.has_prev) == (3, True, True)


@pytest.mark.parametrize("text,seconds", [("10s", 10), ("2m", 120), ("2m30s", 150), ("4h30m25s", 16225), ("240h", 864000)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


def test_cron_fields_expand_ranges_steps_and_names():
    minute, hour, dom, month, dow = validate_cron("*/15 9-17 1,15 jan-mar mon-fri")
    assert minute == {0, 15, 30, 45} and hour == set(range(9, 18)) and dom == {1, 15}
    assert month == {1, 2, 3} and dow == {1, 2, 3, 4, 5}
    assert validate_cron("0 0 * * 7")[4] == {0}
