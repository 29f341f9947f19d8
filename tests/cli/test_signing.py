"""SigV4 as botocore's own signer computes it, on the requests the service actually receives from
the command line and from `fastlane ui`'s loopback proxy (recorded by a server on loopback: its
signature recomputed with fixed credentials at the recorded time); the proxy refusing other
origins and hosts; Basic and API key credentials; the one-line failures when they are refused."""
from __future__ import annotations

import base64
import datetime
import json
import re
import signal
import subprocess
from pathlib import Path

import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from .conftest import Cli, Recorded, Recorder, one_line

KEY_ID, SECRET, TOKEN = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "session-token-example"
REGION = "eu-west-1"
SIGNED = {"AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_SESSION_TOKEN": TOKEN}


def botocore_signature(recorded: Recorded, credentials: Credentials, monkeypatch: pytest.MonkeyPatch) -> str:
    """The Authorization header botocore gives the request as received: same method, URL, signed
    headers and body, the same credentials, at the time the request says it was signed."""
    at = datetime.datetime.strptime(recorded.headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ")
    monkeypatch.setattr("botocore.auth.get_current_datetime", lambda *a, **k: at)
    names = re.search(r"SignedHeaders=([^,]+)", recorded.headers["Authorization"])
    assert names, recorded.headers["Authorization"]
    received = {k.lower(): v for k, v in recorded.headers.items()}
    headers = {name: received[name] for name in names.group(1).split(";")
               if name not in ("x-amz-date", "x-amz-security-token")}
    request = AWSRequest(method=recorded.method, url=f"http://{recorded.host}{recorded.path}", data=recorded.body,
                         headers=headers)
    SigV4Auth(credentials, "execute-api", REGION).add_auth(request)
    return str(request.headers["Authorization"])


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path


def test_the_command_line_signs_as_botocore_does(recorder: Recorder, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cli = Cli(recorder.url + "/api", home, SIGNED)
    listed = cli("ls", "--auth", "sigv4", "--aws-region", REGION)
    assert listed.returncode == 0, listed.stderr
    posted = cli("run", "--detach", "--auth", "sigv4", "--aws-region", REGION, "-t", "signed", "ubuntu", "--", "echo", "hi")
    assert posted.returncode == 0, posted.stderr
    get, post = recorder.requests
    assert (get.method, get.path) == ("GET", "/api/tasks?page=1")
    assert (post.method, post.path) == ("POST", "/api/tasks/signed")
    assert json.loads(post.body) == {"image": "ubuntu", "command": "echo hi"}
    credentials = Credentials(KEY_ID, SECRET, TOKEN)
    for recorded in (get, post):
        authorization = recorded.headers["Authorization"]
        assert authorization.startswith(f"AWS4-HMAC-SHA256 Credential={KEY_ID}/")
        assert f"/{REGION}/execute-api/aws4_request" in authorization
        assert recorded.headers["X-Amz-Security-Token"] == TOKEN
        assert authorization == botocore_signature(recorded, credentials, monkeypatch)


def test_a_profile_gives_the_credentials_and_the_url_the_region(recorder: Recorder, home: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    (home / "no-aws-credentials").write_text(f"[ci]\naws_access_key_id = AKIDPROFILE\naws_secret_access_key = {SECRET}\n")
    cli = Cli(recorder.url + "/api", home, {})
    done = cli("ls", "--aws-profile", "ci", "--aws-region", REGION)  # a profile alone means SigV4
    assert done.returncode == 0, done.stderr
    (recorded,) = recorder.requests
    assert "Credential=AKIDPROFILE/" in recorded.headers["Authorization"]
    assert "X-Amz-Security-Token" not in recorded.headers
    assert recorded.headers["Authorization"] == botocore_signature(recorded, Credentials("AKIDPROFILE", SECRET), monkeypatch)

    unknown = cli("ls", "--aws-profile", "nope", "--aws-region", REGION)
    assert unknown.returncode == 2 and "nope" in one_line(unknown.stderr)


def test_no_credentials_and_refusals_are_one_line_with_exit_120(recorder: Recorder, home: Path) -> None:
    cli = Cli(recorder.url + "/api", home, {})
    none = cli("ls", "--auth", "sigv4", "--aws-region", REGION)
    assert none.returncode == 120 and "no AWS credentials" in one_line(none.stderr)
    assert not recorder.requests  # nothing unsigned went out

    recorder.status = 403
    refused = cli("ls", "--auth", "sigv4", "--aws-region", REGION, env=SIGNED)
    assert refused.returncode == 120
    assert "403" in one_line(refused.stderr) and "execute-api:Invoke" in refused.stderr

    recorder.status = 401
    basic = cli("ls", "--user", "ada", "--password", "s3cret")
    assert basic.returncode == 120 and "--user/--password" in one_line(basic.stderr)
    assert recorder.requests[-1].headers["Authorization"] == "Basic " + base64.b64encode(b"ada:s3cret").decode()

    api_key = cli("status", "--api-key", "k-123")
    assert api_key.returncode == 120 and "--api-key" in one_line(api_key.stderr)
    assert recorder.requests[-1].headers["x-api-key"] == "k-123"


# the ui's signing proxy -------------------------------------------------------------------------


@pytest.fixture
def proxy(recorder: Recorder, home: Path):
    recorder.answer = {"url": "{base}/tasks/t", "items": []}
    cli = Cli(recorder.url + "/api", home, SIGNED)
    process = cli.popen("ui", "--no-browser", "--auth", "sigv4", "--aws-region", REGION)
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/ui", url), (url, process.stderr.read() if process.stderr else "")
        yield url.removesuffix("/ui")
    finally:
        process.send_signal(signal.SIGINT)  # Ctrl-C stops it
        try:
            assert process.wait(timeout=10) == 0
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
            raise


def test_the_ui_proxy_signs_for_the_browser(proxy: str, recorder: Recorder, monkeypatch: pytest.MonkeyPatch) -> None:
    answer = requests.get(f"{proxy}/tasks?page=1", headers={"Cookie": "session=browser", "Accept": "application/json"},
                          timeout=10)
    assert answer.status_code == 200
    assert answer.json()["url"] == f"{proxy}/tasks/t"  # the service's URLs lead back through the proxy
    body = json.dumps({"image": "ubuntu", "command": "true"})
    posted = requests.post(f"{proxy}/tasks/ui", data=body, timeout=10,
                           headers={"Content-Type": "application/json", "Origin": proxy, "Sec-Fetch-Site": "same-origin"})
    assert posted.status_code == 200
    get, post = recorder.requests
    assert (get.path, post.path, post.body) == ("/api/tasks?page=1", "/api/tasks/ui", body.encode())
    credentials = Credentials(KEY_ID, SECRET, TOKEN)
    for recorded in (get, post):
        assert recorded.host == f"127.0.0.1:{recorder.port}"
        assert not {"Cookie", "Origin", "Sec-Fetch-Site"} & set(recorded.headers)  # the browser's stay here
        assert recorded.headers["Authorization"] == botocore_signature(recorded, credentials, monkeypatch)


@pytest.mark.parametrize("headers", [
    {"Origin": "https://elsewhere.example"},
    {"Origin": "null"},
    {"Host": "elsewhere.example"},
    {"Sec-Fetch-Site": "cross-site"},
], ids=["foreign-origin", "null-origin", "foreign-host", "cross-site"])
def test_the_ui_proxy_refuses_other_origins(proxy: str, recorder: Recorder, headers: dict[str, str]) -> None:
    refused = requests.post(f"{proxy}/tasks/x", data="{}", headers={"Content-Type": "application/json", **headers},
                            timeout=10)
    assert refused.status_code == 403
    assert refused.json()["operation"] == "proxy"
    assert not recorder.requests  # nothing was signed nor sent
