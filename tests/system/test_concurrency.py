"""Many clients at once against the local runtime: 32 clients connecting and posting at the same
moment get no connection reset and no server error, and every job accepted is stored and runs."""
from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.system.conftest import Runtime, running_runtime, wait_until

pytestmark = pytest.mark.system
CLIENTS = 32
POSTS_EACH = 4


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    with running_runtime(tmp_path_factory.mktemp("concurrency")) as rt:
        yield rt


def test_32_clients_posting_at_once_are_all_answered_and_every_accepted_job_runs(runtime: Runtime) -> None:
    start = threading.Barrier(CLIENTS)
    answers: list[tuple[int | str, Any]] = []
    lock = threading.Lock()

    def client(n: int) -> None:
        start.wait()
        for i in range(POSTS_EACH):
            try:
                # A new connection each time (no session): the connects of 32 clients come together.
                response = requests.post(f"{runtime.url}/tasks/burst", json={
                    "image": "ubuntu", "command": f"echo client {n} post {i}"}, timeout=60)
                answer: tuple[int | str, Any] = (response.status_code, response.json())
            except requests.ConnectionError as error:
                answer = ("connection error", str(error))
            with lock:
                answers.append(answer)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)

    assert len(answers) == CLIENTS * POSTS_EACH
    assert [a for a in answers if a[0] != 200] == []
    created = [body for _, body in answers]
    assert len({c["jobId"] for c in created}) == len(created)
    task = runtime.get("/tasks/burst").json()
    assert task["total"] == len(created)

    def all_done() -> bool:
        statuses = [runtime.get(runtime.path(c["executionUrl"])).json()["execution"]["status"] for c in created]
        return all(status == "done" for status in statuses)

    wait_until(all_done, timeout=90, interval=0.5, what="every accepted job to run")
    status = runtime.get("/status").json()
    assert status["executions"]["done"] == len(created) and status["executions"]["running"] == 0
    assert status["jobs"] == len(created)
