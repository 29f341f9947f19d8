"""A mixed workload on the running local runtime, as clients see it: successes, retries,
timeouts, stops and expirations posted at once settle with every status right, no pool slot held
and no process left; and the same after a `kill -9` of the whole runtime in the middle of it and
a start on the same state file."""
from __future__ import annotations

import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.system.conftest import POOLS, Runtime, start_runtime, stop_runtime, wait_until

pytestmark = pytest.mark.system
FINAL = {"done", "failed", "timedout", "expired", "stopped"}
ENV = {"POOLS": POOLS, "RETRY_BACKOFF_MIN": "0.2", "RECONCILE_INTERVAL": "1", "RECONCILE_GRACE_SECONDS": "5",
       "MISSING_GRACE_SECONDS": "2"}


def marker(kind: str, index: int, run: str) -> str:
    """A sleep length no other process on the machine has: the job's process is found by it."""
    return f"{30 + index}.{run}{'0123456789'[len(kind) % 10]}"


def workload(run: str) -> list[tuple[str, str, dict]]:
    """(kind, task, body): what each job is expected to become is its kind."""
    jobs: list[tuple[str, str, dict]] = []
    for i in range(4):
        jobs.append(("done", "mixed", {"image": "ubuntu", "command": f"echo ok-{i}"}))
        jobs.append(("retried", "mixed", {"image": "ubuntu", "command": "sh -c 'exit 3'", "retries": 2}))
        jobs.append(("timedout", "mixed", {"image": "ubuntu", "command": f"sleep {marker('timedout', i, run)}",
                                           "timeout": 1}))
        jobs.append(("stopped", "limited-mixed", {"image": "ubuntu", "command": f"sleep {marker('stopped', i, run)}"}))
        jobs.append(("expired", "mixed", {"image": "ubuntu", "command": "echo never", "startIn": "2s",
                                          "expiration": time.time() + 1}))
    return jobs


def post_all(runtime: Runtime, jobs: list[tuple[str, str, dict]]) -> list[tuple[str, dict]]:
    def post(job: tuple[str, str, dict]) -> tuple[str, dict]:
        kind, task, body = job
        response = runtime.post(f"/tasks/{task}", body)
        assert response.status_code == 200, response.text
        return kind, response.json()

    with ThreadPoolExecutor(8) as clients:
        return list(clients.map(post, jobs))


def job_of(runtime: Runtime, created: dict) -> dict:
    return runtime.get(urlsplit(created["jobUrl"]).path).json()["job"]


def settled(runtime: Runtime, accepted: list[tuple[str, dict]], timeout: float = 60) -> dict[str, dict]:
    """Every accepted job's executions final (retries included), as a client polls for them."""
    def all_final() -> dict[str, dict] | None:
        jobs = {created["jobId"]: job_of(runtime, created) for _, created in accepted}
        for (kind, _), job in zip(accepted, jobs.values(), strict=True):
            statuses = [e["status"] for e in job["executions"]]
            if not statuses or any(s not in FINAL for s in statuses):
                return None
            if kind == "retried" and len(statuses) < 3 and "done" not in statuses and statuses.count("failed") < 3:
                return None
        return jobs

    return wait_until(all_final, timeout=timeout, interval=0.3, what="every job to settle")


def processes_left(run: str) -> list[str]:
    found = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout.splitlines()
    return [line for line in found if f".{run}" in line and "sleep" in line]


def no_slot_held(runtime: Runtime) -> bool:
    return all(pool["running"] == 0 for pool in runtime.get("/status").json()["pools"])


def test_a_mixed_workload_settles_with_every_status_right(tmp_path: Path) -> None:
    run = str(int(time.time() * 1000) % 100000)
    runtime = start_runtime(tmp_path, ENV)
    try:
        accepted = post_all(runtime, workload(run))
        for kind, created in accepted:
            if kind == "stopped":
                stop = runtime.post(urlsplit(created["jobUrl"]).path + "/stop")
                assert stop.status_code == 200, stop.text
        jobs = settled(runtime, accepted)
        for kind, created in accepted:
            job = jobs[created["jobId"]]
            statuses = sorted(e["status"] for e in job["executions"])
            expected = {"done": ["done"], "retried": ["failed"] * 3, "timedout": ["timedout"],
                        "stopped": ["stopped"], "expired": ["expired"]}[kind]
            if kind == "stopped" and statuses == ["done"]:
                pytest.fail("a stopped job's sleep ended by itself")
            assert statuses == expected, (kind, job["executions"])
        wait_until(lambda: no_slot_held(runtime), timeout=20, what="every pool slot to be given back")
        wait_until(lambda: not processes_left(run), timeout=20, what="no job process to be left")
        counts = runtime.get("/status").json()["executions"]
        assert counts["enqueued"] == counts["pulling"] == counts["running"] == 0
        assert counts["failed"] == 12 and counts["done"] == 4 and counts["stopped"] == 4
    finally:
        stop_runtime(runtime)
    assert not processes_left(run)


def test_a_kill_9_in_the_middle_of_a_workload_then_a_start_converges(tmp_path: Path) -> None:
    run = str(int(time.time() * 1000) % 100000 + 1)
    state = tmp_path / "state" / "local.db"
    first = start_runtime(tmp_path, ENV, state=state, log_name="first.log")
    try:
        accepted = post_all(first, workload(run))
        stoppers = [created for kind, created in accepted if kind == "stopped"]
        for created in stoppers[:2]:  # two stopped before the kill, two after
            assert first.post(urlsplit(created["jobUrl"]).path + "/stop").status_code == 200
        wait_until(lambda: any(e["status"] in {"running", "failed"}
                               for _, c in accepted for e in job_of(first, c)["executions"]),
                   timeout=20, what="the workload to be under way")
    finally:
        first.process.kill()  # kill -9: nothing cleaned up
        first.process.wait(timeout=10)

    second = start_runtime(tmp_path, ENV, state=state, log_name="second.log")
    try:
        for created in stoppers[2:]:
            assert second.post(urlsplit(created["jobUrl"]).path + "/stop").status_code == 200
        jobs = settled(second, accepted)
        assert len(jobs) == len(accepted)  # every accepted job is there
        for kind, created in accepted:
            executions = jobs[created["jobId"]]["executions"]
            statuses = [e["status"] for e in executions]
            assert all(s in FINAL for s in statuses), (kind, executions)
            if kind == "done":
                assert "done" in statuses or statuses[-1] == "failed", executions  # may have been cut by the kill
            if kind == "retried":
                assert len(statuses) == 3 and set(statuses) == {"failed"}, executions  # retries honoured, no more
            if kind == "stopped":
                assert statuses[-1] in {"stopped", "failed"}, executions
        wait_until(lambda: no_slot_held(second), timeout=20, what="every pool slot to be given back")
        wait_until(lambda: not processes_left(run), timeout=20, what="no job process to be left")
    finally:
        stop_runtime(second)
    assert not processes_left(run)
