"""Reading job output from LocalStack's CloudWatch Logs with the app's readers: GetLogEvents
page after page to the end (CloudWatchLogReader), and both streams by time with event ids
(CloudWatchLogEvents, live logs' catch-up)."""
from __future__ import annotations

import os
import time
import uuid

import boto3
import pytest

pytestmark = pytest.mark.xdist_group("localstack")

LINES = 10_050  # GetLogEvents answers at most 10,000 events: two pages, then the end


def _group_with_streams(logs, task_id: str) -> str:
    group = f"/fastlane/ls-{uuid.uuid4().hex[:8]}/jobs"
    logs.create_log_group(logGroupName=group)
    os.environ["LOG_GROUP"] = group  # the job log group the functions' grants name; the fixture restores it
    for stream in ("stdout", "stderr"):
        logs.create_log_stream(logGroupName=group, logStreamName=f"{task_id}/{stream}")
    return group


def test_the_reader_pages_through_a_stream_to_its_end(endpoints) -> None:
    from chalicelib.adapters.logs import CloudWatchLogReader

    logs = boto3.client("logs")
    task_id = uuid.uuid4().hex
    group = _group_with_streams(logs, task_id)
    at = int(time.time() * 1000)
    for start in range(0, LINES, 5_000):
        logs.put_log_events(logGroupName=group, logStreamName=f"{task_id}/stdout", logEvents=[
            {"timestamp": at + i, "message": f"line {i}"} for i in range(start, min(LINES, start + 5_000))])

    reader = CloudWatchLogReader(logs, group)
    lines, token, calls, at_end = [], None, 0, False
    while not at_end and calls < 10:
        page, token, at_end = reader.read(f"{task_id}/stdout", token)
        lines += page
        calls += 1
    assert lines == [f"line {i}" for i in range(LINES)]
    assert calls >= 2  # more than one page
    # an empty stream: no lines, and the end once CloudWatch gives back the token it was given
    first, token, at_end = reader.read(f"{task_id}/stderr", None)
    assert first == []
    assert at_end or reader.read(f"{task_id}/stderr", token) == ([], token, True)
    assert reader.read(f"{uuid.uuid4().hex}/stdout", None) == ([], None, True)  # no stream yet

    # read back from the end (execution details' tails): newest page first, to the start
    pages, token, calls, at_end = [], None, 0, False
    while not at_end and calls < 10:
        page, token, at_end = reader.read_back(f"{task_id}/stdout", token)
        pages.append(page)
        calls += 1
    assert pages[0] and pages[0][-1] == f"line {LINES - 1}"
    assert [line for page in reversed(pages) for line in page] == [f"line {i}" for i in range(LINES)]


def test_live_logs_read_both_streams_in_time_order_with_event_ids(endpoints) -> None:
    from chalicelib.adapters.log_events import CloudWatchLogEvents

    logs = boto3.client("logs")
    task_id = uuid.uuid4().hex
    group = _group_with_streams(logs, task_id)
    at = int(time.time() * 1000)
    logs.put_log_events(logGroupName=group, logStreamName=f"{task_id}/stdout",
                        logEvents=[{"timestamp": at, "message": "out 1"}, {"timestamp": at + 2, "message": "out 2"}])
    logs.put_log_events(logGroupName=group, logStreamName=f"{task_id}/stderr",
                        logEvents=[{"timestamp": at + 1, "message": "err 1"}])

    events = [event for page in CloudWatchLogEvents(logs, group).read(task_id) for event in page]
    assert [(e.stream, e.message) for e in events] == [("stdout", "out 1"), ("stderr", "err 1"), ("stdout", "out 2")]
    assert all(e.event_id for e in events)
