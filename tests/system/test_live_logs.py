"""Live logs through the local runtime, with a real websocket client: the local websocket
gateway, the management API it serves back to the sockets, and the one log subscription poller."""
from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import boto3
import pytest
import requests
from botocore.exceptions import ClientError
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from .conftest import Runtime, running_runtime, wait_until

pytestmark = pytest.mark.system

FIVE_LINES = "bash -c 'for i in 1 2 3 4 5; do echo line $i; sleep 1; done'"


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    with running_runtime(tmp_path_factory.mktemp("live-logs")) as rt:
        yield rt


def websocket_url(runtime: Runtime) -> str:
    match = re.search(r"live logs websocket on (\S+) ", runtime.log.read_text())
    assert match, "the runtime did not announce its websocket"
    return match.group(1)


def management_endpoint(runtime: Runtime) -> str:
    match = re.search(r"websocket management API at (\S+)\)", runtime.log.read_text())
    assert match, "the runtime did not announce its management API"
    return match.group(1)


def log_reads(runtime: Runtime) -> dict[str, int]:
    return requests.get(management_endpoint(runtime) + "/_local/calls", timeout=5).json()


class Session:
    """One websocket connection: its frames with the time each arrived, and how it closed."""

    def __init__(self) -> None:
        self.frames: list[tuple[float, dict[str, Any]]] = []
        self.close_code: int | None = None
        self.close_reason: str | None = None

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [f for _, f in self.frames if f["type"] == kind]

    def lines(self) -> list[str]:
        return [line for f in self.of("output") for line in f["lines"]]


def session(url: str, stop_after_lines: int | None = None, timeout: float = 30.0,
            into: Session | None = None) -> Session:
    result = into or Session()
    with connect(url, open_timeout=10) as ws:
        try:
            while True:
                frame = json.loads(ws.recv(timeout=timeout))
                result.frames.append((time.time(), frame))
                if stop_after_lines is not None and len(result.lines()) >= stop_after_lines:
                    ws.close()
                    break
        except ConnectionClosed:
            pass
        result.close_code, result.close_reason = ws.close_code, ws.close_reason
    return result


def follow(url: str, **kw: Any) -> list[Session]:
    """Sessions until one ends with `done` or `error`, coming back after `retry` as told."""
    sessions: list[Session] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        sessions.append(session(url, **kw))
        last = sessions[-1]
        if last.close_reason != "retry":
            return sessions
        time.sleep(min(float(last.of("close")[-1].get("retryAfter") or 1), 1.0))
    raise AssertionError("the stream never ended")


def query(**params: str) -> str:
    return "/?" + urlencode(params)


def test_a_running_job_is_streamed_line_by_line_then_its_exit_code_then_done(runtime: Runtime) -> None:
    job = runtime.post("/tasks/live", json={"image": "ubuntu", "command": FIVE_LINES}).json()
    sessions = follow(websocket_url(runtime) + query(taskId="live", jobId=job["jobId"]))
    final = sessions[-1]
    assert final.close_code == 1000 and final.close_reason == "done"
    assert final.lines() == [f"line {i}" for i in range(1, 6)]
    types = [f["type"] for _, f in final.frames]
    assert types[0] == "subscribed" and types[-2:] == ["end", "close"]
    [end] = final.of("end")
    # the end frame carries the execution's timeline: why it was accepted, its launch, start and end
    assert [entry["status"] for entry in end.pop("timeline")] == ["accepted", "pulling", "running", "done"]
    assert end == {"type": "end", "executionId": job["executionId"], "status": "done", "exitCode": 0, "error": None}
    assert final.of("close") == [{"type": "close", "reason": "done"}]
    # line by line while it ran: the first line came seconds before the end; the lines written
    # after the catch-up came one frame each, about a second apart
    arrivals = {line: at for at, f in final.frames if f["type"] == "output" for line in f["lines"]}
    ended_at = next(at for at, f in final.frames if f["type"] == "end")
    assert ended_at - arrivals["line 1"] > 2.5
    assert arrivals["line 5"] - arrivals["line 3"] > 1.2
    assert [f["lines"] for f in final.of("output")][-3:] == [["line 3"], ["line 4"], ["line 5"]]
    # and soon after they were written (their CloudWatch timestamp is when the line was read)
    for at, frame in final.frames[-5:-2]:
        written = int(frame["position"].split(",")[0].split("-")[0]) / 1000
        assert at - written < 1.5


def test_a_subscribe_message_streams_both_streams_and_a_failing_exit_code(runtime: Runtime) -> None:
    job = runtime.post("/tasks/live", json={"image": "ubuntu",
                                            "command": "bash -c 'echo out; echo err >&2; exit 3'"}).json()
    runtime.wait_for_execution(job["executionUrl"], {"failed"})
    with connect(websocket_url(runtime)) as ws:
        ws.send(json.dumps({"action": "subscribe", "taskId": "live", "jobId": job["jobId"],
                            "executionId": job["executionId"]}))
        frames = []
        try:
            while True:
                frames.append(json.loads(ws.recv(timeout=10)))
        except ConnectionClosed:
            pass
        assert ws.close_reason == "done"
    outputs = [(f["stream"], line) for f in frames if f["type"] == "output" for line in f["lines"]]
    assert sorted(outputs) == [("stderr", "err"), ("stdout", "out")]
    assert [f for f in frames if f["type"] == "end"][0]["exitCode"] == 3


def test_a_subscriber_on_an_unknown_job_gets_an_error_frame_and_a_close(runtime: Runtime) -> None:
    result = session(websocket_url(runtime) + query(taskId="live", jobId="01234567-89ab-7def-8123-456789abcdef"))
    assert result.of("error")[0]["error"] == ("Job '01234567-89ab-7def-8123-456789abcdef' was not found in "
                                              "task 'live'.")
    assert result.of("close") == [{"type": "close", "reason": "error"}]
    assert result.close_reason == "error"


def test_only_the_runtimes_own_pages_and_clients_without_an_origin_may_open_a_websocket(runtime: Runtime) -> None:
    """Browsers send no preflight for a websocket: a foreign page the developer visits could
    otherwise open one to the runtime (or reach it by DNS rebinding, under a foreign Host)."""
    from websockets.exceptions import InvalidStatus

    job = runtime.post("/tasks/live", json={"image": "ubuntu", "command": "echo mine"}).json()
    runtime.wait_for_execution(job["executionUrl"], {"done"})
    url = websocket_url(runtime) + query(taskId="live", jobId=job["jobId"])
    for headers in ({"Origin": "http://evil.example"}, {"Origin": "http://127.0.0.1:1"},
                    {"Origin": "null"}, {"Host": "evil.example"}):
        with pytest.raises(InvalidStatus) as refused:
            connect(url, open_timeout=10, origin=headers.get("Origin"),
                    additional_headers={"Host": headers["Host"]} if "Host" in headers else None)
        assert refused.value.response.status_code == 403, headers
        assert b"this runtime answers" in refused.value.response.body, headers

    own = Session()
    with connect(url, open_timeout=10, origin=runtime.url) as ws:  # a stream page's own origin
        own.frames += [(time.time(), json.loads(ws.recv(timeout=10)))]
    assert own.of("subscribed")
    assert session(url).lines() == ["mine"]  # a client that sends no Origin (not a browser)


def follow_with_websocket_client(url: str) -> tuple[list[dict[str, Any]], int, str]:
    """Frames, close code and reason of the session that ended the stream, as websocket-client reads
    them with its defaults, which send the websocket URL's own origin (`Origin: http://<host>:<port>`)."""
    import websocket

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        frames: list[dict[str, Any]] = []
        ws = websocket.create_connection(url, timeout=10)
        try:
            while True:
                opcode, frame = ws.recv_data_frame(True)
                if opcode == websocket.ABNF.OPCODE_CLOSE:
                    code, reason = int.from_bytes(frame.data[:2], "big"), frame.data[2:].decode()
                    break
                if opcode == websocket.ABNF.OPCODE_TEXT:
                    frames.append(json.loads(frame.data))
        finally:
            ws.close()
        if reason != "retry":
            return frames, code, reason
        time.sleep(min(float(frames[-1].get("retryAfter") or 1), 1.0))  # as the server tells
    raise AssertionError("the stream never ended")


def test_websocket_client_with_its_defaults_follows_a_job_to_its_end(runtime: Runtime) -> None:
    """The most common Python client sends the websocket's own origin unless told not to: no page is
    served from that origin, so it is let in as a client that sends none."""
    job = runtime.post("/tasks/live", json={"image": "ubuntu", "command": "bash -c 'echo one; sleep 0.3; echo two'"}).json()
    frames, code, reason = follow_with_websocket_client(websocket_url(runtime) + query(taskId="live", jobId=job["jobId"]))
    assert (code, reason) == (1000, "done")
    assert [line for f in frames if f["type"] == "output" for line in f["lines"]] == ["one", "two"]
    [end] = [f for f in frames if f["type"] == "end"]
    assert [entry["status"] for entry in end.pop("timeline")] == ["accepted", "pulling", "running", "done"]
    assert end == {"type": "end", "executionId": job["executionId"], "status": "done", "exitCode": 0, "error": None}


def test_websocket_client_from_a_foreign_page_is_refused(runtime: Runtime) -> None:
    import websocket

    url = websocket_url(runtime) + query(taskId="live", jobId="01234567-89ab-7def-8123-456789abcdef")
    port = url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)[1]
    for origin in ("http://evil.example", f"http://evil.example:{port}", runtime.url.replace("http:", "https:")):
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            websocket.create_connection(url, timeout=10, origin=origin)
        assert refused.value.status_code == 403, origin


def test_a_job_that_has_not_run_yet_closes_with_retry(runtime: Runtime) -> None:
    job = runtime.post("/tasks/live", json={"image": "ubuntu", "command": "true", "startIn": "1h"}).json()
    result = session(websocket_url(runtime) + query(taskId="live", jobId=job["jobId"]))
    assert result.of("subscribed")[0]["executionId"] is None
    assert result.close_reason == "retry" and result.of("close")[0]["retryAfter"] > 0


def test_a_reconnecting_client_resumes_after_its_last_position_without_duplicates(runtime: Runtime) -> None:
    job = runtime.post("/tasks/live", json={
        "image": "ubuntu", "command": "bash -c 'for i in 1 2 3 4; do echo line $i; sleep 0.7; done'"}).json()
    runtime.wait_for_execution(job["executionUrl"], {"running"})
    url = websocket_url(runtime)
    first = session(url + query(taskId="live", jobId=job["jobId"]), stop_after_lines=2)
    position = first.of("output")[-1]["position"]
    rest = follow(url + query(taskId="live", jobId=job["jobId"], executionId=job["executionId"], after=position))
    assert first.lines() + rest[-1].lines() == ["line 1", "line 2", "line 3", "line 4"]
    assert rest[-1].close_reason == "done"


def test_many_subscribers_on_one_execution_cost_one_log_reader(runtime: Runtime) -> None:
    command = "bash -c 'for i in $(seq 1 14); do echo line $i; sleep 0.5; done'"
    job = runtime.post("/tasks/live", json={"image": "ubuntu", "command": command}).json()
    runtime.wait_for_execution(job["executionUrl"], {"running"})
    url = websocket_url(runtime) + query(taskId="live", jobId=job["jobId"], executionId=job["executionId"])
    before = log_reads(runtime)
    results: list[Session] = [Session() for _ in range(6)]

    def watch(n: int) -> None:
        session(url, into=results[n])

    threads = [threading.Thread(target=watch, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    wait_until(lambda: all(r.lines() for r in results), timeout=20, what="six subscribers to catch up")
    caught_up = log_reads(runtime)
    seen = [len(r.lines()) for r in results]
    wait_until(lambda: all(len(r.lines()) >= n + 2 for r, n in zip(results, seen, strict=False)), timeout=20, what="live lines")
    live = log_reads(runtime)
    for thread in threads:
        thread.join(30)
    after = log_reads(runtime)

    assert [r.lines() for r in results] == [[f"line {i}" for i in range(1, 15)]] * 6
    assert all(r.close_reason == "done" for r in results)
    assert caught_up["AppFilterLogEvents"] - before["AppFilterLogEvents"] == 6  # one catch-up each
    assert live["AppFilterLogEvents"] == caught_up["AppFilterLogEvents"]  # live lines: no read per client
    assert after["AppFilterLogEvents"] - live["AppFilterLogEvents"] == 2  # the end: stdout and stderr tails, once
    polls = after["PollerFilterLogEvents"] - before["PollerFilterLogEvents"]
    assert 0 < polls < 10 * 12  # the one poller, about 10 reads a second, whoever watches


def test_the_local_management_api_answers_gone_for_unknown_connections(runtime: Runtime) -> None:
    client = boto3.client("apigatewaymanagementapi", endpoint_url=management_endpoint(runtime),
                          region_name="us-east-1", aws_access_key_id="local", aws_secret_access_key="local")
    with pytest.raises(ClientError) as raised:
        client.post_to_connection(ConnectionId="bm90IGEgY29ubmVjdGlvbg==", Data=b"{}")
    assert raised.value.response["Error"]["Code"] == "GoneException"
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 410
