"""The local runner (infra/local/runner.py): executions as local processes behind the Runner
port, their output in the local log streams, their ECS task state change events on the local
events queue, stops with a grace, restarts, the docker CLI mode, and the bubblewrap sandbox."""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from chalicelib.domain.ecs import parse_task_event, started_by
from chalicelib.domain.errors import LaunchFailed
from chalicelib.domain.model import Execution, ExecutionStatus, JobSpec
from chalicelib.domain.pools import Pool
from infra.local.commands import Sandbox
from infra.local.runner import RESTARTED, SHUT_DOWN, FrontRunner, LocalRunner
from infra.local.sqlite.db import Database
from infra.local.sqlite.logs import LocalLogReader, LocalLogStore
from infra.local.sqlite.queues import EVENTS, LocalQueues, create_queues
from tests import polling

GRACE = 0.5
POOL = Pool("default", ".*", "fastlane")
ARN = re.compile(r"arn:aws:ecs:us-east-1:123456789012:task/fastlane/[0-9a-f]{32}")
DETAIL_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")

JOB_ID = "7f3c1d2e-5a6b-4c8d-9e0f-112233445566"  # job ids are UUIDs: the tasks' `startedBy` names it


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    return polling.wait_until(predicate, timeout=timeout, interval=0.01, what=what)


def execution(command: str) -> Execution:
    return Execution("task", JOB_ID, str(uuid.uuid4()), "ubuntu", command, ExecutionStatus.ENQUEUED, time.time())


class Local:
    """A runner on its own database, and what a test reads it with."""

    def __init__(self, path: str, **options: Any) -> None:
        self.path = path
        self.db = Database(path)
        self.queues = LocalQueues(self.db)
        create_queues(self.queues)
        self.logs = LocalLogStore(self.db)
        options.setdefault("stop_grace_seconds", GRACE)
        self.runner = LocalRunner(self.db, self.queues, self.logs, **options)
        self.seen: list[dict[str, Any]] = []

    def run(self, command: str, envs: dict[str, str] | None = None) -> tuple[Execution, str]:
        launched = execution(command)
        return launched, self.runner.run(launched, JobSpec("ubuntu", command, envs=envs or {}), POOL)

    def events(self, arn: str) -> list[dict[str, Any]]:
        for message in self.queues.receive(EVENTS, 10):
            self.queues.delete(EVENTS, message.receipt_handle)
            self.seen.append(json.loads(message.body))
        return [event for event in self.seen if event["resources"] == [arn]]

    def wait_event(self, arn: str, status: str, timeout: float = 10.0) -> dict[str, Any]:
        return wait_until(lambda: next((e for e in self.events(arn) if e["detail"]["lastStatus"] == status), None),
                          timeout, f"the {status} event of {arn}")

    def lines(self, arn: str, stream: str) -> list[str]:
        return LocalLogReader(self.logs).read(f"{arn.rsplit('/', 1)[1]}/{stream}", None).lines

    def close(self) -> None:
        self.runner.close()
        self.queues.close()
        self.db.close()


@pytest.fixture
def make_local(tmp_path: Path) -> Iterator[Callable[..., Local]]:
    made: list[Local] = []

    def make(**options: Any) -> Local:
        made.append(Local(str(tmp_path / f"state-{len(made)}.db"), **options))
        return made[-1]

    try:
        yield make
    finally:
        for local in made:
            local.close()


@pytest.fixture
def local(make_local: Callable[..., Local]) -> Local:
    return make_local()


@pytest.fixture(scope="module")
def bwrap() -> Sandbox:
    """bubblewrap is installed by `make test` (Debian package bubblewrap): these tests need it."""
    return Sandbox.choose("bwrap")


def test_an_execution_runs_with_its_environment_and_reports_running_then_stopped(local: Local) -> None:
    launched, arn = local.run("bash -c 'echo \"hello $GREETING\"; echo $FASTLANE_EXECUTION_ID; echo oops >&2'",
                              {"GREETING": "world"})
    assert ARN.fullmatch(arn)
    stopped = local.wait_event(arn, "STOPPED")
    assert [e["detail"]["lastStatus"] for e in local.events(arn)] == ["RUNNING", "STOPPED"]
    assert {k: stopped[k] for k in ("version", "detail-type", "source", "account", "region", "resources")} == {
        "version": "0", "detail-type": "ECS Task State Change", "source": "aws.ecs", "account": "123456789012",
        "region": "us-east-1", "resources": [arn]}
    detail = stopped["detail"]
    assert (detail["taskArn"], detail["startedBy"], detail["stopCode"]) == (arn, started_by(launched.job_id, launched.execution_id),
                                                                            "EssentialContainerExited")
    assert detail["containers"][0]["name"] == "job" and detail["containers"][0]["exitCode"] == 0
    assert all(DETAIL_TIME.fullmatch(detail[k]) for k in ("createdAt", "startedAt", "stoppedAt"))
    # The monitor reads these events with the code it reads ECS's with.
    change = parse_task_event(stopped)
    assert change is not None and change.execution_id == launched.execution_id
    assert (change.state.last_status, change.state.exit_code) == ("STOPPED", 0)
    assert local.lines(arn, "stdout") == ["hello world", launched.execution_id]
    assert local.lines(arn, "stderr") == ["oops"]


def test_exit_codes_are_reported_as_docker_reports_them(local: Local) -> None:
    cases = {"bash -c 'exit 123'": 123, "bash -c qwe": 127, "bash -c 'kill -TERM $$'": 143, "true": 0}
    arns = {local.run(command)[1]: code for command, code in cases.items()}
    for arn, code in arns.items():
        assert local.wait_event(arn, "STOPPED")["detail"]["containers"][0]["exitCode"] == code
    state = local.runner.describe(list(arns))
    assert {arn: s.exit_code for arn, s in state.items() if s} == arns


def test_a_second_run_of_the_same_execution_returns_the_same_task(local: Local) -> None:
    launched, arn = local.run("echo once")
    assert local.runner.run(launched, JobSpec("ubuntu", "echo once"), POOL) == arn
    local.wait_event(arn, "STOPPED")
    assert local.runner.run(launched, JobSpec("ubuntu", "echo once"), POOL) == arn
    assert local.lines(arn, "stdout") == ["once"]


def test_a_command_that_cannot_start_stops_without_an_exit_code_and_says_why(local: Local, tmp_path: Path) -> None:
    script = tmp_path / "script.sh"
    script.write_text("echo hi\n")
    cases = {
        "qwe": 'CannotStartContainerError: exec: "qwe": executable file not found in $PATH',
        str(script): f'CannotStartContainerError: exec: "{script}": permission denied',
    }
    for command, reason in cases.items():
        _, arn = local.run(command)
        detail = local.wait_event(arn, "STOPPED")["detail"]
        assert [e["detail"]["lastStatus"] for e in local.events(arn)] == ["STOPPED"]
        assert (detail["stopCode"], detail["stoppedReason"]) == ("TaskFailedToStart", reason)
        assert "exitCode" not in detail["containers"][0] and "startedAt" not in detail
        assert local.runner.describe([arn])[arn].reason == reason  # type: ignore[union-attr]


def test_a_command_that_cannot_be_split_is_refused_for_good(local: Local) -> None:
    with pytest.raises(LaunchFailed) as refused:
        local.run("echo 'unbalanced")
    assert not refused.value.retryable


def test_stop_terminates_the_process_and_keeps_the_reason(local: Local) -> None:
    _, arn = local.run("sleep 30")
    local.wait_event(arn, "RUNNING")
    started = time.monotonic()
    local.runner.stop(arn, "stopped by a client")
    detail = local.wait_event(arn, "STOPPED", timeout=5)["detail"]
    assert time.monotonic() - started < GRACE + 1
    assert (detail["stopCode"], detail["stoppedReason"]) == ("UserInitiated", "stopped by a client")
    assert detail["containers"][0]["exitCode"] == 143
    local.runner.stop(arn, "again")  # a task that is gone needs no stopping
    local.runner.stop(arn.replace("fastlane", "other"), "never ours")


def test_a_process_ignoring_sigterm_is_killed_after_the_grace(local: Local) -> None:
    _, arn = local.run("bash -c 'trap \"\" TERM; echo ready; sleep 30 & wait; sleep 30'")
    wait_until(lambda: local.lines(arn, "stdout") == ["ready"], what="the trap")
    started = time.monotonic()
    local.runner.stop(arn, "cancelled")
    detail = local.wait_event(arn, "STOPPED", timeout=5)["detail"]
    assert GRACE - 0.1 <= time.monotonic() - started < GRACE + 1.5
    assert detail["containers"][0]["exitCode"] == 137


def test_a_task_stopped_before_its_process_started_never_runs(local: Local, monkeypatch: pytest.MonkeyPatch) -> None:
    from infra.local import runner as runner_module

    started: list[Any] = []
    monkeypatch.setattr(runner_module, "ProcessRun", lambda command: started.append(command))
    monkeypatch.setattr(local.runner, "_supervise", lambda task: None)  # the thread has not got there yet
    launched, arn = local.run("echo never")
    local.runner.stop(arn, "stopped at once")
    monkeypatch.undo()
    supervised = local.runner._supervised[arn.rsplit("/", 1)[1]]
    local.runner._supervise(supervised)
    detail = local.wait_event(arn, "STOPPED")["detail"]
    assert started == [] and detail["stoppedReason"] == "stopped at once" and "exitCode" not in detail["containers"][0]


def test_describe_answers_none_for_a_task_it_never_knew(local: Local) -> None:
    _, arn = local.run("true")
    local.wait_event(arn, "STOPPED")
    unknown = "arn:aws:ecs:us-east-1:123456789012:task/fastlane/" + "0" * 32
    states = local.runner.describe([arn, unknown])
    assert states[unknown] is None and states[arn] is not None and states[arn].last_status == "STOPPED"


def test_all_output_is_in_the_log_streams_before_the_stopped_event(local: Local) -> None:
    _, arn = local.run("bash -c 'for i in $(seq 1 2000); do echo line $i; done; printf tail'")
    local.wait_event(arn, "STOPPED")
    lines = local.lines(arn, "stdout")
    assert len(lines) == 2001 and lines[-2:] == ["line 2000", "tail"]


def test_output_reaches_the_log_streams_while_the_process_runs(local: Local) -> None:
    _, arn = local.run("bash -c 'echo first; sleep 30'")
    written = wait_until(lambda: local.lines(arn, "stdout"), what="the first line")
    assert written == ["first"] and local.runner.describe([arn])[arn].last_status == "RUNNING"  # type: ignore[union-attr]
    local.runner.stop(arn, "done")


def test_what_the_main_process_leaves_behind_dies_with_it(local: Local) -> None:
    _, arn = local.run("bash -c 'sleep 30 & echo $!'")
    local.wait_event(arn, "STOPPED")
    (pid,) = local.lines(arn, "stdout")
    wait_until(lambda: not alive(int(pid)), timeout=3, what="the background process to die")


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def test_closing_kills_every_process_and_says_so_without_an_exit_code(local: Local) -> None:
    _, arn = local.run("bash -c 'echo $$; exec sleep 30'")
    pid = int(wait_until(lambda: local.lines(arn, "stdout"), what="the pid")[0])
    local.runner.close()
    assert local.runner.running_count() == 0 and not alive(pid)
    detail = local.wait_event(arn, "STOPPED")["detail"]
    assert detail["stoppedReason"] == SHUT_DOWN and "exitCode" not in detail["containers"][0]
    with pytest.raises(LaunchFailed):
        local.run("true")


# A runner in a process of its own, which the tests end as a crash would: it starts one job
# (argv: state file, execution id, "plain", "bwrap" or "docker", the command), waits until the
# job wrote a line, prints the task's ARN and the job's lines, then exits at once without
# cleaning up ("exit") or waits to be killed ("wait").
RUNTIME_THAT_DIES = textwrap.dedent("""
    import json, os, sys, threading, time
    from chalicelib.domain.model import Execution, ExecutionStatus, JobSpec
    from chalicelib.domain.pools import Pool
    from infra.local.commands import Sandbox
    from infra.local.runner import LocalRunner
    from infra.local.sqlite.db import Database
    from infra.local.sqlite.logs import LocalLogReader, LocalLogStore
    from infra.local.sqlite.queues import LocalQueues, create_queues

    path, execution_id, mode, command, ending = sys.argv[1:6]
    db = Database(path)
    queues = LocalQueues(db)
    create_queues(queues)
    logs = LocalLogStore(db)
    runner = LocalRunner(db, queues, logs, engine="docker" if mode == "docker" else None,
                         sandbox=Sandbox.choose("bwrap" if mode == "bwrap" else "none"))
    image = "fake/container" if mode == "docker" else "ubuntu"
    execution = Execution("task", "7f3c1d2e-5a6b-4c8d-9e0f-112233445566", execution_id, image, command,
                          ExecutionStatus.ENQUEUED, time.time())
    arn = runner.run(execution, JobSpec(image, command), Pool("default", ".*", "fastlane"))
    stream = arn.rsplit("/", 1)[1] + "/stdout"
    deadline = time.monotonic() + 30
    while not (lines := LocalLogReader(logs).read(stream, None).lines):
        if time.monotonic() > deadline:
            sys.exit("the job wrote nothing")
        time.sleep(0.01)
    print(json.dumps({"arn": arn, "lines": lines}), flush=True)
    if ending == "exit":
        os._exit(9)  # as if killed: nothing is cleaned up
    threading.Event().wait()
""")

# A docker CLI stand-in whose container runs apart from the client, as under a docker engine:
# the client's death leaves it running. `run` prints the container's pid; `rm -f` kills it.
DETACHED_DOCKER = """#!{python}
import os, signal, subprocess, sys
args = sys.argv[1:]
state = os.environ["FAKE_DOCKER_STATE"]
with open(os.path.join(state, "calls"), "a") as calls:
    calls.write(" ".join(args) + "\\n")
if args[0] == "run":
    name = args[args.index("--name") + 1]
    container = subprocess.Popen(["sleep", "60"], start_new_session=True)
    with open(os.path.join(state, name), "w") as pid:
        pid.write(str(container.pid))
    print(container.pid, flush=True)
    sys.exit(container.wait())
if args[:2] == ["rm", "-f"] and os.path.exists(os.path.join(state, args[2])):
    with open(os.path.join(state, args[2])) as pid:
        os.kill(int(pid.read()), signal.SIGKILL)
"""


def start_runtime_that_dies(tmp_path: Path, mode: str, command: str, ending: str,
                            execution_id: str) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    """The runner in a process of its own, once its job wrote a line: the process, and its report."""
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    if mode == "docker":
        (tmp_path / "bin").mkdir()
        (tmp_path / "docker-state").mkdir()
        docker = tmp_path / "bin" / "docker"
        docker.write_text(DETACHED_DOCKER.replace("{python}", sys.executable))
        docker.chmod(0o755)
        env.update(PATH=f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}", FAKE_DOCKER_STATE=str(tmp_path / "docker-state"))
    runtime = subprocess.Popen([sys.executable, "-c", RUNTIME_THAT_DIES, str(tmp_path / "state.db"), execution_id, mode,
                                command, ending], cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    assert runtime.stdout is not None and runtime.stderr is not None
    report = runtime.stdout.readline()  # the script gives up after 30 s, ending the line
    if not report:
        runtime.wait(timeout=10)
        raise AssertionError(runtime.stderr.read())
    return runtime, json.loads(report)


def carrying(entry: str) -> list[int]:
    """The processes whose environment holds `entry`: a job's, which inherit its execution id."""
    found = []
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            if entry.encode() in Path(f"/proc/{name}/environ").read_bytes().split(b"\0") and alive(int(name)):
                found.append(int(name))
        except OSError:
            continue
    return found


def kill_quietly(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.mark.parametrize("mode", ["plain", "bwrap", "docker"])
def test_a_job_dies_with_the_runtime_even_when_it_is_killed(tmp_path: Path, mode: str) -> None:
    if mode == "bwrap":
        Sandbox.choose("bwrap")  # bubblewrap is installed by `make test`: fails here without it
    execution_id = str(uuid.uuid4())
    entry = f"FASTLANE_EXECUTION_ID={execution_id}"
    runtime, report = start_runtime_that_dies(tmp_path, mode, "bash -c 'echo started; exec sleep 60'", "wait",
                                              execution_id)
    job = [int(report["lines"][0])] if mode == "docker" else carrying(entry)  # the container, or the job's processes
    try:
        assert job and all(alive(pid) for pid in job)
        runtime.kill()
        runtime.wait(timeout=10)
        wait_until(lambda: not any(alive(pid) for pid in job) and not carrying(entry), timeout=10,
                   what="the job to die with the runtime")
        if mode == "docker":
            assert f"rm -f fastlane-{report['arn'].rsplit('/', 1)[1]}" in (tmp_path / "docker-state" / "calls").read_text()
    finally:
        if runtime.poll() is None:
            runtime.kill()
            runtime.wait(timeout=10)
        kill_quietly(job + carrying(entry))


def test_a_task_left_by_a_runtime_that_died_is_stopped_on_the_next_start(tmp_path: Path) -> None:
    path = str(tmp_path / "state.db")
    execution_id = str(uuid.uuid4())
    runtime, report = start_runtime_that_dies(tmp_path, "plain", "bash -c 'sleep 60 & echo $$ $!; wait'", "exit",
                                              execution_id)
    assert runtime.wait(timeout=10) == 9
    arn = report["arn"]
    main, background = (int(pid) for pid in report["lines"][0].split())
    local = Local(path)
    try:
        with sqlite3.connect(path) as connection:
            (directory,) = connection.execute("SELECT directory FROM ecs_tasks WHERE arn = ?", (arn,)).fetchone()
        assert Path(directory).is_dir()  # the task's /tmp, left behind
        wait_until(lambda: not alive(main), timeout=5, what="the job's process to die with the runtime")
        assert alive(background)  # what it started in the background outlives the runtime...
        assert local.runner.describe([arn])[arn].last_status == "RUNNING"  # type: ignore[union-attr]
        assert local.runner.recover() == 1
        wait_until(lambda: not alive(background), timeout=3, what="the process left behind to be killed")  # ...until now
        detail = local.wait_event(arn, "STOPPED")["detail"]
        assert detail["startedBy"] == started_by(JOB_ID, execution_id) and detail["stoppedReason"] == RESTARTED
        assert "exitCode" not in detail["containers"][0]
        assert local.runner.describe([arn])[arn].reason == RESTARTED  # type: ignore[union-attr]
        assert local.runner.recover() == 0  # once
        assert not Path(directory).exists()
    finally:
        local.close()
        kill_quietly([main, background])


def test_a_restart_leaves_alone_a_process_that_took_the_pid_a_task_recorded(tmp_path: Path) -> None:
    path = str(tmp_path / "state.db")
    execution_id = str(uuid.uuid4())
    runtime, report = start_runtime_that_dies(tmp_path, "plain", "bash -c 'echo started; exec sleep 60'", "exit",
                                              execution_id)
    assert runtime.wait(timeout=10) == 9
    # The recorded process is gone and its pid taken by another, which leads a session of its own
    # with a process in it, as a job's process does: neither is the job's.
    member_file = tmp_path / "member"
    unrelated = subprocess.Popen(["bash", "-c", f"sleep 60 & echo $! > {member_file}; wait"], start_new_session=True)
    local = Local(path)
    try:
        member = int(wait_until(lambda: member_file.exists() and member_file.read_text().strip(), what="the member"))
        with sqlite3.connect(path) as connection:
            connection.execute("UPDATE ecs_tasks SET pid = ? WHERE arn = ?", (unrelated.pid, report["arn"]))
        assert local.runner.recover() == 1
        assert local.wait_event(report["arn"], "STOPPED")["detail"]["stoppedReason"] == RESTARTED
        assert unrelated.poll() is None and alive(member)
    finally:
        local.close()
        kill_quietly([unrelated.pid] + ([member] if member_file.exists() and member_file.read_text().strip() else [])
                     + carrying(f"FASTLANE_EXECUTION_ID={execution_id}"))
        unrelated.wait(timeout=10)


def run_image(local: Local, image: str, command: str, envs: dict[str, str]) -> str:
    launched = Execution("task", JOB_ID, str(uuid.uuid4()), image, command, ExecutionStatus.ENQUEUED, time.time())
    return local.runner.run(launched, JobSpec(image, command, envs=envs), POOL)


def test_with_docker_each_execution_is_a_docker_run_of_its_image(make_local: Callable[..., Local],
                                                                   fake_docker: Callable[[], list[list[str]]]) -> None:
    local = make_local(engine="docker")
    arn = run_image(local, "fake/exit-7", "echo 'it works'", {"GREETING": "hi there"})
    detail = local.wait_event(arn, "STOPPED")["detail"]
    assert detail["containers"][0]["exitCode"] == 7
    (argv,) = fake_docker()
    assert argv[:4] == ["run", "--rm", "--name", f"fastlane-{arn.rsplit('/', 1)[1]}"]
    assert argv[-3:] == ["fake/exit-7", "echo", "it works"] and "GREETING=hi there" in argv
    assert local.runner.isolation == "Docker containers (DOCKER_HOST)"


def test_with_docker_a_stop_is_a_docker_stop(make_local: Callable[..., Local],
                                             fake_docker: Callable[[], list[list[str]]]) -> None:
    local = make_local(engine="docker")
    arn = run_image(local, "fake/wait-for-stop", "sleep 30", {})
    local.wait_event(arn, "RUNNING")
    local.runner.stop(arn, "cancelled")
    detail = local.wait_event(arn, "STOPPED", timeout=5)["detail"]
    assert (detail["stoppedReason"], detail["containers"][0]["exitCode"]) == ("cancelled", 143)
    assert ["stop", "-t", "1", f"fastlane-{arn.rsplit('/', 1)[1]}"] in fake_docker()


# the bubblewrap sandbox ------------------------------------------------------------------------


def test_in_the_sandbox_output_and_exit_codes_are_those_of_a_plain_process(make_local: Callable[..., Local],
                                                                           bwrap: Sandbox) -> None:
    commands = ["echo 'it works'", "bash -c 'echo \"it failed\" && exit 123'", "bash -c qwe",
                "bash -c 'echo out; echo err >&2; exit 3'", "printf 'a\\nb\\n\\nc'", "qwe"]
    outcomes = {}
    for sandbox in (Sandbox.choose("none"), bwrap):
        local = make_local(sandbox=sandbox)
        runs = [local.run(command)[1] for command in commands]
        outcomes[sandbox.kind] = [(local.wait_event(arn, "STOPPED")["detail"]["containers"][0].get("exitCode"),
                                   local.runner.describe([arn])[arn].reason,  # type: ignore[union-attr]
                                   local.lines(arn, "stdout"), local.lines(arn, "stderr")) for arn in runs]
    assert outcomes["bwrap"] == outcomes["none"]
    assert [code for code, *_ in outcomes["bwrap"]] == [0, 123, 127, 3, 0, None]


def test_in_the_sandbox_a_job_cannot_write_outside_its_own_directories(make_local: Callable[..., Local],
                                                                       bwrap: Sandbox, tmp_path: Path) -> None:
    host_file = tmp_path / "host.txt"
    host_file.write_text("host\n")
    local = make_local(sandbox=bwrap)
    mine = f"fastlane-private-{uuid.uuid4().hex}"  # a name no other program on the host uses
    script = (f"touch /etc/fastlane-escape; echo x >> {host_file}; touch /root/fastlane-escape; "
              f"echo mine > /tmp/{mine} && cat /tmp/{mine}; echo home > $HOME/file && cat file; "
              f"test -e {host_file} || echo host tmp hidden; pwd")
    _, arn = local.run(f"bash -c '{script}'")
    assert local.wait_event(arn, "STOPPED")["detail"]["containers"][0]["exitCode"] == 0
    assert local.lines(arn, "stdout") == ["mine", "home", "host tmp hidden", Sandbox.WORKDIR]
    assert "Read-only file system" in local.lines(arn, "stderr")[0]
    assert host_file.read_text() == "host\n"
    assert not Path("/etc/fastlane-escape").exists() and not Path("/root/fastlane-escape").exists()
    assert not (Path(tempfile.gettempdir()) / mine).exists()


def test_in_the_sandbox_a_job_sees_only_its_environment(make_local: Callable[..., Local], bwrap: Sandbox,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNTIME_SECRET", "must not leak")
    local = make_local(sandbox=bwrap)
    launched, arn = local.run("env", {"GREETING": "hi"})
    local.wait_event(arn, "STOPPED")
    names = {line.split("=", 1)[0] for line in local.lines(arn, "stdout")}
    assert names == {"GREETING", "FASTLANE_TASK_ID", "FASTLANE_JOB_ID", "FASTLANE_EXECUTION_ID", "PATH", "LANG", "HOME",
                     "PWD"}  # bubblewrap says where it started the job
    assert local.runner.isolation.startswith("local processes: bubblewrap sandbox")


def test_in_the_sandbox_the_network_is_on_unless_switched_off(make_local: Callable[..., Local], bwrap: Sandbox) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        port = server.getsockname()[1]
        probe = f"bash -c 'echo > /dev/tcp/127.0.0.1/{port} && echo reached'"
        exits = {}
        for network in (True, False):
            local = make_local(sandbox=Sandbox.choose("bwrap", network=network))
            _, arn = local.run(probe)
            exits[network] = (local.wait_event(arn, "STOPPED")["detail"]["containers"][0]["exitCode"],
                              local.lines(arn, "stdout"))
    assert exits[True] == (0, ["reached"])
    assert exits[False][0] != 0 and exits[False][1] == []
    assert "no network" in Sandbox.choose("bwrap", network=False).description


def test_in_the_sandbox_the_runtime_state_directory_is_hidden(make_local: Callable[..., Local]) -> None:
    state = Path(tempfile.mkdtemp(prefix="fastlane-state-", dir="/var/tmp"))
    try:
        (state / "local.db").write_text("secret state")
        local = make_local(sandbox=Sandbox.choose("bwrap", hidden=[str(state)]))
        _, arn = local.run(f"bash -c 'ls -A {state}; cat {state}/local.db; touch {state}/x'")
        local.wait_event(arn, "STOPPED")
        assert local.lines(arn, "stdout") == []
        assert not (state / "x").exists()
    finally:
        for child in state.iterdir():
            child.unlink()
        state.rmdir()


def test_in_the_sandbox_a_stop_reaches_the_job_which_may_clean_up(make_local: Callable[..., Local],
                                                                  bwrap: Sandbox) -> None:
    local = make_local(sandbox=bwrap)
    _, arn = local.run("bash -c 'trap \"echo cleaning up; exit 5\" TERM; echo ready; while true; do sleep 0.05; done'")
    wait_until(lambda: local.lines(arn, "stdout") == ["ready"], what="the trap")
    local.runner.stop(arn, "stopped by a client")
    detail = local.wait_event(arn, "STOPPED", timeout=5)["detail"]
    assert detail["containers"][0]["exitCode"] == 5
    assert local.lines(arn, "stdout") == ["ready", "cleaning up"]


def test_in_the_sandbox_a_job_that_ignores_the_stop_is_killed_after_the_grace(make_local: Callable[..., Local],
                                                                            bwrap: Sandbox) -> None:
    local = make_local(sandbox=bwrap)
    _, arn = local.run("sleep 30")  # PID 1 without a handler ignores SIGTERM, as in a container
    local.wait_event(arn, "RUNNING")
    started = time.monotonic()
    local.runner.stop(arn, "stopped by a client")
    detail = local.wait_event(arn, "STOPPED", timeout=5)["detail"]
    assert GRACE - 0.1 <= time.monotonic() - started < GRACE + 1.5
    assert detail["containers"][0]["exitCode"] == 137


def test_sandbox_modes(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError):
        Sandbox.choose("chroot")
    assert Sandbox.choose("none").kind == "none"
    monkeypatch.setenv("PATH", "/nonexistent")
    assert Sandbox.choose("auto").kind == "none" and "bwrap is not on PATH" in Sandbox.choose("auto").description
    with pytest.raises(RuntimeError):
        Sandbox.choose("bwrap")



def test_an_http_fronts_runner_reads_the_engines_tasks_hands_stops_over_and_never_launches(local: Local) -> None:
    asked: list[tuple[str, str]] = []
    front = FrontRunner(Database(local.path), lambda arn, reason: asked.append((arn, reason)), "local processes")
    launched, arn = local.run("sleep 30")
    local.wait_event(arn, "RUNNING")
    assert front.describe([arn])[arn] == local.runner.describe([arn])[arn]
    assert front.find(launched, POOL) == local.runner.find(launched, POOL)
    front.stop(arn, "x" * 1000)
    assert asked == [(arn, "x" * 255)]  # ECS's limit on a stop's reason
    assert front.describe([arn])[arn].last_status == "RUNNING"  # the engine's runner stops it, not the front
    with pytest.raises(LaunchFailed) as refused:
        front.run(execution("true"), JobSpec("ubuntu", "true"), POOL)
    assert refused.value.retryable
    assert front.isolation == "local processes"
