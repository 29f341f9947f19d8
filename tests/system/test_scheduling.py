"""Scheduling acceptance over HTTP against the local runtime. Cron schedules fire every 3 s here
(LOCAL_CRON_TICK_SECONDS, a setting of the local Scheduler stand-in only: the app's path for a
tick is the same as for a real one)."""
from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.system.conftest import Runtime, running_runtime, wait_until

pytestmark = pytest.mark.system
FINAL = {"done", "failed", "timedout", "expired", "stopped"}
TICK = 3.0


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    with running_runtime(tmp_path_factory.mktemp("scheduling"), {"LOCAL_CRON_TICK_SECONDS": str(TICK)}) as rt:
        yield rt


def executions(runtime: Runtime, created: dict) -> list[dict]:
    return runtime.get(runtime.path(created["jobUrl"])).json()["job"]["executions"]


def first_execution(runtime: Runtime, created: dict, timeout: float = 20) -> dict:
    found = wait_until(lambda: executions(runtime, created), timeout=timeout, what="an execution")
    return runtime.wait_for_execution(found[-1]["url"], FINAL)


def test_start_at_now_runs(runtime):
    created = runtime.post("/tasks/sched", {"image": "ubuntu", "command": "echo now", "startAt": time.time()}).json()
    assert created["executionId"] is None
    assert first_execution(runtime, created)["status"] == "done"


def test_start_in_one_second_starts_on_time(runtime):
    requested = time.time()
    created = runtime.post("/tasks/sched", {"image": "ubuntu", "command": "true", "startIn": "1s"}).json()
    execution = first_execution(runtime, created)
    assert execution["status"] == "done"
    assert abs(execution["startedAt"] - (requested + 1)) <= 1.0


def test_a_cron_job_runs_on_every_tick(runtime):
    started = time.time()
    created = runtime.post("/tasks/sched-cron", {"image": "ubuntu", "command": "echo tick", "cron": "* * * * *"}).json()
    wait_until(lambda: len(executions(runtime, created)) >= 2, timeout=150, interval=0.5, what="two ticks")
    assert time.time() - started < 150
    job = runtime.get(runtime.path(created["jobUrl"])).json()["job"]
    assert job["schedule"]["pending"] is True and job["schedule"]["nextRunAt"] > started
    runtime.post(runtime.path(created["jobUrl"]) + "/stop")


def test_put_replaces_a_far_schedule(runtime):
    created = runtime.post("/tasks/sched-put", {"image": "ubuntu", "command": "echo old",
                                                "startAt": time.time() + 86400}).json()
    runtime.put(runtime.path(created["jobUrl"]), {"image": "ubuntu", "command": "echo new",
                                                  "startAt": time.time() + 2})
    execution = first_execution(runtime, created)
    assert (execution["status"], execution["command"]) == ("done", "echo new")
    stdout = runtime.get(runtime.path(execution["url"]) + "/stdout").text
    assert stdout == "new\n"
    assert len(executions(runtime, created)) == 1


def test_a_stopped_cron_job_runs_no_more(runtime):
    created = runtime.post("/tasks/sched-stop", {"image": "ubuntu", "command": "echo tick", "cron": "* * * * *"}).json()
    first_execution(runtime, created, timeout=30)
    assert runtime.post(runtime.path(created["jobUrl"]) + "/stop").status_code == 200
    count = len(executions(runtime, created))
    deadline = time.time() + 2 * TICK + 1
    while time.time() < deadline:  # two more ticks pass: nothing new may appear
        assert len(executions(runtime, created)) == count
        time.sleep(0.5)
    assert runtime.get(runtime.path(created["jobUrl"])).json()["job"]["schedule"]["pending"] is False


def test_a_paused_cron_job_runs_nothing_until_resumed(runtime):
    created = runtime.post("/tasks/sched-pause", {"image": "ubuntu", "command": "echo tick",
                                                  "cron": "* * * * *"}).json()
    url = runtime.path(created["jobUrl"])
    wait_until(lambda: len(executions(runtime, created)) >= 1, timeout=30, interval=0.5, what="a first tick")

    paused = runtime.post(url + "/pause").json()["schedule"]
    seen = len(executions(runtime, created))
    time.sleep(3 * TICK)

    assert paused["paused"] is True and paused["nextRuns"] == []
    assert len(executions(runtime, created)) == seen
    resumed = runtime.post(url + "/resume").json()["schedule"]
    assert resumed["paused"] is False and len(resumed["nextRuns"]) == 5
    wait_until(lambda: len(executions(runtime, created)) > seen, timeout=30, interval=0.5, what="a tick after resume")
    runtime.post(url + "/stop")


def test_run_now_runs_a_scheduled_job_at_once_and_keeps_its_schedule(runtime):
    created = runtime.post("/tasks/sched-now", {"image": "ubuntu", "command": "echo now",
                                                "startAt": time.time() + 86400}).json()
    ran = runtime.post(runtime.path(created["jobUrl"]) + "/retry").json()

    assert runtime.wait_for_execution(ran["executionUrl"], FINAL)["status"] == "done"
    job = runtime.get(runtime.path(created["jobUrl"])).json()["job"]
    assert job["schedule"]["pending"] is True and job["executions"][0]["metadata"] == {"runNow": True}


def test_pause_of_a_job_without_a_schedule_is_a_409_naming_it(runtime):
    created = runtime.post("/tasks/sched-409", {"image": "ubuntu", "command": "true"}).json()

    refused = runtime.post(runtime.path(created["jobUrl"]) + "/pause")

    assert refused.status_code == 409 and created["jobId"] in refused.json()["error"]


def test_overlap_buffer_runs_a_waiting_tick_after_the_previous_execution_ends(runtime):
    created = runtime.post("/tasks/sched-buffer", {"image": "ubuntu", "command": "sleep 8", "cron": "* * * * *",
                                                   "overlap": "buffer"}).json()
    url = runtime.path(created["jobUrl"])

    waited = wait_until(lambda: [e for e in executions(runtime, created) if "bufferedAt" in e["metadata"]],
                        timeout=60, interval=0.5, what="a tick that waited")
    runtime.post(url + "/stop")

    ran = sorted(executions(runtime, created), key=lambda e: e["createdAt"])
    later = next(e for e in ran if e["executionId"] == waited[0]["executionId"])
    earlier = [e for e in ran if e["createdAt"] < later["createdAt"]]
    assert all(e["finishedAt"] is not None and e["finishedAt"] <= later["createdAt"] + 1 for e in earlier)
    assert runtime.get(url).json()["job"]["schedule"]["skippedTicks"] >= 1  # a second tick could not wait too
