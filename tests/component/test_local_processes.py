"""Job processes (infra/local/processes.py) and the runtime's life: a job lives as long as the
runtime, not as long as the thread that started it, and a watchdog cleans up after a job whose
process's death would not end it."""
from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.local.processes import Command, OutputShipper, ProcessRun, Sandbox
from tests import polling


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    return polling.wait_until(predicate, timeout=timeout, interval=0.01, what=what)


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


class Lines:
    """A shipper's destination that keeps the lines of stdout."""

    def __init__(self) -> None:
        self.stdout: list[str] = []

    def put(self, stream: str, events: list[dict[str, Any]]) -> None:
        if stream == "stdout":
            self.stdout += [event["message"] for event in events]

    def shipper(self) -> OutputShipper:
        return OutputShipper(self.put, {"stdout": "stdout", "stderr": "stderr"})


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[Any]]]:
    """Processes a test starts itself, killed with their sessions at its end."""
    processes: list[subprocess.Popen[Any]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@pytest.mark.parametrize("kind", ["none", "bwrap"])
def test_a_job_started_by_a_thread_that_ends_runs_on(tmp_path: Path, kind: str) -> None:
    # A parent-death signal is sent when the thread that forked the child ends, not its process.
    directory = tmp_path / "task"
    directory.mkdir()
    inside = Path("/tmp") if kind == "bwrap" else directory  # the sandbox's /tmp is the task's directory
    command = Sandbox.choose(kind).command(
        ["bash", "-c", 'touch "$STARTED"; while [ ! -e "$GO" ]; do sleep 0.02; done; echo ran on'],
        {"STARTED": str(inside / "started"), "GO": str(inside / "go")}, str(directory))
    runs: list[ProcessRun] = []

    def start() -> None:
        runs.append(ProcessRun(command))
        # Until the job runs: bubblewrap asks for its parent-death signal once started.
        wait_until(lambda: (directory / "started").exists(), what="the job to start")

    starter = threading.Thread(target=start)
    starter.start()
    starter.join()
    # Gone for the kernel too: a signal owed to the thread's children is sent by then.
    wait_until(lambda: not Path(f"/proc/self/task/{starter.native_id}").exists(), what="the thread to be gone")
    (run,) = runs
    try:
        (directory / "go").touch()
        lines = Lines()
        assert run.pump(lines.shipper()) == 0
        assert lines.stdout == ["ran on"]
    finally:
        run.kill()


def test_the_watchdog_leaves_without_acting_when_the_job_ends(tmp_path: Path) -> None:
    marker = tmp_path / "cleaned-up"
    run = ProcessRun(Command(["true"], {"PATH": os.environ["PATH"]}, str(tmp_path), cleanup=("touch", str(marker))))
    assert run.pump(Lines().shipper()) == 0
    assert run._watchdog is not None and run._watchdog.returncode == 0  # it has left
    assert not marker.exists()


def test_the_watchdog_acts_when_the_runtime_is_gone_before_the_job_ended(tmp_path: Path) -> None:
    marker = tmp_path / "cleaned-up"
    run = ProcessRun(Command(["sleep", "60"], {"PATH": os.environ["PATH"]}, str(tmp_path),
                             cleanup=("touch", str(marker))))
    try:
        assert run._watchdog is not None and run._watchdog_fd is not None
        os.close(run._watchdog_fd)  # as the kernel closes it when the runtime dies
        run._watchdog_fd = None
        assert run._watchdog.wait(timeout=10) == 0
        assert marker.exists()
    finally:
        run.kill()
        run.process.wait(timeout=10)
        for pipe in (run.process.stdout, run.process.stderr):
            assert pipe is not None
            pipe.close()

