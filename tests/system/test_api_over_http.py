"""A client's first minutes with the service, over real HTTP against the local runtime."""
from __future__ import annotations

import uuid

import pytest

pytestmark = pytest.mark.system


def test_enqueue_and_read_back(runtime):
    created = runtime.post("/tasks/system-demo", {"image": "ubuntu", "command": "echo 'it works'",
                                                  "envs": {"API_SECRET": "s"}, "metadata": {"who": "ci"}})
    assert created.status_code == 200, created.text
    body = created.json()
    assert body["taskUrl"] == f"{runtime.url}/tasks/system-demo"

    job = runtime.get(body["jobUrl"].replace(runtime.url, "")).json()["job"]
    assert job["command"] == "echo 'it works'"
    assert job["metadata"]["envs"] == {"API_SECRET": "***"}
    assert job["metadata"]["custom"] == {"who": "ci"}
    assert job["requestIPAddress"] == "127.0.0.1"

    execution = runtime.get(body["executionUrl"].replace(runtime.url, "")).json()["execution"]
    assert execution["executionId"] == body["executionId"]

    tasks = runtime.get("/tasks/").json()
    assert "system-demo" in [t["taskId"] for t in tasks["items"]]


def test_put_then_get_with_trailing_slash(runtime):
    job_id = str(uuid.uuid4())
    assert runtime.put(f"/tasks/system-put/jobs/{job_id}/", {"image": "alpine", "command": "date"}).status_code == 200
    details = runtime.get(f"/tasks/system-put/jobs/{job_id}/")
    assert details.status_code == 200 and details.json()["job"]["image"] == "alpine"


def test_errors_over_http_are_json(runtime):
    bad = runtime.post("/tasks/x", data=b"{not json", headers={"Content-Type": "application/json"})
    assert bad.status_code == 400
    assert bad.headers["Content-Type"] == "application/json"
    assert bad.json()["operation"] == "enqueue_job"
    assert runtime.get("/no/such/route").json()["operation"] == "route"
    assert runtime.get("/tasks?page=-1").status_code == 400


def test_healthcheck_over_http(runtime):
    response = runtime.get("/")
    assert response.status_code == 200 and response.json()["healthy"] is True


def test_status_says_which_backend_serves_and_how_jobs_are_isolated(runtime):
    status = runtime.get("/status").json()
    assert status["backend"] == "local"
    # bubblewrap where the machine has it (the Makefile installs it), plain processes otherwise
    assert status["isolation"].startswith("local processes")
