"""Live-log positions, cursors and frames: pure, no AWS."""
from __future__ import annotations

import json

import pytest

from chalicelib.domain.errors import ValidationError
from chalicelib.domain.live import (
    MAX_FRAME_BYTES,
    Cursor,
    FrameWriter,
    LogEvent,
    Position,
    SubscribeRequest,
    Subscription,
    log_stream_of,
)


def event(stream: str, timestamp: int, event_id: str, message: str) -> LogEvent:
    return LogEvent(stream, timestamp, event_id, message)


def test_positions_order_by_time_then_by_event_id_as_a_number() -> None:
    assert Position(1000, "9").key < Position(1000, "10").key < Position(1001, "2").key
    long_ids = "3" + "0" * 55, "3" + "0" * 54 + "1"  # CloudWatch's 56-digit ids
    assert Position(5, long_ids[0]).key < Position(5, long_ids[1]).key


def test_a_cursor_is_one_string_a_client_gives_back() -> None:
    cursor = Cursor(Position(1700000000123, "45"), None)
    assert str(cursor) == "1700000000123-45,"
    assert Cursor.parse(str(cursor)) == cursor
    assert Cursor.parse("") == Cursor() and Cursor.parse(None) == Cursor()
    for bad in ("x", "1-2", "1-2,3-4,5-6", "<script>,", "1-a,"):
        with pytest.raises(ValidationError):
            Cursor.parse(bad)


def test_a_read_for_both_streams_starts_at_the_older_position_or_the_beginning() -> None:
    assert Cursor(Position(10, "1"), Position(7, "2")).start_of() == 7
    assert Cursor(Position(10, "1"), None).start_of() is None
    assert Cursor(Position(10, "1"), None).start_of(("stdout",)) == 10


def test_a_cursor_is_ahead_of_another_when_either_stream_is_further() -> None:
    older = Cursor(Position(10, "1"), Position(7, "2"))
    assert Cursor(Position(10, "2"), Position(7, "2")).ahead_of(older)
    assert Cursor(None, Position(8, "1")).ahead_of(older)
    assert not older.ahead_of(older) and not Cursor().ahead_of(older)
    assert Cursor(Position(1, "1")).ahead_of(Cursor())


def test_subscriptions_need_a_task_and_a_job() -> None:
    assert Subscription.parse(SubscribeRequest("t", "j")).follow == "job"
    assert Subscription.parse(SubscribeRequest("t", "j", "e")).follow == "execution"
    with pytest.raises(ValidationError, match="taskId"):
        Subscription.parse(SubscribeRequest(job_id="j"))
    with pytest.raises(ValidationError, match="jobId"):
        Subscription.parse(SubscribeRequest("t", 5))


def test_log_streams_of_job_output_are_recognised() -> None:
    assert log_stream_of("abc123/stdout") == ("abc123", "stdout")
    assert log_stream_of("abc123/stderr") == ("abc123", "stderr")
    assert log_stream_of("abc123/firelens") is None and log_stream_of("stdout") is None


def frames_of(events: list[LogEvent], cursor: Cursor = Cursor()) -> list[dict]:
    sent: list[str] = []
    writer = FrameWriter(lambda data: sent.append(data) or True, cursor)
    writer.add_all(events)
    writer.flush()
    assert all(len(data.encode("utf-8")) <= MAX_FRAME_BYTES for data in sent)
    return [json.loads(data) for data in sent]


def test_consecutive_lines_of_a_stream_share_a_frame_and_each_frame_carries_the_cursor_after_it() -> None:
    frames = frames_of([event("stdout", 1, "1", "a"), event("stdout", 1, "2", "b"), event("stderr", 2, "3", "c"),
                        event("stdout", 3, "4", "d")])
    assert frames == [
        {"type": "output", "stream": "stdout", "lines": ["a", "b"], "position": "1-2,"},
        {"type": "output", "stream": "stderr", "lines": ["c"], "position": "1-2,2-3"},
        {"type": "output", "stream": "stdout", "lines": ["d"], "position": "3-4,2-3"},
    ]


def test_events_at_or_before_the_cursor_are_not_sent_again() -> None:
    events = [event("stdout", 1, "1", "a"), event("stdout", 2, "2", "b"), event("stderr", 1, "3", "c")]
    frames = frames_of(events, Cursor(Position(1, "1"), Position(1, "3")))
    assert [line for f in frames for line in f["lines"]] == ["b"]


def test_a_line_longer_than_a_frame_is_sent_in_partial_pieces() -> None:
    line = "\u0001é" * 20_000  # escapes and multibyte characters: 160 KB of JSON
    frames = frames_of([event("stdout", 1, "1", "before"), event("stdout", 2, "2", line),
                        event("stdout", 3, "3", "after")])
    assert frames[0]["lines"] == ["before"] and not frames[0].get("partial")
    pieces = frames[1:]
    assert all(f.get("partial") for f in pieces[:-1]) and not pieces[-1].get("partial")
    assert "".join(f["lines"][0] for f in pieces) + "" == line + ""
    assert pieces[-1]["lines"] == [pieces[-1]["lines"][0], "after"]
    # resuming from a piece's position sends the whole line again, never half of it
    assert all(f["position"] == "1-1," for f in pieces[:-1]) and pieces[-1]["position"] == "3-3,"


def test_a_gone_client_gets_nothing_more() -> None:
    calls: list[str] = []
    writer = FrameWriter(lambda data: calls.append(data) and False, Cursor(), max_bytes=1000)
    writer.add_all(event("stdout", n, str(n), "x" * 500) for n in range(10))
    writer.flush()
    assert writer.gone and len(calls) == 1


def test_the_stream_page_escapes_what_it_is_given() -> None:
    from chalicelib.api.stream_page import render

    evil = '</script><script>alert(1)</script><!--'
    page = render(evil, '"><img src=x onerror=alert(2)>', None, "ws://127.0.0.1:1", None, "n0nce")
    assert page.count("<script") == 2  # the JSON block and the page's own script, nothing else
    assert "<img" not in page and "<!--" not in page
    assert "&lt;/script&gt;&lt;script&gt;alert(1)" in page  # in the title and heading, as text
    config = page.split('id="config">')[1].split("</script>")[0]
    assert json.loads(config)["taskId"] == evil and "</" not in config
