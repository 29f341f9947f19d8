"""Basic auth over real HTTP and the real local websocket: stream tokens open only the job or
execution their page shows, and a page renews its token over the websocket."""
from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from urllib.parse import urlencode

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.system.conftest import Runtime, running_runtime

pytestmark = pytest.mark.system
CREDENTIALS = {"Authorization": "Basic " + base64.b64encode(b"ana:s3cret").decode()}


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    """A runtime of its own with Basic auth on."""
    with running_runtime(tmp_path_factory.mktemp("edge-auth"),
                         {"BASIC_AUTH_USERNAME": "ana", "BASIC_AUTH_PASSWORD": "s3cret"}, headers=CREDENTIALS) as rt:
        yield rt


def websocket_url(runtime: Runtime) -> str:
    match = re.search(r"live logs websocket on (\S+) ", runtime.log.read_text())
    assert match, "the runtime did not announce its websocket"
    return match.group(1)


def page_config(runtime: Runtime, path: str) -> dict:
    page = runtime.get(path, headers=CREDENTIALS)
    assert page.status_code == 200, page.text
    return json.loads(page.text.split('id="config">')[1].split("</script>")[0])


def job(runtime: Runtime) -> dict:
    created = runtime.post("/tasks/edge-auth", {"image": "ubuntu", "command": "true"}, headers=CREDENTIALS)
    assert created.status_code == 200, created.text
    return created.json()


def open_socket(runtime: Runtime, **query: str):  # noqa: ANN201 - a websockets connection
    return connect(f"{websocket_url(runtime)}/?{urlencode(query)}", open_timeout=10)


def frames_until(socket, kind: str) -> dict:  # noqa: ANN001
    while True:
        frame = json.loads(socket.recv(timeout=10))
        if frame["type"] == kind:
            return frame


def test_routes_need_the_credentials(runtime):
    assert runtime.get("/tasks").status_code == 401
    assert runtime.get("/tasks", headers={"Authorization": "Basic " + base64.b64encode(b"ana:").decode()}).status_code == 401
    assert runtime.get("/tasks", headers=CREDENTIALS).status_code == 200


def test_a_job_pages_token_opens_that_job_only(runtime):
    mine, other = job(runtime), job(runtime)
    config = page_config(runtime, f"/tasks/edge-auth/jobs/{mine['jobId']}/stream")
    assert config["token"] and config["expiresAt"] - config["renewBefore"] > 0
    with open_socket(runtime, taskId="edge-auth", jobId=mine["jobId"], token=config["token"]) as socket:
        assert frames_until(socket, "subscribed")["jobId"] == mine["jobId"]
    with pytest.raises(InvalidStatus) as refused:
        open_socket(runtime, taskId="edge-auth", jobId=other["jobId"], token=config["token"])
    assert refused.value.response.status_code == 401


def test_an_execution_pages_token_opens_that_execution_only(runtime):
    first, second = job(runtime), job(runtime)
    config = page_config(runtime, f"/tasks/edge-auth/jobs/{first['jobId']}/executions/{first['executionId']}/stream")
    with pytest.raises(InvalidStatus):
        open_socket(runtime, taskId="edge-auth", jobId=first["jobId"], token=config["token"])  # the whole job
    with pytest.raises(InvalidStatus):
        open_socket(runtime, taskId="edge-auth", jobId=first["jobId"], executionId=second["executionId"],
                    token=config["token"])
    with open_socket(runtime, taskId="edge-auth", jobId=first["jobId"], executionId=first["executionId"],
                     token=config["token"]) as socket:
        assert frames_until(socket, "subscribed")["executionId"] == first["executionId"]


def test_a_subscribe_message_needs_its_own_token(runtime):
    mine, other = job(runtime), job(runtime)
    config = page_config(runtime, f"/tasks/edge-auth/jobs/{mine['jobId']}/stream")
    with open_socket(runtime, token=config["token"]) as socket:
        socket.send(json.dumps({"action": "subscribe", "taskId": "edge-auth", "jobId": other["jobId"]}))
        assert frames_until(socket, "error")["field"] == "token"
        socket.send(json.dumps({"action": "subscribe", "taskId": "edge-auth", "jobId": other["jobId"],
                                "token": config["token"]}))
        assert frames_until(socket, "error")["field"] == "token"
        socket.send(json.dumps({"action": "subscribe", "taskId": "edge-auth", "jobId": mine["jobId"],
                                "token": config["token"]}))
        assert frames_until(socket, "subscribed")["jobId"] == mine["jobId"]


def test_a_page_renews_its_token_over_the_websocket(runtime):
    mine = job(runtime)
    config = page_config(runtime, f"/tasks/edge-auth/jobs/{mine['jobId']}/stream")
    with open_socket(runtime, token=config["token"]) as socket:
        socket.send(json.dumps({"action": "renew", "token": config["token"]}))
        renewed = frames_until(socket, "token")
        assert renewed["expiresAt"] >= config["expiresAt"]
        socket.send(json.dumps({"action": "renew", "token": "1." + config["token"].split(".", 1)[1]}))
        assert frames_until(socket, "error")["field"] == "token"  # expired long ago
    # the new token is for the same job (the same target), and it opens it
    assert renewed["token"].split(".")[1] == config["token"].split(".")[1]
    with open_socket(runtime, taskId="edge-auth", jobId=mine["jobId"], token=renewed["token"]) as socket:
        assert frames_until(socket, "subscribed")["jobId"] == mine["jobId"]
