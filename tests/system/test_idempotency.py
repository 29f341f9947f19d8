"""Idempotency-Key against the running local runtime, over real HTTP: a repeated request gets the
first answer and runs nothing; requests sent together with one key make one job; the answer is
still there after a restart on the same state file; and the runtime's aws mode keeps keys too."""
from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from tests.system.conftest import Runtime, running_runtime, start_runtime, stop_runtime

pytestmark = pytest.mark.system
JOB = {"image": "ubuntu", "command": "echo once"}


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    with running_runtime(tmp_path_factory.mktemp("idempotency")) as rt:
        yield rt


def key() -> dict[str, str]:
    return {"Idempotency-Key": str(uuid.uuid4())}


def task() -> str:
    return f"idem-{uuid.uuid4().hex[:12]}"  # each test its own task, on the module's runtime


def jobs_of(runtime: Runtime, task_id: str) -> list[dict[str, Any]]:
    found = runtime.get(f"/tasks/{task_id}")
    return found.json()["jobs"] if found.status_code == 200 else []


def test_the_same_key_twice_gets_the_first_answer_and_runs_one_execution(runtime: Runtime) -> None:
    task_id, headers = task(), key()
    first = runtime.post(f"/tasks/{task_id}", JOB, headers=headers)
    again = runtime.post(f"/tasks/{task_id}", JOB, headers=headers)

    assert first.status_code == again.status_code == 200
    assert again.content == first.content and again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    runtime.wait_for_execution(first.json()["executionUrl"], {"done"})
    (job,) = jobs_of(runtime, task_id)
    assert runtime.get(urlsplit(job["url"]).path).json()["job"]["executionCount"] == 1


def test_the_same_key_with_another_body_is_409_naming_the_header(runtime: Runtime) -> None:
    task_id, headers = task(), key()
    runtime.post(f"/tasks/{task_id}", JOB, headers=headers)
    other = runtime.post(f"/tasks/{task_id}", {**JOB, "command": "echo twice"}, headers=headers)

    assert other.status_code == 409
    assert other.json()["field"] == "Idempotency-Key" and "another body" in other.json()["error"]
    assert len(jobs_of(runtime, task_id)) == 1


def test_a_bad_key_is_400_naming_the_header_and_creates_nothing(runtime: Runtime) -> None:
    task_id = task()
    refused = runtime.post(f"/tasks/{task_id}", JOB, headers={"Idempotency-Key": "x" * 256})

    assert refused.status_code == 400 and refused.json()["field"] == "Idempotency-Key"
    assert runtime.get(f"/tasks/{task_id}").status_code == 404


def test_requests_sent_together_with_one_key_create_one_job(runtime: Runtime) -> None:
    task_id, headers, clients = task(), key(), 16
    start = threading.Barrier(clients)
    answers: list[requests.Response] = []
    lock = threading.Lock()

    def client() -> None:
        start.wait()
        response = requests.post(f"{runtime.url}/tasks/{task_id}", json=JOB, headers=headers, timeout=60)
        with lock:
            answers.append(response)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)

    assert len(answers) == clients
    assert {a.status_code for a in answers} <= {200, 409}
    created = {a.json()["jobId"] for a in answers if a.status_code == 200}
    busy = [a.json() for a in answers if a.status_code == 409]
    assert len(created) == 1, "the answers name more than one job"
    assert all("in progress" in b["error"] and b["field"] == "Idempotency-Key" for b in busy)
    assert [job["id"] for job in jobs_of(runtime, task_id)] == list(created)
    assert runtime.post(f"/tasks/{task_id}", JOB, headers=headers).json()["jobId"] in created


def test_a_kept_answer_is_replayed_after_a_restart_on_the_same_state_file(tmp_path: Path) -> None:
    state, headers = tmp_path / "state" / "local.db", key()
    first = start_runtime(tmp_path, state=state, log_name="first.log")
    try:
        answered = first.put(f"/tasks/kept/jobs/{uuid.uuid4()}", JOB, headers=headers)
        assert answered.status_code == 200
    finally:
        stop_runtime(first)

    second = start_runtime(tmp_path, state=state, log_name="second.log")
    try:
        job_path = urlsplit(answered.json()["jobUrl"]).path
        again = second.put(job_path, JOB, headers=headers)
        assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
        assert again.content == answered.content  # its URLs name the first runtime, as the first answer did
        assert second.get(job_path).json()["job"]["executionCount"] == 1
    finally:
        stop_runtime(second)


def test_the_aws_mode_of_the_runtime_keeps_keys_in_its_table(tmp_path: Path) -> None:
    """The runtime's aws backend (moto's server) provisions the idempotency table as AWS would have it."""
    with running_runtime(tmp_path, backend="aws") as aws:
        headers = key()
        first = aws.post("/tasks/on-aws", JOB, headers=headers)
        again = aws.post("/tasks/on-aws", JOB, headers=headers)
        other = aws.post("/tasks/on-aws", {**JOB, "command": "echo twice"}, headers=headers)

        assert first.status_code == again.status_code == 200 and again.content == first.content
        assert again.headers["Idempotent-Replayed"] == "true" and other.status_code == 409
        assert len(jobs_of(aws, "on-aws")) == 1
