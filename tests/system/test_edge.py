"""Hostile input over real HTTP against the local runtime: every case answers a 4xx JSON error
naming the field and leaves nothing behind; bodies are sized from their headers before they are
read; every method is answered in JSON; the runtime answers only its own origin and does not
start open to the network; secrets are shown as *** in answers and webhook bodies; webhooks are
signed with a timestamp."""
from __future__ import annotations

import base64
import http.client
import json
import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import requests

from chalicelib.domain.webhooks import signature_matches
from tests.system.conftest import Runtime, running_runtime, start_runtime, stop_runtime, wait_until

pytestmark = pytest.mark.system
SECRET = "edge-hook-secret"
JOB = {"image": "ubuntu", "command": "true"}


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    with running_runtime(tmp_path_factory.mktemp("edge"), {"WEBHOOK_SIGNING_SECRET": SECRET}) as rt:
        yield rt


def raw_post(runtime: Runtime, path: str, body: bytes, **headers: str) -> requests.Response:
    return requests.post(runtime.url + path, data=body, timeout=10,
                         headers={"Content-Type": "application/json", **headers})


def nothing_left(runtime: Runtime, task_id: str) -> None:
    assert runtime.get(f"/tasks/{task_id}").status_code in (400, 404)
    assert task_id not in [t["taskId"] for t in runtime.get("/tasks").json()["items"]]


def deep(levels: int) -> str:
    return "[" * levels + "]" * levels


HOSTILE = [
    ("deep-body", ('{"image": "ubuntu", "command": "true", "metadata": {"x": ' + deep(3000) + "}}").encode(),
     400, "body"),
    ("huge-timeout", b'{"image": "ubuntu", "command": "true", "timeout": ' + b"9" * 400 + b"}", 400, "body"),
    ("huge-expiration", b'{"image": "ubuntu", "command": "true", "expiration": 1' + b"0" * 399 + b"}", 400, "body"),
    ("huge-start-at", b'{"image": "ubuntu", "command": "true", "startAt": 1' + b"0" * 399 + b"}", 400, "body"),
    ("nan", b'{"image": "ubuntu", "command": "true", "timeout": NaN}', 400, "body"),
    ("infinity", b'{"image": "ubuntu", "command": "true", "metadata": {"x": Infinity}}', 400, "body"),
    ("non-ascii-240kb", json.dumps({**JOB, "metadata": {"text": "é" * 120_000}}, ensure_ascii=False).encode(),
     413, "body"),
    ("image-newline", json.dumps({**JOB, "image": "ubuntu\n"}).encode(), 400, "image"),
    ("env-newline", json.dumps({**JOB, "envs": {"NAME\n": "x"}}).encode(), 400, "envs.NAME\n"),
    ("email-newline", json.dumps({**JOB, "notify": {"fails": ["a@b.io\n"]}}).encode(), 400, "notify.fails"),
    ("cron-digits", json.dumps({**JOB, "cron": "* * * * \u0663"}).encode(), 400, "cron"),
    ("start-in-digits", json.dumps({**JOB, "startIn": "\u0661\u0660s"}).encode(), 400, "startIn"),
    ("hook-url-crlf", json.dumps({**JOB, "webhooks": {"fails": [{"url": "http://h.test/\r\nX: 1"}]}}).encode(),
     400, "webhooks.fails[0].url"),
    ("hook-url-space", json.dumps({**JOB, "webhooks": {"fails": [{"url": "http://h.test/a b"}]}}).encode(),
     400, "webhooks.fails[0].url"),
    ("hook-header-crlf", json.dumps({**JOB, "webhooks": {"fails": [{"url": "http://h.test/",
                                                                    "headers": {"A": "b\r\nX: 1"}}]}}).encode(),
     400, "webhooks.fails[0].headers.A"),
    ("override-8k", json.dumps({**JOB, "envs": {"BIG": "x" * 8100}}).encode(), 400, "envs"),
]


@pytest.mark.parametrize("name,body,status,field", HOSTILE, ids=[case[0] for case in HOSTILE])
def test_hostile_bodies_are_4xx_naming_the_field_and_leave_nothing(runtime, name, body, status, field):
    task_id = f"hostile-{name}"
    answer = raw_post(runtime, f"/tasks/{task_id}", body)
    assert answer.status_code == status, answer.text
    assert answer.headers["Content-Type"] == "application/json"
    error = answer.json()
    assert error["field"] == field and error["operation"] == "enqueue_job" and error["error"]
    nothing_left(runtime, task_id)


def test_a_body_over_the_byte_limit_is_413(runtime):
    answer = raw_post(runtime, "/tasks/hostile-big", b'{"a": "' + b"x" * (300 * 1024) + b'"}')
    assert answer.status_code == 413 and answer.json()["field"] == "body"
    nothing_left(runtime, "hostile-big")


@pytest.mark.parametrize("path,field", [("/tasks/..", "taskId"), ("/tasks/.", "taskId"), ("/tasks/%23tasks", "taskId")])
def test_task_ids_that_are_dot_segments_or_store_keys_are_refused_on_every_route(runtime, path, field):
    session = requests.Session()
    for method, suffix in (("POST", ""), ("GET", ""), ("GET", "/jobs/5a023792-1445-44e9-8a8b-cfe5ad05d1c6"),
                           ("POST", "/jobs/5a023792-1445-44e9-8a8b-cfe5ad05d1c6/stop")):
        request = requests.Request(method, runtime.url + path + suffix, data=json.dumps(JOB)).prepare()
        request.url = runtime.url + path + suffix  # as typed: requests would resolve the dot segments
        answer = session.send(request, timeout=10)
        assert answer.status_code == 400, (method, suffix, answer.text)
        assert answer.json()["field"] == field


def test_ids_that_are_not_uuids_name_nothing(runtime):
    created = runtime.post("/tasks/edge-ids", JOB).json()
    long_id = "x" * 5000
    assert runtime.get(f"/tasks/edge-ids/jobs/{long_id}").status_code == 404
    missing = runtime.get(f"/tasks/edge-ids/jobs/{created['jobId']}/executions/{long_id}")
    assert missing.status_code == 404 and missing.json()["field"] == "executionId"
    assert runtime.put(f"/tasks/edge-ids/jobs/{long_id}", JOB).json()["field"] == "jobId"


@pytest.mark.parametrize("page", ["\u0663", "+2", " 2", "1_0", "0", "-1", "9" * 30, "abc"])
def test_pages_are_ascii_integers_of_1_or_more(runtime, page):
    answer = runtime.get("/tasks", params={"page": page})
    assert answer.status_code == 400 and answer.json()["field"] == "page"


@pytest.mark.parametrize("token", [base64.urlsafe_b64encode(deep(3000).encode()).decode().rstrip("="), "W1s",
                                   "not a token", "x" * 5000, base64.urlsafe_b64encode(b"[0, [1]]").decode()])
def test_page_tokens_that_are_not_ours_are_400(runtime, token):
    created = runtime.post("/tasks/edge-tokens", JOB).json()
    runtime.wait_for_execution(created["executionUrl"], {"done"})
    answer = runtime.get(runtime.path(created["executionUrl"]) + "/stdout", params={"token": token})
    assert answer.status_code == 400 and answer.json()["field"] == "token"


# framing: a body is sized from its headers before a byte of it is read ---------------------------


class Raw:
    """An answer read off a socket that sent exactly the given bytes."""

    def __init__(self, status: int, headers: http.client.HTTPMessage, body: bytes, elapsed: float) -> None:
        self.status, self.headers, self.body, self.elapsed = status, headers, body, elapsed

    def json(self) -> dict:
        assert self.headers["Content-Type"] == "application/json", (self.status, self.body[:300])
        return json.loads(self.body)


def raw_request(runtime: Runtime, head: str, body: bytes = b"", half_close: bool = False) -> Raw:
    """Send `head` (request line and headers, CRLF added) and `body` as they are, then read one answer
    within a deadline: a server that waits for bytes that never come fails the test, not hangs it."""
    address = urlsplit(runtime.url)
    started = time.monotonic()
    with socket.create_connection((address.hostname, address.port), timeout=10) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n\r\n" + body)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        answer = http.client.HTTPResponse(sock, method=head.split(" ", 1)[0])
        answer.begin()
        return Raw(answer.status, answer.headers, answer.read(), time.monotonic() - started)


def post_head(runtime: Runtime, path: str, *headers: str) -> str:
    return "\n".join((f"POST {path} HTTP/1.1", f"Host: {urlsplit(runtime.url).netloc}",
                       "Content-Type: application/json", *headers))


JOB_BYTES = json.dumps(JOB).encode()


@pytest.mark.parametrize("value", ["-1", "-100000", "abc", "1e3", "12, 13"])
def test_a_content_length_that_is_not_a_size_is_400_naming_it_without_reading_the_body(runtime, value):
    """A negative length once read the body to the end of the stream: the client waited for ever."""
    answer = raw_request(runtime, post_head(runtime, "/tasks/edge-length", f"Content-Length: {value}"), JOB_BYTES)
    assert answer.status == 400 and answer.elapsed < 5
    error = answer.json()
    assert error["field"] == "Content-Length" and "Content-Length must be one number of bytes" in error["error"]
    assert answer.headers["Connection"] == "close"
    nothing_left(runtime, "edge-length")


def test_a_declared_length_over_the_limit_is_413_before_the_body_is_sent(runtime):
    """The length is checked, not the body: a client that declares a gigabyte and sends nothing is
    answered at once."""
    answer = raw_request(runtime, post_head(runtime, "/tasks/edge-length", f"Content-Length: {10 ** 9}"))
    assert answer.status == 413 and answer.elapsed < 5
    error = answer.json()
    assert error["field"] == "body" and "Content-Length" in error["error"]
    assert "at most 262144" in error["error"] and "MAX_BODY_BYTES" in error["error"]
    nothing_left(runtime, "edge-length")


def test_a_body_too_large_for_its_expect_100_continue_is_not_asked_for(runtime):
    answer = raw_request(runtime, post_head(runtime, "/tasks/edge-length", "Content-Length: 300000",
                                            "Expect: 100-continue"))
    assert answer.status == 413  # http.client would have read a 100 Continue as the answer
    assert answer.json()["field"] == "body"


def test_a_chunked_body_is_411_naming_content_length(runtime):
    answer = raw_request(runtime, post_head(runtime, "/tasks/edge-length", "Transfer-Encoding: chunked"),
                         b"%x\r\n%s\r\n0\r\n\r\n" % (len(JOB_BYTES), JOB_BYTES))
    assert answer.status == 411 and answer.json()["field"] == "Content-Length"
    nothing_left(runtime, "edge-length")


def test_no_content_length_is_an_empty_body(runtime):
    answer = raw_request(runtime, post_head(runtime, "/tasks/edge-length"))
    assert answer.status == 400 and answer.json()["field"] == "body"  # the app's answer to an empty body
    nothing_left(runtime, "edge-length")


def test_a_body_shorter_than_its_length_is_400_once_the_client_stops_sending(runtime):
    answer = raw_request(runtime, post_head(runtime, "/tasks/edge-length", "Content-Length: 1000"), JOB_BYTES,
                         half_close=True)
    assert answer.status == 400 and answer.json()["field"] == "Content-Length"
    nothing_left(runtime, "edge-length")


def test_a_refused_body_sent_whole_still_gets_its_answer(runtime):
    """requests sends the whole body before it reads: the answer must survive the unread bytes."""
    answer = raw_post(runtime, "/tasks/edge-length", b'{"a": "' + b"x" * (2 * 1024 * 1024) + b'"}')
    assert answer.status_code == 413 and answer.json()["field"] == "body"


# methods: every one is answered in JSON; one no route serves is 405 with Allow ----------------------


def test_a_wrong_method_on_a_route_is_405_with_allow(runtime):
    answer = requests.delete(runtime.url + "/tasks", timeout=10)
    assert answer.status_code == 405 and answer.headers["Allow"] == "GET"
    assert answer.json() == {"error": "DELETE is not allowed on /tasks; allowed: GET.", "operation": "route"}


@pytest.mark.parametrize("method", ["TRACE", "CONNECT", "QUERY", "PROPFIND", "BREW"])
def test_a_method_no_route_serves_is_405_json_with_allow_like_any_wrong_method(runtime, method):
    """http.server answered these 501 with an HTML page."""
    answer = requests.request(method, runtime.url + "/tasks/edge-methods", timeout=10)
    assert answer.status_code == 405 and answer.headers["Allow"] == "GET, POST"
    assert answer.json() == {"error": f"{method} is not allowed on /tasks/edge-methods; allowed: GET, POST.",
                             "operation": "route"}


def test_connect_to_an_authority_is_405_with_allow(runtime):
    answer = raw_request(runtime, f"CONNECT 127.0.0.1:443 HTTP/1.1\nHost: {urlsplit(runtime.url).netloc}")
    assert answer.status == 405 and answer.headers["Allow"] == "GET, POST, PUT"
    assert answer.json()["operation"] == "route"


def test_a_method_no_route_serves_keeps_the_connection_for_the_next_request(runtime):
    session = requests.Session()
    assert session.request("TRACE", runtime.url + "/tasks", timeout=10).status_code == 405
    assert session.get(runtime.url + "/tasks", timeout=10).status_code == 200


# the front door ---------------------------------------------------------------------------------


def test_a_cross_site_post_cannot_start_a_command(runtime):
    """What a web page in the developer's browser can send without a preflight."""
    for headers in ({"Origin": "http://evil.example", "Content-Type": "text/plain"},
                    {"Sec-Fetch-Site": "cross-site", "Content-Type": "text/plain"},
                    {"Origin": "null", "Content-Type": "text/plain"}):
        answer = raw_post(runtime, "/tasks/edge-csrf", json.dumps(JOB).encode(), **headers)
        assert answer.status_code == 403 and answer.json()["operation"] == "route"
    nothing_left(runtime, "edge-csrf")


def test_a_foreign_host_is_refused(runtime):
    """DNS rebinding: the page's origin resolves to 127.0.0.1, but its Host names it."""
    answer = runtime.get("/tasks", headers={"Host": f"rebind.example:{runtime.url.rsplit(':', 1)[1]}"})
    assert answer.status_code == 403 and "Host" in answer.json()["error"]


def test_the_runtimes_own_pages_keep_working(runtime):
    created = runtime.post("/tasks/edge-page", JOB).json()
    page = runtime.get(f"/tasks/edge-page/jobs/{created['jobId']}/stream",
                       headers={"Sec-Fetch-Site": "none", "Sec-Fetch-Mode": "navigate"})
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    same_origin = runtime.get("/tasks", headers={"Origin": runtime.url, "Sec-Fetch-Site": "same-origin"})
    assert same_origin.status_code == 200


# redaction and signatures -----------------------------------------------------------------------

SECRETS = {"API_TOKEN": "t0k", "AWS_SESSION_TOKEN": "s3ss", "DB_PASS": "pa55", "GITHUB_AUTH": "gh4uth", "HOST": "db"}


def test_secret_looking_envs_and_every_hook_header_are_redacted_in_answers_and_webhooks(runtime, receiver):
    hook = {"url": f"{receiver.url}/edge-redact", "headers": {"Authorization": "Bearer hunter2", "X-Team": "ops"}}
    created = runtime.post("/tasks/edge-redact", {**JOB, "envs": SECRETS, "webhooks": {"finishes": [hook]}}).json()
    runtime.wait_for_execution(created["executionUrl"], {"done"})
    job = runtime.get(runtime.path(created["jobUrl"])).json()["job"]
    assert job["metadata"]["envs"] == {**{k: "***" for k in SECRETS if k != "HOST"}, "HOST": "db"}
    assert job["metadata"]["webhooks"]["finishes"][0]["headers"] == {"Authorization": "***", "X-Team": "***"}
    delivered = wait_until(lambda: [r for r in receiver.received() if r.path == "/edge-redact"], timeout=30,
                           what="the webhook")[0]
    body = delivered.body.decode()
    for value in (*[v for k, v in SECRETS.items() if k != "HOST"], "hunter2"):
        assert value not in body and value not in str(job)
    assert delivered.json["job"]["metadata"]["envs"]["API_TOKEN"] == "***"
    assert delivered.headers["Authorization"] == "Bearer hunter2"  # sent as given
    # the signature: t=<epoch seconds>,v1=<HMAC of "<t>.<body>">, checked as a receiver would
    header = delivered.headers["X-Fastlane-Signature"]
    assert header.startswith("t=") and abs(int(header[2:header.index(",")]) - time.time()) < 60
    assert signature_matches(SECRET, delivered.body, header)
    assert not signature_matches(SECRET, delivered.body, header, now=time.time() + 3600)  # a replay an hour on


def test_an_open_runtime_on_every_address_does_not_start(tmp_path):
    """It runs any command posted to it: reachable from other machines, it needs Basic auth or an
    explicit opt-in. (It is refused before it listens; were it not, it would answer on loopback.)"""
    open_to_all = {"HOST": "0.0.0.0", "BASIC_AUTH_USERNAME": "", "BASIC_AUTH_PASSWORD": "", "BASIC_AUTH_SECRET_ID": "",
                   "ALLOW_UNAUTHENTICATED_REMOTE": ""}
    try:
        started = start_runtime(tmp_path, open_to_all)
    except AssertionError as refused:
        said = str(refused)
    else:
        stop_runtime(started)
        pytest.fail("the runtime started on 0.0.0.0 with no auth")
    assert ("fastlane local runtime: cannot start: listening on 0.0.0.0 (HOST) lets other machines reach the API, "
            "which runs any command posted to it: set BASIC_AUTH_USERNAME and BASIC_AUTH_PASSWORD, or "
            "ALLOW_UNAUTHENTICATED_REMOTE=true to run it open anyway.") in said


def test_half_a_basic_auth_pair_does_not_start(tmp_path):
    with pytest.raises(AssertionError) as info:
        start_runtime(tmp_path, {"BASIC_AUTH_USERNAME": "ana", "BASIC_AUTH_PASSWORD": ""})
    assert "BASIC_AUTH_PASSWORD is not set" in str(info.value)


def management_endpoint(runtime: Runtime) -> str:
    import re

    found = re.search(r"websocket management API at (http://\S+?)\)", runtime.log.read_text())
    assert found, "the runtime did not announce its websocket management API"
    return found.group(1)


@pytest.mark.parametrize("headers", [{"Origin": "http://evil.example"}, {"Origin": "null"},
                                     {"Sec-Fetch-Site": "cross-site"}, {"Host": "evil.example"}],
                         ids=["foreign-origin", "opaque-origin", "cross-site", "foreign-host"])
def test_the_websocket_management_api_refuses_what_a_browser_sends(runtime, headers):
    """Only the app posts frames and invokes the logs function through it; a page cannot."""
    endpoint = management_endpoint(runtime)
    refused = requests.post(f"{endpoint}/@connections/someone", data=b"forged frame", headers=headers, timeout=5)
    assert refused.status_code == 403 and refused.json()["__type"] == "AccessDeniedException"
    invoked = requests.post(f"{endpoint}/2015-03-31/functions/logs/invocations", data=b"{}", headers=headers,
                            timeout=5)
    assert invoked.status_code == 403
    assert requests.get(f"{endpoint}/_local/calls", timeout=5).status_code == 200  # the runtime's own kind of call
