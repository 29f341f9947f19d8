"""The timeline's rules: waits for one reason counted on one entry, and a bound that keeps the
first entry, counts what it leaves out, and keeps the newest."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from chalicelib.domain import timeline as timelines


def test_entries_leave_out_details_that_are_none() -> None:
    assert timelines.entry(1.23456, "pulling", taskArn="arn", other=None) == {
        "at": 1.235, "status": "pulling", "taskArn": "arn"}
    assert timelines.ended(5.0, "done", exit_code=0) == {"at": 5.0, "status": "done", "exitCode": 0}


def test_a_repeated_wait_is_counted_and_another_reason_is_a_new_entry() -> None:
    line = (timelines.accepted(1.0, timelines.POSTED),)
    for at in (2.0, 3.0, 4.0):
        line = timelines.add(line, timelines.entry(at, timelines.WAITING, "a slot of pool 'default'"))
    line = timelines.add(line, timelines.entry(5.0, timelines.WAITING, "ECS to take more launches"))
    assert line[1:] == (
        {"at": 2.0, "status": "waiting", "reason": "a slot of pool 'default'", "count": 3, "lastAt": 4.0},
        {"at": 5.0, "status": "waiting", "reason": "ECS to take more launches"})


def test_past_the_bound_the_first_entry_stays_and_the_left_out_are_counted() -> None:
    line = (timelines.accepted(0.0, timelines.POSTED),)
    for n in range(1, 120):
        reason = "pool" if n % 2 else "key"  # alternating reasons: nothing is counted on one entry
        line = timelines.add(line, timelines.entry(float(n), timelines.WAITING, reason))
    assert len(line) == timelines.MAX_ENTRIES
    assert line[0]["status"] == "accepted"
    assert line[1]["status"] == "omitted" and line[1]["count"] == 120 - timelines.MAX_ENTRIES + 1
    assert [entry["at"] for entry in line[2:]] == [float(n) for n in range(120 - timelines.MAX_ENTRIES + 2, 120)]


@given(st.lists(st.sampled_from(["a", "b", "c", None]), max_size=200))
def test_any_sequence_stays_bounded_and_counts_every_entry(reasons: list[str | None]) -> None:
    line = (timelines.accepted(0.0, timelines.POSTED),)
    for n, reason in enumerate(reasons, 1):
        status = timelines.WAITING if reason else timelines.PULLING
        line = timelines.add(line, timelines.entry(float(n), status, reason))
    assert len(line) <= timelines.MAX_ENTRIES and line[0]["status"] == "accepted"
    assert sum(entry["status"] == "omitted" for entry in line) <= 1
    if reasons:  # the newest entry is the one added last, or a wait counted on it
        assert float(len(reasons)) in (line[-1]["at"], line[-1].get("lastAt"))
    assert timelines.parse(list(line)) == line


def test_what_is_not_a_timeline_reads_as_an_empty_one() -> None:
    assert timelines.parse(None) == () and timelines.parse("x") == ()
    assert timelines.parse([{"at": 1}, "x", {"at": 2, "status": "running"}]) == ({"at": 2, "status": "running"},)


def test_clients_see_the_task_arn_and_the_failed_execution_the_item_keeps_once() -> None:
    line = (timelines.accepted(1.0, timelines.RETRY_AFTER_FAILURE, after=2.0, cause="exit"),
            timelines.entry(3.0, timelines.PULLING), timelines.entry(4.0, timelines.RUNNING))
    assert timelines.shown(line, "arn:aws:ecs:task/x", {"retryOf": "e1"}) == [
        {"at": 1.0, "status": "accepted", "reason": "retry after a failure", "after": 2.0, "cause": "exit",
         "retryOf": "e1"},
        {"at": 3.0, "status": "pulling", "taskArn": "arn:aws:ecs:task/x"},
        {"at": 4.0, "status": "running"}]
    assert timelines.shown(line, None, {})[1] == {"at": 3.0, "status": "pulling"}
