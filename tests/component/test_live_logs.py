"""Live logs on moto: the websocket handlers get hand-built API Gateway events, the logs function
gets CloudWatch Logs subscription events, frames go to moto's apigatewaymanagementapi (whose
GoneException is stubbed: moto accepts any connection id)."""
from __future__ import annotations

import base64
import functools
import gzip
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from tests import iam
from tests.conftest import REGION

API_ID = "abc123"
GROUP = "/test/jobs"


@pytest.fixture(autouse=True)
def _websocket_api(monkeypatch: pytest.MonkeyPatch) -> None:
    """The deployment's websocket API is the one the events come from: its functions may post to
    that API's connections only."""
    monkeypatch.setenv("WEBSOCKET_URL", f"wss://{API_ID}.execute-api.{REGION}.amazonaws.com/api")


def ws_event(route: str, connection_id: str, *, body: Any = None, query: dict[str, str] | None = None,
             headers: dict[str, str] | None = None) -> dict[str, Any]:
    """An API Gateway websocket event, as the $connect, $default and $disconnect routes get it."""
    kind = {"$connect": "CONNECT", "$disconnect": "DISCONNECT"}.get(route, "MESSAGE")
    event: dict[str, Any] = {
        "requestContext": {
            "routeKey": route, "eventType": kind, "connectionId": connection_id, "apiId": API_ID, "stage": "api",
            "domainName": f"{API_ID}.execute-api.{REGION}.amazonaws.com", "requestId": str(uuid.uuid4()),
            "connectedAt": int(time.time() * 1000), "messageDirection": "IN",
            "identity": {"sourceIp": "127.0.0.1"},
        },
        "isBase64Encoded": False,
    }
    if kind == "CONNECT":
        event["headers"] = headers or {"Host": event["requestContext"]["domainName"]}
        event["queryStringParameters"] = query
    if kind == "MESSAGE":
        event["body"] = body if isinstance(body, str) or body is None else json.dumps(body)
    return event


def subscription_event(group: str, stream: str, events: list[dict[str, Any]]) -> dict[str, Any]:
    payload = {"messageType": "DATA_MESSAGE", "owner": "123456789012", "logGroup": group, "logStream": stream,
               "subscriptionFilters": ["live-logs"],
               "logEvents": [{"id": e["eventId"], "timestamp": e["timestamp"], "message": e["message"]}
                             for e in events]}
    return {"awslogs": {"data": base64.b64encode(gzip.compress(json.dumps(payload).encode())).decode()}}


class Sockets:
    """What reached moto's management API, per connection, and which connections are gone."""

    def __init__(self) -> None:
        self.frames: dict[str, list[dict[str, Any]]] = {}
        self.closed: list[str] = []
        self.gone: set[str] = set()

    def install(self, client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        post, delete = client.post_to_connection, client.delete_connection

        def post_to_connection(ConnectionId: str, Data: bytes) -> Any:  # noqa: N803 - boto3's names
            if ConnectionId in self.gone:
                raise ClientError({"Error": {"Code": "GoneException", "Message": "gone"},
                                   "ResponseMetadata": {"HTTPStatusCode": 410}}, "PostToConnection")
            response = post(ConnectionId=ConnectionId, Data=Data)
            self.frames.setdefault(ConnectionId, []).append(json.loads(Data))
            return response

        def delete_connection(ConnectionId: str) -> Any:  # noqa: N803
            self.closed.append(ConnectionId)
            return delete(ConnectionId=ConnectionId)

        monkeypatch.setattr(client, "post_to_connection", post_to_connection)
        monkeypatch.setattr(client, "delete_connection", delete_connection)

    def of(self, connection_id: str, kind: str | None = None) -> list[dict[str, Any]]:
        frames = self.frames.get(connection_id, [])
        return [f for f in frames if kind is None or f["type"] == kind]

    def lines(self, connection_id: str, stream: str | None = None) -> list[str]:
        return [line for f in self.of(connection_id, "output") if stream in (None, f["stream"]) for line in f["lines"]]


class Started:
    """Stands in for the asynchronous Lambda invoke of the logs function."""

    def __init__(self) -> None:
        self.payloads: list[dict[str, Any]] = []

    def start(self, payload: dict[str, Any]) -> None:
        self.payloads.append(json.loads(json.dumps(payload)))


class Harness:
    def __init__(self, client: Any, api: Any, live: Any, sockets: Sockets, started: Started, logs: Any,
                 reads: list[str]) -> None:
        self.client, self.api, self.live, self.sockets, self.started = client, api, live, sockets, started
        self.logs, self.reads = logs, reads
        from chalicelib import wiring

        self.store = wiring.backend().executions

    def invoke(self, name: str, payload: dict[str, Any]) -> Any:
        return self.client.lambda_.invoke(name, payload).payload

    def connect(self, connection_id: str, **query: str) -> Any:
        response = self.invoke("ws_connect", ws_event("$connect", connection_id, query=query or None))
        for payload in self.started.payloads:  # the logs function runs what $connect started
            self.invoke("logs", payload)
        self.started.payloads.clear()
        return response

    def send(self, connection_id: str, body: Any) -> Any:
        return self.invoke("ws_message", ws_event("$default", connection_id, body=body))

    def deliver(self, event: dict[str, Any]) -> int:
        """The logs function's delivery, in the handler that runs (no function of its own)."""
        from chalicelib.live_handlers import log_chunk

        chunk = log_chunk(event)
        assert chunk is not None
        count: int = self.live.deliver(chunk)
        return count

    def job(self, task: str = "live") -> tuple[str, str, str]:
        """A job whose execution runs as an ECS task; returns (job id, execution id, task arn)."""
        from chalicelib.domain.model import ExecutionStatus as S

        enqueued = self.api.post(f"/tasks/{task}", {"image": "ubuntu", "command": "echo hi"}).json
        execution = self.store.get_execution(enqueued["jobId"], enqueued["executionId"])
        arn = f"arn:aws:ecs:{REGION}:123456789012:task/fastlane/{uuid.uuid4().hex}"
        self.store.transition(execution, S.RUNNING, task_arn=arn, started_at=time.time())
        ecs_id = arn.rsplit("/", 1)[-1]
        for stream in ("stdout", "stderr"):
            self.logs.create_log_stream(logGroupName=GROUP, logStreamName=f"{ecs_id}/{stream}")
        return enqueued["jobId"], enqueued["executionId"], arn

    def write(self, arn: str, stream: str, *lines: str) -> dict[str, Any]:
        """Put lines in the task's stream; returns the subscription event that delivers them."""
        name = f"{arn.rsplit('/', 1)[-1]}/{stream}"
        at = int(time.time() * 1000)
        with iam.as_test():  # the container writes (with the task role), whichever handler runs meanwhile
            self.logs.put_log_events(logGroupName=GROUP, logStreamName=name,
                                     logEvents=[{"timestamp": at, "message": line} for line in lines])
            found = self.logs.filter_log_events(logGroupName=GROUP, logStreamNames=[name])["events"]
        return subscription_event(GROUP, name, found[-len(lines):])

    def stop(self, job_id: str, execution_id: str, arn: str, exit_code: int = 0) -> None:
        """The task stopped: the monitor handles ECS's event (and ends the live streams)."""
        from chalicelib.domain.ecs import started_by
        from tests.component.engine_support import task_event

        event = self.client.events.generate_sqs_event(
            message_bodies=[json.dumps(task_event(started_by(job_id, execution_id), arn, "STOPPED", exit_code=exit_code))],
            queue_name="test-events")
        self.invoke("monitor", event)


@pytest.fixture
def live(aws: dict[str, str], tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    from chalice.test import Client

    from app import app
    from chalicelib import wiring
    from chalicelib.adapters.connections import DynamoConnectionStore
    from chalicelib.adapters.log_events import CloudWatchLogEvents
    from chalicelib.adapters.websocket import ApiGatewaySockets
    from chalicelib.config import get_settings
    from chalicelib.services.live_logs import LiveLogs
    from tests.conftest import Api

    settings = get_settings()
    logs = wiring.client("logs")  # the app's: its reads are counted
    logs.create_log_group(logGroupName=GROUP)
    reads: list[str] = []
    logs.meta.events.register("before-call.cloudwatch-logs.FilterLogEvents",
                              lambda **kw: reads.append("FilterLogEvents"))
    logs.meta.events.register("before-call.cloudwatch-logs.GetLogEvents", lambda **kw: reads.append("GetLogEvents"))
    sockets, started = Sockets(), Started()
    management = boto3.client("apigatewaymanagementapi", region_name=REGION,
                              endpoint_url=f"https://{API_ID}.execute-api.{REGION}.amazonaws.com/api")
    sockets.install(management, monkeypatch)
    instance = LiveLogs(DynamoConnectionStore(settings), ApiGatewaySockets(lambda endpoint: management),
                        CloudWatchLogEvents(logs, settings.log_group), started, wiring.backend().jobs,
                        wiring.backend().executions, sleep=lambda seconds: None)
    monkeypatch.setattr(wiring, "get_live_logs", functools.lru_cache(maxsize=1)(lambda: instance))
    with Client(app, project_dir=str(tmp_path)) as client:
        yield Harness(client, Api(client), instance, sockets, started, boto3.client("logs", region_name=REGION), reads)


def test_a_subscriber_gets_the_output_so_far_then_live_chunks_then_the_exit_code_and_done(live: Harness) -> None:
    job_id, execution_id, arn = live.job()
    live.write(arn, "stdout", "line 1", "line 2")
    live.write(arn, "stderr", "warning 1")

    assert live.connect("c1", taskId="live", jobId=job_id) == {"statusCode": 200}
    frames = live.sockets.of("c1")
    assert frames[0] == {"type": "subscribed", "taskId": "live", "jobId": job_id, "executionId": execution_id,
                         "status": "running", "follow": "job"}
    assert live.sockets.lines("c1", "stdout") == ["line 1", "line 2"]
    assert live.sockets.lines("c1", "stderr") == ["warning 1"]

    live.invoke("logs", live.write(arn, "stdout", "line 3"))
    live.invoke("logs", live.write(arn, "stderr", "warning 2"))
    assert live.sockets.lines("c1") == ["line 1", "line 2", "warning 1", "line 3", "warning 2"]

    live.stop(job_id, execution_id, arn, exit_code=3)
    end, close = live.sockets.of("c1")[-2:]
    timeline = end.pop("timeline")
    assert (end, close) == (
        {"type": "end", "executionId": execution_id, "status": "failed", "exitCode": 3, "error": None},
        {"type": "close", "reason": "done"})
    assert timeline[0]["status"] == "accepted"
    assert {key: timeline[-1][key] for key in ("status", "exitCode", "cause")} == {
        "status": "failed", "exitCode": 3, "cause": "exit"}
    assert live.sockets.closed == ["c1"]
    assert live.live._connections.get_subscriber("c1") is None


def test_output_that_arrives_after_the_last_delivery_is_sent_before_the_end(live: Harness) -> None:
    job_id, execution_id, arn = live.job()
    live.connect("c1", taskId="live", jobId=job_id, executionId=execution_id)
    live.write(arn, "stdout", "written last, never delivered by the subscription before the end")
    live.stop(job_id, execution_id, arn)
    assert live.sockets.lines("c1") == ["written last, never delivered by the subscription before the end"]
    assert [f["type"] for f in live.sockets.of("c1")] == ["subscribed", "output", "end", "close"]


def test_many_subscribers_cost_one_catch_up_read_each_and_no_read_for_live_chunks(live: Harness) -> None:
    job_id, execution_id, arn = live.job()
    live.write(arn, "stdout", "before")
    for n in range(8):
        live.connect(f"c{n}", taskId="live", jobId=job_id)
    assert live.reads == ["FilterLogEvents"] * 8  # one catch-up each
    live.reads.clear()

    for n in range(5):
        assert live.invoke("logs", live.write(arn, "stdout", f"live {n}")) == {"subscribers": 8}
    assert live.reads == []  # live chunks come from the subscription only

    live.stop(job_id, execution_id, arn)
    assert live.reads == ["FilterLogEvents"] * 2  # the tail of stdout and of stderr, once for all eight
    for n in range(8):
        assert live.sockets.lines(f"c{n}") == ["before"] + [f"live {i}" for i in range(5)]
        assert live.sockets.of(f"c{n}")[-1] == {"type": "close", "reason": "done"}


def test_a_subscriber_on_an_unknown_job_gets_an_error_frame_and_a_close(live: Harness) -> None:
    live.connect("c1", taskId="live", jobId=str(uuid.uuid4()))
    frames = live.sockets.of("c1")
    assert frames[0]["type"] == "error" and "was not found" in frames[0]["error"] and frames[0]["field"] == "jobId"
    assert frames[1:] == [{"type": "close", "reason": "error"}]
    assert live.sockets.closed == ["c1"]


def test_a_subscribe_message_without_a_job_is_an_error_and_the_connection_stays(live: Harness) -> None:
    live.connect("c1")
    assert live.started.payloads == [] and live.sockets.of("c1") == []
    live.send("c1", {"action": "subscribe", "taskId": "live"})
    assert live.sockets.of("c1") == [{"type": "error", "error": "jobId must be given as a string of 1 to 255 characters.",
                                      "field": "jobId"}, {"type": "close", "reason": "error"}]
    live.send("c2", "not json")
    assert live.sockets.of("c2")[0]["type"] == "error" and live.sockets.of("c2")[0]["field"] == "action"
    assert "c2" not in live.sockets.closed


def test_every_message_that_is_not_one_of_the_actions_gets_the_same_error(live: Harness) -> None:
    from chalicelib.live_handlers import MALFORMED

    for body in ("not json", "[1, 2]", {"action": "dance"}, {"taskId": "live"}, json.dumps({"a": [[1]]}),
                 json.dumps({"action": "ping", "pad": "x" * 33_000})):
        assert live.send("c1", body) == {"statusCode": 200}
    assert MALFORMED.startswith('Messages are JSON objects: {"action": "subscribe", "taskId": ..., "jobId": ...')
    assert live.sockets.of("c1") == [{"type": "error", "error": MALFORMED, "field": "action"}] * 6
    assert live.sockets.closed == []


def test_the_logs_function_ignores_what_is_not_job_output(live: Harness) -> None:
    job_id, _, arn = live.job()
    live.connect("c1", taskId="live", jobId=job_id)
    control = {"messageType": "CONTROL_MESSAGE", "logGroup": "", "logStream": "", "logEvents": []}
    assert live.invoke("logs", {"awslogs": {"data": base64.b64encode(gzip.compress(json.dumps(control).encode())).decode()}}
                       ) == {"subscribers": 0}
    router = f"{arn.rsplit('/', 1)[-1]}/firelens"  # the log router's own stream
    assert live.invoke("logs", subscription_event(GROUP, router, [{"eventId": "1", "timestamp": 1, "message": "x"}])
                       ) == {"subscribers": 0}
    assert live.invoke("logs", {"something": "else"}) == {"ignored": True}
    assert live.sockets.lines("c1") == []


def test_subscribing_by_message_and_ping(live: Harness) -> None:
    job_id, execution_id, arn = live.job()
    live.write(arn, "stdout", "hello")
    live.connect("c1")
    live.send("c1", {"action": "subscribe", "taskId": "live", "jobId": job_id, "executionId": execution_id})
    assert live.sockets.lines("c1") == ["hello"]
    live.send("c1", {"action": "ping"})
    assert live.sockets.of("c1")[-1] == {"type": "pong"}


def test_an_execution_that_has_not_started_closes_with_retry(live: Harness) -> None:
    enqueued = live.api.post("/tasks/live", {"image": "ubuntu", "command": "echo hi"}).json
    live.connect("c1", taskId="live", jobId=enqueued["jobId"])
    frames = live.sockets.of("c1")
    assert frames[0]["status"] == "enqueued"
    assert frames[-1]["type"] == "close" and frames[-1]["reason"] == "retry" and frames[-1]["retryAfter"] >= 1
    assert live.sockets.closed == ["c1"]


def test_a_scheduled_job_that_never_ran_closes_with_retry(live: Harness) -> None:
    enqueued = live.api.post("/tasks/live", {"image": "ubuntu", "command": "echo hi", "startIn": "2h"}).json
    live.connect("c1", taskId="live", jobId=enqueued["jobId"])
    frames = live.sockets.of("c1")
    assert frames[0]["executionId"] is None
    assert frames[-1] == {"type": "close", "reason": "retry", "retryAfter": 5.0}


def test_an_ended_execution_streams_all_its_output_then_the_exit_code(live: Harness) -> None:
    job_id, execution_id, arn = live.job()
    live.write(arn, "stdout", "a", "b")
    live.stop(job_id, execution_id, arn, exit_code=0)
    live.connect("c1", taskId="live", jobId=job_id)
    assert live.sockets.lines("c1") == ["a", "b"]
    end, close = live.sockets.of("c1")[-2:]
    assert [entry["status"] for entry in end.pop("timeline")][-1] == "done"
    assert (end, close) == (
        {"type": "end", "executionId": execution_id, "status": "done", "exitCode": 0, "error": None},
        {"type": "close", "reason": "done"})
    assert live.live._connections.get_subscriber("c1") is None  # nothing to follow: not registered


def test_a_client_resumes_from_the_last_position_it_received_without_duplicates(live: Harness) -> None:
    job_id, execution_id, arn = live.job()
    live.write(arn, "stdout", "one", "two")
    live.connect("c1", taskId="live", jobId=job_id)
    position = live.sockets.of("c1", "output")[-1]["position"]
    live.invoke("ws_disconnect", ws_event("$disconnect", "c1"))
    live.write(arn, "stdout", "three")
    live.write(arn, "stderr", "oops")

    live.connect("c2", taskId="live", jobId=job_id, executionId=execution_id, after=position)
    assert live.sockets.lines("c2") == ["three", "oops"]
    resumed = live.sockets.of("c2", "output")[-1]["position"]
    live.connect("c3", taskId="live", jobId=job_id, executionId=execution_id, after=resumed)
    assert live.sockets.lines("c3") == []


def test_a_position_that_was_not_given_out_is_an_error(live: Harness) -> None:
    job_id, _, _ = live.job()
    live.connect("c1", taskId="live", jobId=job_id, after="<script>")
    assert live.sockets.of("c1")[0] == {"type": "error", "error": "after is not a position this service gave out.",
                                        "field": "after"}


def test_a_gone_connection_is_removed(live: Harness) -> None:
    job_id, execution_id, arn = live.job()
    live.connect("c1", taskId="live", jobId=job_id)
    live.connect("c2", taskId="live", jobId=job_id)
    live.sockets.gone.add("c1")
    assert live.invoke("logs", live.write(arn, "stdout", "x")) == {"subscribers": 1}
    assert live.live._connections.get_subscriber("c1") is None
    assert live.live._connections.get_subscriber("c2") is not None
    assert live.sockets.lines("c2") == ["x"]


def test_chunks_that_arrive_during_the_catch_up_wait_and_are_sent_in_order_once(live: Harness,
                                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    job_id, execution_id, arn = live.job()
    live.write(arn, "stdout", "old")
    read = live.live._log_events.read
    during: list[Any] = []

    def read_while_output_arrives(*args: Any, **kwargs: Any) -> Any:
        yield from read(*args, **kwargs)
        if not during:  # after the catch-up read, before going live: the subscription delivers
            during.append(live.write(arn, "stdout", "new"))
            live.deliver(during[0])

    monkeypatch.setattr(live.live._log_events, "read", read_while_output_arrives)
    live.connect("c1", taskId="live", jobId=job_id)
    assert live.sockets.lines("c1") == ["old", "new"]
    assert live.live._connections.get_subscriber("c1").live
    live.deliver(during[0])  # delivered again: at least once, yet sent once
    assert live.sockets.lines("c1") == ["old", "new"]


def test_large_chunks_are_split_into_frames_under_32_kb(live: Harness) -> None:
    job_id, execution_id, arn = live.job()
    live.connect("c1", taskId="live", jobId=job_id)
    long_line = "é" * 70_000  # 140 KB of UTF-8 in one event
    many = [f"{n:05d} " + "x" * 100 for n in range(1500)]
    live.invoke("logs", live.write(arn, "stdout", long_line))
    live.invoke("logs", live.write(arn, "stdout", *many))
    outputs = live.sockets.of("c1", "output")
    assert all(len(json.dumps(f, ensure_ascii=False).encode()) <= 32 * 1024 for f in outputs)
    assert len(outputs) > 10
    pieces = [f for f in outputs if f["lines"][0].startswith("é")]
    assert all(f.get("partial") for f in pieces[:-1]) and not pieces[-1].get("partial")
    assert "".join(f["lines"][0] for f in pieces) == long_line
    assert [line for f in outputs[len(pieces):] for line in f["lines"]] == many


def test_the_connections_expire_after_two_hours(live: Harness) -> None:
    job_id, _, _ = live.job()
    live.connect("c1", taskId="live", jobId=job_id)
    item = live.live._connections.model.get("c1")
    assert 2 * 3600 <= item.expires_at.timestamp() - time.time() <= 2 * 3600 + 120
    ttl = boto3.client("dynamodb", region_name=REGION).describe_time_to_live(TableName="test-connections")
    assert ttl["TimeToLiveDescription"] == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expiresAt"}


def test_a_job_subscriber_is_sent_on_to_the_retry_with_retry(live: Harness) -> None:
    enqueued = live.api.post("/tasks/live", {"image": "ubuntu", "command": "false", "retries": 1}).json
    from chalicelib.domain.model import ExecutionStatus as S

    execution = live.store.get_execution(enqueued["jobId"], enqueued["executionId"])
    arn = f"arn:aws:ecs:{REGION}:123456789012:task/fastlane/{uuid.uuid4().hex}"
    live.store.transition(execution, S.RUNNING, task_arn=arn, started_at=time.time())
    live.connect("c1", taskId="live", jobId=enqueued["jobId"])
    live.stop(enqueued["jobId"], enqueued["executionId"], arn, exit_code=1)
    assert live.sockets.of("c1")[-2]["exitCode"] == 1
    assert live.sockets.of("c1")[-1] == {"type": "close", "reason": "retry"}


def test_with_basic_auth_a_connection_needs_credentials_or_the_page_token(live: Harness,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib import wiring

    job_id, _, _ = live.job()
    monkeypatch.setenv("BASIC_AUTH_USERNAME", "ana")
    monkeypatch.setenv("BASIC_AUTH_PASSWORD", "s3cret")
    wiring.get_settings.cache_clear()
    wiring.get_basic_auth.cache_clear()
    assert live.invoke("ws_connect", ws_event("$connect", "c1")) == {"statusCode": 401}
    basic = "Basic " + base64.b64encode(b"ana:s3cret").decode()
    assert live.invoke("ws_connect", ws_event("$connect", "c1", headers={"Authorization": basic})) == {"statusCode": 200}
    page = live.api.get("/tasks/live/jobs/x/stream", headers={"Authorization": basic})
    assert page.status_code == 404  # unknown job
    page = live.api.get(f"/tasks/live/jobs/{job_id}/stream", headers={"Authorization": basic})
    token = json.loads(page.body.split(b'id="config">')[1].split(b"</script>")[0])["token"]
    assert live.invoke("ws_connect", ws_event("$connect", "c2", query={"token": token})) == {"statusCode": 200}
    assert live.invoke("ws_connect", ws_event("$connect", "c3", query={"token": token + "0"})) == {"statusCode": 401}


def test_an_end_during_the_catch_up_is_finished_by_the_subscriber_alone(live: Harness,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    job_id, execution_id, arn = live.job()
    live.write(arn, "stdout", "first")
    read = live.live._log_events.read
    ended: list[bool] = []

    def read_while_the_task_stops(*args: Any, **kwargs: Any) -> Any:
        yield from read(*args, **kwargs)
        if not ended:
            ended.append(True)
            live.write(arn, "stderr", "last words")
            live.stop(job_id, execution_id, arn, exit_code=2)  # the end finds the subscriber catching up

    monkeypatch.setattr(live.live._log_events, "read", read_while_the_task_stops)
    live.connect("c1", taskId="live", jobId=job_id)
    assert live.sockets.lines("c1") == ["first", "last words"]
    assert [f["type"] for f in live.sockets.of("c1")][-2:] == ["end", "close"]
    assert len(live.sockets.of("c1", "end")) == 1 and live.sockets.of("c1", "end")[0]["exitCode"] == 2
    assert live.live._connections.get_subscriber("c1") is None


def test_a_chunk_the_fan_out_missed_for_a_new_subscriber_is_read_before_it_goes_live(
        live: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    job_id, execution_id, arn = live.job()
    live.connect("c0", taskId="live", jobId=job_id)  # someone watches already
    store = live.live._connections
    query = store.subscribers
    read = live.live._log_events.read
    missed: list[bool] = []

    def read_then_a_delivery_that_misses_the_new_subscriber(*args: Any, **kwargs: Any) -> Any:
        yield from read(*args, **kwargs)
        if not missed:  # the index has not shown the new subscriber to the fan-out yet
            missed.append(True)
            monkeypatch.setattr(store, "subscribers", lambda execution: [s for s in query(execution)
                                                                         if s.connection_id == "c0"])
            live.deliver(live.write(arn, "stdout", "while c1 caught up"))
            monkeypatch.setattr(store, "subscribers", query)

    monkeypatch.setattr(live.live._log_events, "read", read_then_a_delivery_that_misses_the_new_subscriber)
    live.reads.clear()
    live.connect("c1", taskId="live", jobId=job_id)
    assert live.sockets.lines("c1") == ["while c1 caught up"]
    assert live.sockets.lines("c0") == ["while c1 caught up"]
    assert live.reads == ["FilterLogEvents"] * 3  # the catch-up, then stdout and stderr from its position
    assert store.get_subscriber("c1").live


def test_the_stream_page_is_html_that_connects_to_the_websocket_url(live: Harness,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib import wiring

    monkeypatch.setenv("WEBSOCKET_URL", "wss://abc123.execute-api.us-east-1.amazonaws.com/api")
    wiring.get_settings.cache_clear()
    job_id, execution_id, _ = live.job()
    for path in (f"/tasks/live/jobs/{job_id}/stream", f"/tasks/live/jobs/{job_id}/executions/{execution_id}/stream/"):
        page = live.api.get(path)
        assert page.status_code == 200
        assert page.headers["Content-Type"] == "text/html; charset=utf-8"
        policy = page.headers["Content-Security-Policy"]
        assert "connect-src wss://abc123.execute-api.us-east-1.amazonaws.com;" in policy
        assert "script-src 'nonce-" in policy and "unsafe-inline" not in policy
        config = json.loads(page.body.split(b'id="config">')[1].split(b"</script>")[0])
        assert config == {"taskId": "live", "jobId": job_id, "executionId": execution_id if "executions" in path else None,
                          "websocketUrl": "wss://abc123.execute-api.us-east-1.amazonaws.com/api", "token": None}
    missing = live.api.get(f"/tasks/live/jobs/{job_id}/executions/{uuid.uuid4()}/stream")
    assert missing.status_code == 404 and missing.json["operation"] == "get_execution_stream"


def test_an_execution_that_ends_while_its_subscriber_registers_still_ends_the_stream(
        live: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """The task stops between the subscriber's read of the execution (running) and its marking
    the execution watched: the monitor's ending saw nobody watching, so the subscriber, seeing
    the execution ended once it is registered, ends the stream itself, once."""
    job_id, execution_id, arn = live.job()
    live.write(arn, "stdout", "the only line")
    executions = live.live._executions
    update = executions.update_execution

    def the_task_stops_first(execution: Any, expected: Any = None, **fields: Any) -> Any:
        if fields.get("watched"):
            live.stop(job_id, execution_id, arn, exit_code=0)  # the monitor: it ends the execution, unwatched
        return update(execution, expected, **fields)

    monkeypatch.setattr(executions, "update_execution", the_task_stops_first)
    live.connect("c1", taskId="live", jobId=job_id)
    assert live.sockets.lines("c1") == ["the only line"]
    assert [f["type"] for f in live.sockets.of("c1")][-2:] == ["end", "close"]
    assert len(live.sockets.of("c1", "end")) == 1 and live.sockets.of("c1", "end")[0]["exitCode"] == 0
