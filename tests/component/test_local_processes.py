"""Job processes (infra/local/processes.py) and the runtime's life: a job lives as long as the
runtime, not as long as the thread that started it; a watchdog cleans up after a job whose
process's death would not end it; and what a killed runtime left is found again without taking
a process that was given a pid it recorded."""
from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.local.commands import Command, Sandbox
from infra.local.leftovers import kill_leftovers, process_identity
from infra.local.output import OutputShipper
from infra.local.processes import ProcessRun
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


def test_a_process_whose_pid_was_never_recorded_is_found_by_its_execution_id_and_killed(
        started: list[subprocess.Popen[Any]]) -> None:
    entry = "FASTLANE_EXECUTION_ID=never-recorded"
    orphan = subprocess.Popen(["sleep", "60"], env={**os.environ, "FASTLANE_EXECUTION_ID": "never-recorded"},
                              start_new_session=True)
    started.append(orphan)
    # Popen returns once the exec began; the new program's environment is readable a little later.
    wait_until(lambda: Path(f"/proc/{orphan.pid}/environ").read_bytes(), what="the environment of sleep")
    assert kill_leftovers(entry) == 1
    assert orphan.wait(timeout=10) == -signal.SIGKILL
    assert kill_leftovers(entry) == 0


def background_of(leader: subprocess.Popen[str]) -> list[int]:
    """The pids a `... & echo $!` script printed, one a line, until it printed `ready`, once each
    runs `sleep` (a program's environment is readable once its exec is over)."""
    assert leader.stdout is not None
    pids = [int(line) for line in iter(leader.stdout.readline, "ready\n")]
    for pid in pids:
        wait_until(lambda pid=pid: Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"sleep\0"), what="sleep")
    return pids


def test_the_recorded_process_still_running_is_killed_with_its_session(started: list[subprocess.Popen[Any]]) -> None:
    # A member that dropped the job's environment is found through the session.
    leader = subprocess.Popen(["bash", "-c", "env -i sleep 60 & echo $!; echo ready; wait"], stdout=subprocess.PIPE,
                              text=True, start_new_session=True)
    started.append(leader)
    (member,) = background_of(leader)
    identity = process_identity(leader.pid)
    assert kill_leftovers("FASTLANE_EXECUTION_ID=not-in-its-environment", leader.pid, identity) == 2
    leader.wait(timeout=10)  # killed, or done waiting for its member, killed a moment before
    wait_until(lambda: not alive(member), what="the member to die")


def test_a_session_whose_leader_ended_is_the_jobs_when_one_of_its_processes_carries_the_execution_id(
        started: list[subprocess.Popen[Any]]) -> None:
    entry = "FASTLANE_EXECUTION_ID=left-behind"
    script = "sleep 60 & echo $!; env -i sleep 60 & echo $!; echo ready; read || exit 0"
    leader = subprocess.Popen(["bash", "-c", script], env={**os.environ, "FASTLANE_EXECUTION_ID": "left-behind"},
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True)
    started.append(leader)
    members = background_of(leader)
    identity = process_identity(leader.pid)
    assert leader.stdin is not None
    leader.stdin.close()
    assert leader.wait(timeout=10) == 0  # its pid stays the session's, never another's, while they live
    try:
        assert kill_leftovers(entry, leader.pid, identity) == 2
        wait_until(lambda: not any(alive(pid) for pid in members), what="the members to die")
    finally:
        for pid in members:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_process_given_a_recorded_pid_is_left_alone_with_its_session(started: list[subprocess.Popen[Any]]) -> None:
    # The recorded process ended; its pid now leads another session, as a job's process would.
    unrelated = subprocess.Popen(["bash", "-c", "sleep 60 & echo $!; echo ready; wait"], stdout=subprocess.PIPE,
                                 text=True, start_new_session=True)
    started.append(unrelated)
    (member,) = background_of(unrelated)
    now = process_identity(unrelated.pid)
    assert now is not None
    boot, ticks = now.rsplit("/", 1)
    identity = f"{boot}/{int(ticks) - 1}"  # what was recorded of the process that had the pid before
    assert kill_leftovers("FASTLANE_EXECUTION_ID=of-the-ended-job", unrelated.pid, identity) == 0
    assert unrelated.poll() is None and alive(member)
