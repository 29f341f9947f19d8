"""The local runtime's HTTP fronts (infra/local/fronts.py): processes of their own that serve the
API on the runtime's one port beside its engine. What a front does that the engine must act on
reaches it (a posted job, a schedule put, a stop), a front that dies is started again, and the
fronts go with the engine, however it ends."""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.system.conftest import Runtime, start_runtime, stop_runtime, wait_until
from tests.system.test_restart import carrying

pytestmark = pytest.mark.system
FINAL = {"done", "failed", "timedout", "expired", "stopped"}


def fronts(runtime: Runtime) -> set[int]:
    """The pids of the engine's front processes."""
    found = subprocess.run(["pgrep", "-P", str(runtime.process.pid), "-f", "infra.local.fronts"],
                           capture_output=True, text=True, check=False)
    return {int(pid) for pid in found.stdout.split()}


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def counters(runtime: Runtime) -> dict[str, int]:
    match = re.search(r"websocket management API at (\S+)\)", runtime.log.read_text())
    assert match, "the runtime did not announce its management API"
    return requests.get(match.group(1) + "/_local/calls", timeout=5).json()


def post(runtime: Runtime, task: str, body: dict) -> dict:
    response = runtime.post(f"/tasks/{task}", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def test_fronts_serve_every_client_and_the_engine_runs_what_they_post(tmp_path: Path) -> None:
    runtime = start_runtime(tmp_path, {"LOCAL_HTTP_PROCESSES": "2"})
    try:
        assert len(fronts(runtime)) == 2
        assert "2 HTTP front process(es)" in runtime.log.read_text()
        with ThreadPoolExecutor(8) as clients:
            created = list(clients.map(lambda n: post(runtime, f"fronts-{n % 4}", {"image": "x", "command": "true"}),
                                       range(40)))
        for answer in created:
            assert runtime.wait_for_execution(answer["executionUrl"], FINAL)["status"] == "done"
        # The engine heard of each post from the front that stored it: it did not wait to look.
        assert counters(runtime)["FrontQueuedMessages"] >= 40
    finally:
        stop_runtime(runtime)


def test_a_schedule_and_a_stop_made_by_a_front_reach_the_engine(tmp_path: Path) -> None:
    runtime = start_runtime(tmp_path)
    try:
        post(runtime, "fronts-later", {"image": "x", "command": "true", "startIn": "1h"})
        assert counters(runtime)["FrontScheduleWakes"] >= 1
        running = post(runtime, "fronts-stop", {"image": "x", "command": "sleep 60"})
        runtime.wait_for_execution(running["executionUrl"], {"running"})
        entry = f"FASTLANE_EXECUTION_ID={running['executionId']}"
        wait_until(lambda: carrying(entry), timeout=15, what="the job's process")
        stopped = runtime.post(runtime.path(running["jobUrl"]) + "/stop")
        assert stopped.status_code == 200, stopped.text
        execution = runtime.wait_for_execution(running["executionUrl"], FINAL)
        assert execution["status"] == "stopped"
        assert counters(runtime)["FrontStopTasks"] >= 1
        # The engine's runner, which holds the processes, ended it.
        wait_until(lambda: not carrying(entry), timeout=15, what="the stopped job's process to end")
    finally:
        stop_runtime(runtime)


def test_a_front_that_dies_is_started_again(tmp_path: Path) -> None:
    runtime = start_runtime(tmp_path, {"LOCAL_HTTP_PROCESSES": "2"})
    try:
        before = fronts(runtime)
        victim = min(before)
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: len(fronts(runtime)) == 2 and victim not in fronts(runtime), timeout=20,
                   what="the front to be started again")
        assert counters(runtime)["FrontProcessStarts"] == 3
        # Every connection is served, whichever front takes it.
        for n in range(10):
            answer = post(runtime, "fronts-again", {"image": "x", "command": "true"})
            assert runtime.wait_for_execution(answer["executionUrl"], FINAL)["status"] == "done", n
    finally:
        stop_runtime(runtime)


def test_a_front_killed_while_clients_post_loses_no_accepted_job_and_holds_no_lock(tmp_path: Path) -> None:
    runtime = start_runtime(tmp_path, {"LOCAL_HTTP_PROCESSES": "2"})
    try:
        accepted: list[dict] = []
        refused: list[str] = []
        killed = threading.Event()

        def client(n: int) -> None:
            session = requests.Session()
            for k in range(30):
                if k == 10 and n == 0:
                    os.kill(min(fronts(runtime)), signal.SIGKILL)  # mid-burst: some of its posts are cut
                    killed.set()
                try:
                    answer = session.post(f"{runtime.url}/tasks/fronts-crash-{n}", timeout=10,
                                          json={"image": "x", "command": "true"})
                except requests.ConnectionError as error:
                    refused.append(str(error))  # the connection the killed front held: the client asks again
                    session = requests.Session()
                    continue
                assert answer.status_code == 200, answer.text
                accepted.append(answer.json())

        with ThreadPoolExecutor(8) as clients:
            list(clients.map(client, range(8)))
        assert killed.is_set() and len(accepted) + len(refused) == 240
        # Every post answered 200 was stored and runs; the killed front held no lock the others wait for.
        for answer in accepted:
            assert runtime.wait_for_execution(answer["executionUrl"], FINAL)["status"] == "done"
        after = post(runtime, "fronts-crash-after", {"image": "x", "command": "true"})
        assert runtime.wait_for_execution(after["executionUrl"], FINAL)["status"] == "done"
    finally:
        stop_runtime(runtime)


@pytest.mark.parametrize("ending", ["stopped", "killed"])
def test_the_fronts_go_with_the_engine_and_free_the_port(tmp_path: Path, ending: str) -> None:
    runtime = start_runtime(tmp_path, {"LOCAL_HTTP_PROCESSES": "2"})
    pids = fronts(runtime)
    assert len(pids) == 2
    if ending == "killed":
        runtime.process.kill()  # nothing cleaned up by the engine: each front sees its socket end
        runtime.process.wait(timeout=10)
    else:
        runtime.process.send_signal(signal.SIGINT)  # Ctrl-C
        runtime.process.wait(timeout=15)
    stop_runtime(runtime)
    wait_until(lambda: not any(alive(pid) for pid in pids), timeout=10, what="the fronts to exit")
    port = int(runtime.url.rsplit(":", 1)[1])
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))  # nobody listens on the API's port any more


def test_a_bad_number_of_fronts_is_refused_before_anything_listens(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="LOCAL_HTTP_PROCESSES must be a whole number"):
        start_runtime(tmp_path, {"LOCAL_HTTP_PROCESSES": "many"})
