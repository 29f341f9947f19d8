"""`fastlane run` against a local runtime with Basic auth on: the REST calls carry the
credentials, and so does the live-log websocket (its handshake, and the stream token the
service gives an authorized client); wrong or missing credentials are one line and exit 120."""
from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.system.conftest import ROOT, Runtime, free_port, stop_runtime, wait_until

from .conftest import Cli, one_line

pytestmark = [pytest.mark.system, pytest.mark.xdist_group("cli")]


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    """A runtime of its own with Basic auth on; ready once its healthcheck answers the credentials."""
    folder = tmp_path_factory.mktemp("cli-basic")
    port, log = free_port(), folder / "runtime.log"
    env = {**os.environ, "PORT": str(port), "PYTHONUNBUFFERED": "1", "BASIC_AUTH_USERNAME": "ada",
           "BASIC_AUTH_PASSWORD": "lovelace"}
    for name in ("AWS_ENDPOINT_URL", "BACKEND", "STATE_FILE"):
        env.pop(name, None)
    process = subprocess.Popen([sys.executable, "-m", "infra.local.runtime", "--port", str(port),
                                "--state", str(folder / "local.db")], cwd=ROOT, env=env,
                               stdout=log.open("wb"), stderr=subprocess.STDOUT)
    rt = Runtime(f"http://127.0.0.1:{port}", process, log)

    def answering() -> bool:
        assert process.poll() is None, log.read_text()[-2000:]
        try:
            return rt.get("/healthcheck", auth=("ada", "lovelace")).status_code == 200
        except requests.ConnectionError:
            return False

    try:
        wait_until(answering, timeout=60, what="the local runtime with Basic auth")
        yield rt
    finally:
        stop_runtime(rt)


def test_run_with_basic_auth_follows_the_job(runtime: Runtime, tmp_path: Path) -> None:
    cli = Cli(runtime.url, tmp_path, {"FASTLANE_USER": "ada", "FASTLANE_PASSWORD": "lovelace"})
    done = cli("run", "-t", "basic", "ubuntu", "--", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (done.returncode, done.stdout, done.stderr) == (3, "out\n", "err\n")

    wrong = cli("ls", "--password", "nope")
    assert wrong.returncode == 120 and "401" in one_line(wrong.stderr)
    anonymous = cli("status", env={"FASTLANE_USER": "", "FASTLANE_PASSWORD": ""})
    assert anonymous.returncode == 120 and "--user/--password" in one_line(anonymous.stderr)
