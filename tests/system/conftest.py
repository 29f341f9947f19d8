"""The system tier: the local runtime that `make run` starts, in its own process on free
ports, driven over real HTTP, on the local backend (a state file of the test's own) unless a
test asks for the aws one (moto's server, started by the runtime). Stopped by its process id
at the end."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from tests.polling import wait_until as wait_until  # the system tests import it from here
from tests.webhook_receiver import Receiver

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]



class Runtime:
    def __init__(self, url: str, process: subprocess.Popen, log: Path, backend: str = "local",
                 state: Path | None = None) -> None:
        self.url = url
        self.process = process
        self.log = log
        self.backend = backend
        self.state = state  # the local backend's state file

    def endpoints(self) -> tuple[str, str]:
        """The aws backend's AWS endpoint and the local ECS endpoint, as the runtime announced them."""
        import re

        match = re.search(r"AWS at (\S+) \(.*\); ECS stood in for by local processes at (\S+)\.", self.log.read_text())
        assert match, "the runtime did not announce its endpoints"
        return match.group(1), match.group(2)

    def path(self, url: str) -> str:
        return url.replace(self.url, "")

    def wait_for_execution(self, execution_url: str, statuses: set[str], timeout: float = 30.0) -> dict:
        def ended():
            response = self.get(self.path(execution_url))
            if response.status_code == 503:
                return None  # a dependency down for a moment (moto's server under load): a client asks again
            assert response.status_code == 200, f"GET {execution_url}: {response.status_code} {response.text}"
            execution = response.json()["execution"]
            return execution if execution["status"] in statuses else None

        return wait_until(ended, timeout=timeout, interval=0.1, what=f"execution to reach {statuses}")

    def get(self, path: str, **kw):
        return requests.get(self.url + path, timeout=10, **kw)

    def post(self, path: str, json=None, **kw):
        return requests.post(self.url + path, json=json, timeout=10, **kw)

    def put(self, path: str, json=None, **kw):
        return requests.put(self.url + path, json=json, timeout=10, **kw)


def start_runtime(tmp: Path, extra_env: dict[str, str] | None = None, backend: str = "local",
                  state: Path | None = None, log_name: str = "runtime.log", args: tuple[str, ...] = (),
                  headers: dict[str, str] | None = None) -> Runtime:
    """A runtime on `backend`; on the local one its state is `state` (by default a new file in
    `tmp`), so a second runtime on the same file is a restart. Ready once its healthcheck answers
    200 to `headers` (credentials, when it asks for them)."""
    port = free_port()
    log = tmp / log_name
    env = {**os.environ, "PORT": str(port), "PYTHONUNBUFFERED": "1", **(extra_env or {})}
    for name in ("AWS_ENDPOINT_URL", "BACKEND", "STATE_FILE"):
        env.pop(name, None)
    # On the aws backend every AWS call a handler makes is checked against its function's role.
    module = "tests.iam_runtime" if backend == "aws" else "infra.local.runtime"
    refusals = tmp / f"{log_name}.iam-refusals"
    env["FASTLANE_IAM_REFUSALS"] = str(refusals)
    argv = [sys.executable, "-m", module, "--port", str(port), "--backend", backend]
    if backend == "local":
        state = state or tmp / "state" / "local.db"
        argv += ["--state", str(state)]
    argv += args
    process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    runtime = Runtime(f"http://127.0.0.1:{port}", process, log, backend, state)

    def healthy() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"runtime exited: {log.read_text()[-2000:]}")
        try:
            if runtime.get("/healthcheck", headers=headers).status_code != 200:
                return False
        except requests.ConnectionError:
            return False
        # Its HTTP fronts may serve before the runtime has said where everything is: the last line.
        return "websocket management API at" in log.read_text()

    try:
        wait_until(healthy, timeout=60, what="the local runtime to be healthy")
    except BaseException:
        stop_runtime(runtime)  # never leave a runtime behind that did not come up
        raise
    return runtime


def stop_runtime(runtime: Runtime) -> None:
    if runtime.process.poll() is None:
        runtime.process.send_signal(signal.SIGTERM)
        try:
            runtime.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            runtime.process.kill()
            runtime.process.wait(timeout=5)
    refusals = runtime.log.with_name(runtime.log.name + ".iam-refusals")
    if refusals.exists():
        refused = sorted(set(refusals.read_text().splitlines()))
        refusals.unlink()
        pytest.fail("AWS calls a deployed role would refuse:\n" + "\n".join(refused), pytrace=False)


# One pool with a limit, for the tests of limits; every other task runs unbounded.
POOLS = '[{"name": "limited", "match": "limited-.*", "maxRunning": 2}, {"name": "default", "match": ".*"}]'


@contextmanager
def running_runtime(tmp: Path, extra_env: dict[str, str] | None = None, backend: str = "local",
                    state: Path | None = None, headers: dict[str, str] | None = None) -> Iterator[Runtime]:
    """A local runtime of its own for a test module, stopped by its process id at the end."""
    rt = start_runtime(tmp, extra_env, backend, state, headers=headers)
    try:
        yield rt
    finally:
        stop_runtime(rt)


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    with running_runtime(tmp_path_factory.mktemp("runtime"), {"POOLS": POOLS}) as rt:
        yield rt


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    """A webhook receiver on loopback for a test module, stopped at its end."""
    server = Receiver().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def chromium() -> str:
    """Headless Chromium's path for the tests of the pages (installed as `make test` does where it
    can be); the test is skipped, saying why, only where it cannot."""
    from .browser import ensure_chromium

    path, why = ensure_chromium()
    if path is None:
        pytest.skip(f"no headless browser: {why}")
    return path
