"""The command line as a user runs it: the `fastlane` executable in a subprocess, against a local
runtime of the module's own (free ports, its own state) or a recording server on loopback. Each
run has its own config directory and none of the caller's FASTLANE_* or AWS_* settings."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.system.conftest import Runtime, running_runtime

FASTLANE = Path(sys.executable).with_name("fastlane")


def command() -> list[str]:
    if FASTLANE.exists():
        return [str(FASTLANE)]
    try:
        import fastlane_cli  # noqa: F401
    except ImportError:
        pytest.fail("the fastlane command is not installed: `make install` installs it (-e ./cli)", pytrace=False)
    return [sys.executable, "-m", "fastlane_cli"]


def clean_environment(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FASTLANE_", "AWS_"))}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / "config"), NO_COLOR="1", PYTHONUNBUFFERED="1",
               AWS_CONFIG_FILE=str(home / "no-aws-config"), AWS_SHARED_CREDENTIALS_FILE=str(home / "no-aws-credentials"),
               AWS_EC2_METADATA_DISABLED="true")
    env.pop("NO_PROXY", None)
    env["no_proxy"] = "127.0.0.1,localhost"
    env.update(extra)
    return env


def _interruptible() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@dataclass
class Cli:
    """`fastlane ...` with FASTLANE_URL set to `url`."""

    url: str
    home: Path
    env: dict[str, str]

    def environment(self, **extra: str) -> dict[str, str]:
        return {**clean_environment(self.home, FASTLANE_URL=self.url), **self.env, **extra}

    def __call__(self, *args: str, timeout: float = 30, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*command(), *args], capture_output=True, text=True, timeout=timeout,
                              env=self.environment(**(env or {})), stdin=subprocess.DEVNULL)

    def popen(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        """The command as a person starts it from a terminal, where Ctrl-C (SIGINT) reaches it: a
        test run started in the background of a script inherits SIGINT ignored, and Python keeps
        it so in the child."""
        return subprocess.Popen([*command(), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=self.environment(**(env or {})), stdin=subprocess.DEVNULL,
                                preexec_fn=_interruptible)

    def json(self, *args: str) -> Any:
        """`fastlane <command> --json ...`: the option goes right after the command (after IMAGE,
        everything is the job's command)."""
        done = self(args[0], "--json", *args[1:])
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)


def one_line(stderr: str) -> str:
    """The failure line, asserting it is the only thing on stderr."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got: {stderr!r}"
    return lines[0]


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    # Retries after a fifth of a second, not two: the retry test waits for one.
    with running_runtime(tmp_path_factory.mktemp("cli-runtime"), {"RETRY_BACKOFF_MIN": "0.2"}) as rt:
        yield rt


@pytest.fixture(scope="module")
def websocket_url(runtime: Runtime) -> str:
    match = re.search(r"live logs websocket on (ws://\S+)", runtime.log.read_text())
    assert match, "the runtime did not announce its websocket"
    return match.group(1)


@pytest.fixture(scope="module")
def cli(runtime: Runtime, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    return Cli(runtime.url, tmp_path_factory.mktemp("cli-home"), {})


# a recording HTTP server ------------------------------------------------------------------------


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    host: str


class Recorder:
    """An HTTP server on loopback that records every request and answers `answers[path]` (JSON,
    200) or `status` with an error body."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.status = 200
        self.answer: Any = {"items": [], "total": 0, "page": 1, "pages": 1, "perPage": 10, "hasNext": False}
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _record(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                recorder.requests.append(Recorded(self.command, self.path, dict(self.headers.items()), body,
                                                  self.headers.get("Host", "")))
                if recorder.status == 200:
                    text = json.dumps(recorder.answer).replace("{base}", f"http://127.0.0.1:{recorder.port}/api")
                    payload = text.encode()
                else:
                    payload = json.dumps({"message": "Forbidden" if recorder.status == 403 else "Unauthorized"}).encode()
                self.send_response(recorder.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = _record

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Recorder:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    with Recorder() as server:
        yield server
