"""The original fastlane's functional scenarios, checked as its clients check them: poll the
execution details until the execution ends, then read `log` (stdout) and `error` (stderr)."""
from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest

from tests.system.conftest import Runtime, running_runtime, wait_until

pytestmark = pytest.mark.system
FINAL = {"done", "failed", "timedout", "expired", "stopped"}
TICK = 2.0  # LOCAL_CRON_TICK_SECONDS: cron schedules fire this often here


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    with running_runtime(tmp_path_factory.mktemp("compat"), {"LOCAL_CRON_TICK_SECONDS": str(TICK)}) as rt:
        yield rt


def post(runtime: Runtime, payload: dict) -> dict:
    """POST to /tasks/<new task>/ as the original's tests do (a form-encoded Content-Type, JSON body)."""
    import json

    answer = runtime.post(f"/tasks/{uuid.uuid4()}/", data=json.dumps(payload),
                          headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert answer.status_code == 200, answer.text
    return answer.json()


def nth_execution(runtime: Runtime, created: dict, count: int = 1, timeout: float = 30) -> dict:
    """The job's `count`-th execution once it exists, then its details once it has ended."""
    def listed():
        executions = runtime.get(runtime.path(created["jobUrl"])).json()["job"]["executions"]
        return executions if len(executions) >= count else None

    executions = wait_until(listed, timeout=timeout, interval=0.2, what=f"{count} executions")
    oldest_first = sorted(executions, key=lambda e: e["createdAt"])
    return runtime.wait_for_execution(oldest_first[count - 1]["url"], FINAL)


def test_echo_it_works(runtime):
    created = post(runtime, {"image": "ubuntu", "command": "echo 'it works'"})
    execution = runtime.wait_for_execution(created["executionUrl"], FINAL)
    assert (execution["status"], execution["exitCode"], execution["log"]) == ("done", 0, "it works\n")
    assert execution["error"] == "" and execution["reason"] is None


def test_exit_123_with_it_failed_on_stderr(runtime):
    created = post(runtime, {"image": "ubuntu", "command": "bash -c \"echo 'it failed' >&2; exit 123\""})
    execution = runtime.wait_for_execution(created["executionUrl"], FINAL)
    assert (execution["status"], execution["exitCode"]) == ("failed", 123)
    assert execution["error"] == "it failed\n" and execution["log"] == ""


def test_an_unknown_command_in_bash(runtime):
    created = post(runtime, {"image": "ubuntu", "command": "bash -c 'qwe'"})
    execution = runtime.wait_for_execution(created["executionUrl"], FINAL)
    assert (execution["status"], execution["exitCode"]) == ("failed", 127)
    # bash 5.2 says "bash: line 1: qwe: command not found", the original's image "bash: qwe: ..."
    assert "qwe: command not found" in execution["error"]


def test_start_at_now(runtime):
    created = post(runtime, {"image": "ubuntu", "command": "echo 'it works'", "startAt": int(time.time())})
    execution = nth_execution(runtime, created)
    assert (execution["status"], execution["exitCode"], execution["log"]) == ("done", 0, "it works\n")


def test_start_in_one_second(runtime):
    created = post(runtime, {"image": "ubuntu", "command": "echo 'it works'", "startIn": "1s"})
    execution = nth_execution(runtime, created)
    assert (execution["status"], execution["log"]) == ("done", "it works\n")


def test_a_cron_jobs_second_execution(runtime):
    created = post(runtime, {"image": "ubuntu", "command": "echo 'it works'", "cron": "* * * * *"})
    try:
        execution = nth_execution(runtime, created, count=2, timeout=60)
        assert (execution["status"], execution["exitCode"], execution["log"]) == ("done", 0, "it works\n")
    finally:
        runtime.post(runtime.path(created["jobUrl"]) + "/stop")


def test_put_before_the_start_runs_the_updated_job(runtime):
    created = post(runtime, {"image": "ubuntu", "command": "echo 'it works'", "startAt": int(time.time()) + 5000})
    answer = runtime.put(runtime.path(created["jobUrl"]) + "/", {"image": "ubuntu", "command": "echo 'it was updated'",
                                                                 "startAt": int(time.time()) + 2})
    assert answer.status_code == 200, answer.text
    execution = nth_execution(runtime, created)
    assert (execution["status"], execution["log"]) == ("done", "it was updated\n")


def test_the_platforms_reason_follows_stderr_and_has_its_own_key(runtime):
    created = post(runtime, {"image": "ubuntu", "command": "bash -c 'echo partial >&2; sleep 30'", "timeout": 1})
    execution = runtime.wait_for_execution(created["executionUrl"], FINAL, timeout=30)
    assert execution["status"] == "timedout"
    assert "timeout of 1 s" in execution["reason"]
    assert execution["error"].startswith("partial\n") and execution["error"].endswith(execution["reason"])


def test_long_output_is_its_tail_flagged_with_links_to_the_whole(runtime):
    created = post(runtime, {"image": "ubuntu", "command": "bash -c 'for i in $(seq 1 20000); do echo line $i; done'"})
    execution = runtime.wait_for_execution(created["executionUrl"], FINAL, timeout=60)
    limit = execution["outputLimitBytes"]
    assert execution["logTruncated"] is True and len(execution["log"].encode()) <= limit
    assert execution["log"].endswith("line 20000\n")
    whole = runtime.get(runtime.path(execution["stdoutUrl"])).text
    assert whole.startswith("line 1\n") and whole.endswith(execution["log"])


def test_job_details_stay_light(runtime):
    created = post(runtime, {"image": "ubuntu", "command": "echo 'it works'"})
    runtime.wait_for_execution(created["executionUrl"], FINAL)
    listed = runtime.get(runtime.path(created["jobUrl"])).json()["job"]["executions"][0]
    assert listed["log"] is None and listed["stdoutUrl"].endswith("/stdout")
