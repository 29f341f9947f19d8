"""A stream page's live-log token is renewed only within its page's lifetime, over the websocket
(the page's {"action": "renew"}) and over POST .../stream/token: a leaked token is not renewed
for ever. Through the app's handlers, with Basic auth on."""
from __future__ import annotations

import base64
import functools
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from chalicelib.api.auth import LIFETIME_OVER, MAX_TOKEN_LIFETIME, NOT_RENEWABLE, TOKEN_SECONDS

BASIC = {"authorization": "Basic " + base64.b64encode(b"ana:s3cret").decode()}


class Sockets:
    """Stands in for the live logs' sockets: what the handler tells each connection."""

    def __init__(self) -> None:
        self.told: list[dict[str, Any]] = []

    def send(self, connection: Any, frame: str) -> bool:
        self.told.append(json.loads(frame))
        return True


@pytest.fixture
def client(aws: dict[str, str], tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from chalice.test import Client

    from app import app
    from chalicelib import wiring

    monkeypatch.setenv("BASIC_AUTH_USERNAME", "ana")
    monkeypatch.setenv("BASIC_AUTH_PASSWORD", "s3cret")
    wiring.reset()
    with Client(app, project_dir=str(tmp_path)) as chalice_client:
        yield chalice_client


@pytest.fixture
def sockets(client: Any, monkeypatch: pytest.MonkeyPatch) -> Sockets:
    from chalicelib import wiring

    told = Sockets()
    monkeypatch.setattr(wiring, "get_live_logs", functools.lru_cache(maxsize=1)(lambda: told))
    return told


@pytest.fixture
def job(client: Any) -> dict[str, Any]:
    created = client.http.post("/tasks/t", body=json.dumps({"image": "ubuntu", "command": "true"}),
                               headers={"content-type": "application/json", **BASIC})
    assert created.status_code == 200
    answer: dict[str, Any] = json.loads(created.body)
    return answer


def key() -> bytes:
    from chalicelib import wiring

    return wiring.get_basic_auth().signing_key()


def held_since(seconds_ago: float, task_id: str, job_id: str, execution_id: str | None = None) -> str:
    """The token of a page that has renewed its tokens since it was served `seconds_ago`."""
    from chalicelib.api.auth import issue_token

    now = time.time()
    return issue_token(key(), task_id, job_id, execution_id, now=now, issued_at=now - seconds_ago)[0]


def renew_over_the_socket(client: Any, sockets: Sockets, token: str) -> dict[str, Any]:
    event = {"requestContext": {"routeKey": "$default", "eventType": "MESSAGE", "connectionId": "c1",
                                "apiId": "abc123", "stage": "api", "requestId": str(uuid.uuid4()),
                                "domainName": "abc123.execute-api.us-east-1.amazonaws.com"},
             "isBase64Encoded": False, "body": json.dumps({"action": "renew", "token": token})}
    assert client.lambda_.invoke("ws_message", event).payload == {"statusCode": 200}
    return sockets.told[-1]


def renew_over_http(client: Any, path: str, token: str | None, headers: dict[str, str] = BASIC) -> Any:
    body = "" if token is None else json.dumps({"token": token})
    response = client.http.post(path, body=body, headers={"content-type": "application/json", **headers})
    response.json = json.loads(response.body)
    return response


def refused_later(token: str, seconds: float) -> bool:
    """Whether renewing this token `seconds` from now is refused for the lifetime limit: so the
    token carries the issue time of its page's first."""
    from chalicelib.api.auth import TokenRefused, renew_token

    try:
        renew_token(key(), token, now=time.time() + seconds)
    except TokenRefused as refused:
        return refused.message == LIFETIME_OVER
    return False


def test_over_the_socket_a_renewal_keeps_the_issue_time_and_stops_at_the_limit(client, sockets, job):
    young = held_since(60, "t", job["jobId"])
    frame = renew_over_the_socket(client, sockets, young)
    assert frame["type"] == "token" and frame["expiresAt"] >= time.time() + TOKEN_SECONDS - 5
    assert not refused_later(frame["token"], 60)

    nearly = held_since(MAX_TOKEN_LIFETIME - TOKEN_SECONDS - 30, "t", job["jobId"])
    renewed = renew_over_the_socket(client, sockets, nearly)
    assert renewed["type"] == "token"
    assert refused_later(renewed["token"], 60)  # the renewed token is as old as its page: not renewed again

    old = held_since(MAX_TOKEN_LIFETIME - TOKEN_SECONDS + 30, "t", job["jobId"])
    assert renew_over_the_socket(client, sockets, old) == {"type": "error", "error": LIFETIME_OVER, "field": "token"}
    assert renew_over_the_socket(client, sockets, old + "0") == {"type": "error", "error": NOT_RENEWABLE,
                                                                 "field": "token"}


def test_over_http_a_presented_token_is_renewed_within_its_pages_lifetime_only(client, job):
    path = f"/tasks/t/jobs/{job['jobId']}/stream/token"
    nearly = held_since(MAX_TOKEN_LIFETIME - TOKEN_SECONDS - 30, "t", job["jobId"])
    renewed = renew_over_http(client, path, nearly)
    assert renewed.status_code == 200 and renewed.json["jobId"] == job["jobId"]
    assert refused_later(renewed.json["token"], 60)

    old = held_since(MAX_TOKEN_LIFETIME - TOKEN_SECONDS + 30, "t", job["jobId"])
    refused = renew_over_http(client, path, old)
    assert refused.status_code == 403
    assert refused.json == {"error": LIFETIME_OVER, "operation": "renew_stream_token", "field": "token"}

    execution_path = f"/tasks/t/jobs/{job['jobId']}/executions/{job['executionId']}/stream/token"
    other_page = renew_over_http(client, execution_path, held_since(60, "t", job["jobId"]))
    assert other_page.status_code == 403 and other_page.json["error"] == NOT_RENEWABLE  # a job page's token


def test_over_http_a_token_alone_renews_nothing(client, job):
    path = f"/tasks/t/jobs/{job['jobId']}/stream/token"
    young = held_since(60, "t", job["jobId"])
    assert renew_over_http(client, path, young, headers={}).status_code == 401  # the REST API's auth first
    fresh = renew_over_http(client, path, None)  # credentials and no token: as if the page were served again
    assert fresh.status_code == 200 and fresh.json["token"] and not refused_later(fresh.json["token"], 60)
    assert renew_over_http(client, path, 42).status_code == 400  # type: ignore[arg-type]
