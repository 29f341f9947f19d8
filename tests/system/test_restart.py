"""A restart of the local runtime on the same state file: every task, job, execution and output
is still there, and executions a previous run left running are finalised (their processes are
gone): failed with the reason, and run again when the job has retries left. Both ways a runtime
ends: killed (SIGKILL, nothing cleaned up, its jobs die with it), and stopped (SIGTERM, its
processes killed)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from infra.local.runner import RESTARTED, SHUT_DOWN
from tests.system.conftest import ROOT, Runtime, start_runtime, stop_runtime, wait_until

pytestmark = pytest.mark.system
FINAL = {"done", "failed", "timedout", "expired", "stopped"}


def path(url: str) -> str:
    """A URL's path: the runtimes after a restart listen on other ports."""
    return urlsplit(url).path


def kill(runtime: Runtime) -> None:
    runtime.process.kill()
    runtime.process.wait(timeout=10)


def carrying(entry: str) -> list[int]:
    """The live processes whose environment holds `entry`: a job's, which inherit its execution id."""
    found = []
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            if (entry.encode() in Path(f"/proc/{name}/environ").read_bytes().split(b"\0")
                    and Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")):
                found.append(int(name))
        except OSError:
            continue
    return found


def snapshot(runtime: Runtime, created: list[dict]) -> dict:
    """What a client sees of the tasks and jobs (not of the executions, which move on)."""
    tasks = runtime.get("/tasks").json()
    jobs = {c["jobId"]: runtime.get(path(c["jobUrl"])).json()["job"] for c in created}
    return {"tasks": [(t["taskId"], t["createdAt"], t["jobsCount"]) for t in tasks["items"]],
            "jobs": {job_id: (job["createdAt"], job["executionCount"] >= 1) for job_id, job in jobs.items()}}


def executions(runtime: Runtime, created: dict) -> list[dict]:
    return runtime.get(path(created["jobUrl"])).json()["job"]["executions"]


def test_a_restart_keeps_everything_and_finalises_the_executions_left_running(tmp_path: Path) -> None:
    state = tmp_path / "state" / "local.db"
    env = {"RETRY_BACKOFF_MIN": "1"}
    first = start_runtime(tmp_path, env, state=state, log_name="first.log")
    try:
        finished = first.post("/tasks/kept", {"image": "ubuntu", "command": "echo kept"}).json()
        first.wait_for_execution(finished["executionUrl"], {"done"})
        alone = first.post("/tasks/left", {"image": "ubuntu", "command": "sleep 60"}).json()
        retried = first.post("/tasks/left", {"image": "ubuntu", "command": "sleep 60", "retries": 1}).json()
        for created in (alone, retried):
            first.wait_for_execution(created["executionUrl"], {"running"})
        before = snapshot(first, [finished, alone, retried])
    finally:
        kill(first)

    second = start_runtime(tmp_path, env, state=state, log_name="second.log")
    try:
        # The banner is printed once the runtime serves: it may still be on its way when it answers.
        wait_until(lambda: "2 ECS task(s) left running by the previous run were stopped" in second.log.read_text(),
                   timeout=10, what="the banner to say what the restart stopped")
        assert snapshot(second, [finished, alone, retried]) == before
        assert second.get(path(finished["jobUrl"]) + "/stdout").text == "kept\n"
        ended = second.wait_for_execution(second.url + path(alone["executionUrl"]), FINAL)
        assert (ended["status"], ended["error"], ended["exitCode"]) == ("failed", RESTARTED, None)
        first_try = second.wait_for_execution(second.url + path(retried["executionUrl"]), FINAL)
        assert (first_try["status"], first_try["error"]) == ("failed", RESTARTED)
        retry = wait_until(lambda: next((e for e in executions(second, retried)
                                         if e["executionId"] != retried["executionId"]), None), timeout=20, what="the retry")
        second.wait_for_execution(retry["url"], {"running"})
        retry_path = path(retry["url"])
    finally:
        stop_runtime(second)
    assert second.process.returncode == 0

    third = start_runtime(tmp_path, env, state=state, log_name="third.log")
    try:
        stopped_retry = third.wait_for_execution(third.url + retry_path, FINAL)
        assert (stopped_retry["status"], stopped_retry["error"]) == ("failed", SHUT_DOWN)
        job = third.get(path(retried["jobUrl"])).json()["job"]
        assert job["executionCount"] == 2  # its one retry was used: it does not run again
        status = third.get("/status").json()["executions"]
        assert (status["done"], status["failed"], status["running"], status["enqueued"]) == (1, 3, 0, 0)
    finally:
        stop_runtime(third)


def test_a_second_runtime_on_the_same_state_file_refuses_to_start(tmp_path: Path) -> None:
    state = tmp_path / "state" / "local.db"
    first = start_runtime(tmp_path, state=state, log_name="first.log")
    try:
        refused = subprocess.run([sys.executable, "-m", "infra.local.runtime", "--port", "0", "--state", str(state)],
                                 cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert refused.returncode == 2
        assert f"another local runtime uses {state}" in refused.stderr
        assert first.get("/healthcheck").status_code == 200
    finally:
        stop_runtime(first)


def test_fresh_starts_with_an_empty_state(tmp_path: Path) -> None:
    state = tmp_path / "state" / "local.db"
    first = start_runtime(tmp_path, state=state, log_name="first.log")
    try:
        first.post("/tasks/old", {"image": "ubuntu", "command": "true"})
    finally:
        stop_runtime(first)
    again = start_runtime(tmp_path, state=state, log_name="again.log", args=("--fresh",))
    try:
        assert again.get("/tasks").json()["total"] == 0
    finally:
        stop_runtime(again)


def test_output_older_than_the_retention_is_forgotten_and_its_execution_kept(tmp_path: Path) -> None:
    state = tmp_path / "state" / "local.db"
    first = start_runtime(tmp_path, state=state, log_name="first.log")
    try:
        assert "job output is kept 30 days (LOG_RETENTION_DAYS)" in first.log.read_text()
        created = first.post("/tasks/kept", {"image": "ubuntu", "command": "echo forgotten soon"}).json()
        first.wait_for_execution(created["executionUrl"], {"done"})
        assert first.get(path(created["jobUrl"]) + "/stdout").text == "forgotten soon\n"
    finally:
        stop_runtime(first)
    stopped_at = time.time()

    # 0.00002 days is 1.7 s: the output, written before the first runtime stopped, is older by then.
    wait_until(lambda: time.time() > stopped_at + 2, timeout=10, what="the output to age past the retention")
    second = start_runtime(tmp_path, {"LOG_RETENTION_DAYS": "0.00002"}, state=state, log_name="second.log")
    try:
        wait_until(lambda: "line(s) of job output older than 2e-05 days forgotten" in second.log.read_text(),
                   timeout=20, what="the retention pass")
        assert second.get(path(created["jobUrl"]) + "/stdout").text == ""
        details = second.get(path(created["executionUrl"])).json()["execution"]
        assert details["status"] == "done" and details["exitCode"] == 0 and not details["log"]
    finally:
        stop_runtime(second)


@pytest.mark.parametrize("backend", ["local", "aws"])
def test_the_jobs_of_a_killed_runtime_die_with_it(tmp_path: Path, backend: str) -> None:
    # Plain processes: bubblewrap's sandbox dies with its parent by itself.
    runtime = start_runtime(tmp_path, {"LOCAL_SANDBOX": "none"}, backend=backend)
    job: list[int] = []
    try:
        created = runtime.post("/tasks/left", {"image": "ubuntu", "command": "sleep 60"}).json()
        runtime.wait_for_execution(created["executionUrl"], {"running"})
        entry = f"FASTLANE_EXECUTION_ID={created['executionId']}"
        job = wait_until(lambda: carrying(entry), timeout=10, what="the job's process")
    finally:
        kill(runtime)
    try:
        wait_until(lambda: not carrying(entry), timeout=10, what="the job to die with the runtime, not 60 s later")
    finally:
        for pid in job:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
