"""LocalStack community in host mode, started once for these tests on a free port and stopped by
its process id. The adapters reach it through per-service endpoints, as they would reach AWS.

Where it cannot run (its virtual environment is missing, it does not start, or it is not ready in
60 s) the tests skip and say why; everything else runs. `make test` installs the environment
(`make localstack`); docs/deploy.md#the-localstack-tier."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VENV = Path(os.environ.get("LOCALSTACK_VENV", ROOT / ".venv-localstack"))
READY_SECONDS = 60
SERVICES = ("sqs", "events", "logs")
REGION = "us-east-1"
# botocore's names for the per-service endpoint variables (from each service's id).
ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL_EVENTBRIDGE", "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_localstack/health", timeout=2) as answer:
            services = json.load(answer).get("services", {})
    except (OSError, ValueError):
        return False
    return all(services.get(name) in ("available", "running") for name in SERVICES)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM to LocalStack, SIGKILL to its process group (it has its own) if it lingers."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def localstack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    python = VENV / "bin" / "python"
    if not python.exists() or not list(VENV.glob(".installed-*")):
        pytest.skip(f"LocalStack tier skipped: its virtual environment {VENV} is not installed "
                    "(`make localstack`; it needs Python 3.11 and the package registry)")
    scratch = tmp_path_factory.mktemp("localstack")
    for folder in ("fs", "tmp", "home"):
        (scratch / folder).mkdir()
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "OVERRIDE_IN_DOCKER": "0",
        "GATEWAY_LISTEN": f"127.0.0.1:{port}",
        "LOCALSTACK_HOST": f"127.0.0.1:{port}",
        "SKIP_SSL_CERT_DOWNLOAD": "1",
        "DISABLE_EVENTS": "1",
        "DNS_ADDRESS": "0",
        "FILESYSTEM_ROOT": str(scratch / "fs"),
        "TMPDIR": str(scratch / "tmp"),
        "HOME": str(scratch / "home"),
    }
    log = scratch / "localstack.log"
    with log.open("wb") as output:
        process = subprocess.Popen([str(python), "-m", "localstack.runtime.main"], env=env, cwd=scratch,
                                   stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + READY_SECONDS
        while not _ready(url):
            if process.poll() is not None:
                pytest.skip(f"LocalStack tier skipped: LocalStack exited ({process.returncode}) while "
                            f"starting:\n{_tail(log)}")
            if time.monotonic() > deadline:
                pytest.skip(f"LocalStack tier skipped: not ready in {READY_SECONDS} s:\n{_tail(log)}")
            time.sleep(0.25)
        yield url
    finally:
        _stop(process)


@pytest.fixture
def endpoints(localstack: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point boto3's SQS, EventBridge and CloudWatch Logs clients (and only those) at LocalStack."""
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    for name in ENDPOINT_VARIABLES:
        monkeypatch.setenv(name, localstack)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    for name in ("LOG_GROUP", "JOBS_QUEUE_URL", "JOBS_DLQ_URL"):  # set by a test for its own resources: restored
        monkeypatch.setenv(name, "")
    return localstack
