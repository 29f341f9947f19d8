"""Fixtures of the component tier shared by the engine's tests and the local runners' tests."""
from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from infra.local.event_sources import deliver_once
from tests.component.engine_support import FakeRunner, install_engine


@pytest.fixture
def runner(aws, monkeypatch) -> FakeRunner:
    """ECS stood in for by a recorder, behind the app's real engine and scheduling."""
    runner = FakeRunner()
    install_engine(monkeypatch, runner)
    return runner


# A docker CLI stand-in, for DOCKER_HOST mode of the local runner and the local Fargate.
FAKE_DOCKER = """#!{python}
import json, os, sys, time
args = sys.argv[1:]
log = os.environ["FAKE_DOCKER_LOG"]
with open(log, "a") as out:
    out.write(json.dumps(args) + "\\n")
if args[0] == "run":
    print("\\n".join(args), flush=True)
    name, image = args[args.index("--name") + 1], next(a for a in args if a.startswith("fake/"))
    if image == "fake/wait-for-stop":
        while not os.path.exists(log + "." + name):
            time.sleep(0.02)
        sys.exit(143)
    sys.exit(int(image.rsplit("-", 1)[1]))
if args[0] == "stop":
    open(log + "." + args[-1], "w").close()
"""


@pytest.fixture
def fake_docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[], list[list[str]]]:
    """A `docker` first on PATH that logs its arguments, prints them, and exits with the code at
    the end of the image name (or, for fake/wait-for-stop, once `docker stop` named it)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    docker.write_text(FAKE_DOCKER.replace("{python}", sys.executable))
    docker.chmod(0o755)
    log = tmp_path / "docker.log"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_DOCKER_LOG", str(log))
    return lambda: [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@pytest.fixture
def drive(aws, sqs):
    """Deliver what waits on the queues to the app's handlers, as Lambda's event sources do."""
    import app as app_module

    def run(queue: str = "jobs") -> int:
        url = aws["JOBS_QUEUE_URL"] if queue == "jobs" else aws["EVENTS_QUEUE_URL"]
        handler = app_module.dispatch_jobs if queue == "jobs" else app_module.monitor_tasks
        total = 0
        while (count := deliver_once(sqs, url, handler)):
            total += count
        return total

    return run


def execution(api, created):
    return api.get(created["executionUrl"].replace("http://fastlane.test", "")).json["execution"]
