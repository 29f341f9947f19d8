"""Task list, task, job and execution details: shapes, pagination, redaction and 404s."""
from __future__ import annotations

import uuid

JOB = {"image": "ubuntu", "command": "true"}


def test_task_list_pages_across_boundaries(api):
    for i in range(25):
        assert api.post(f"/tasks/task-{i:02d}", JOB).status_code == 200
    first = api.get("/tasks").json
    assert [t["taskId"] for t in first["items"]] == [f"task-{i:02d}" for i in range(10)]
    assert (first["total"], first["pages"], first["perPage"], first["hasNext"], first["hasPrev"]) == (25, 3, 10, True, False)
    assert first["nextUrl"] == "http://fastlane.test/tasks?page=2" and first["prevUrl"] is None
    third = api.get("/tasks?page=3").json
    assert [t["taskId"] for t in third["items"]] == [f"task-{i:02d}" for i in range(20, 25)]
    assert (third["hasNext"], third["hasPrev"], third["nextUrl"]) == (False, True, None)
    assert third["prevUrl"] == "http://fastlane.test/tasks?page=2"
    item = third["items"][0]
    assert set(item) == {"taskId", "createdAt", "lastModifiedAt", "jobsCount", "url"}
    assert item["jobsCount"] == 1 and item["url"] == "http://fastlane.test/tasks/task-20"


def test_bad_pages(api):
    assert api.get("/tasks?page=0").status_code == 400
    assert api.get("/tasks?page=abc").json["field"] == "page"
    assert api.get("/tasks?page=1").status_code == 200  # page 1 of nothing is empty, not 404
    api.post("/tasks/t", JOB)
    missing = api.get("/tasks?page=2")
    assert missing.status_code == 404 and missing.json["operation"] == "get_tasks"


def test_task_details_pages_its_jobs(api):
    ids = [api.post("/tasks/t", JOB).json["jobId"] for _ in range(12)]
    first = api.get("/tasks/t").json
    assert [j["id"] for j in first["jobs"]] == ids[:10]
    assert first["nextUrl"] == "http://fastlane.test/tasks/t?page=2"
    second = api.get("/tasks/t?page=2").json
    assert [j["id"] for j in second["jobs"]] == ids[10:]
    assert set(second["jobs"][0]) == {"id", "createdAt", "url"}
    assert api.get("/tasks/t?page=3").status_code == 404


def test_job_details_show_newest_executions_first_and_page_them(api):
    job_id = str(uuid.uuid4())
    executions = [api.put(f"/tasks/t/jobs/{job_id}", JOB).json["executionId"] for _ in range(12)]
    details = api.get(f"/tasks/t/jobs/{job_id}").json
    assert [e["executionId"] for e in details["job"]["executions"]] == executions[::-1][:10]
    assert details["total"] == 12 and details["hasNext"] is True
    assert details["nextUrl"] == f"http://fastlane.test/tasks/t/jobs/{job_id}?page=2"
    older = api.get(f"/tasks/t/jobs/{job_id}?page=2").json
    assert [e["executionId"] for e in older["job"]["executions"]] == executions[1::-1]


def test_job_details_shape_and_redaction(api):
    payload = {**JOB, "envs": {"DB_PASSWORD": "hunter2", "MODE": "fast"}, "metadata": {"user": "ana"},
               "retries": 3, "timeout": 60, "notify": {"fails": ["ops@example.com"]}}
    job_id = api.post("/tasks/t", payload).json["jobId"]
    body = api.get(f"/tasks/t/jobs/{job_id}").json
    assert body["task"] == {"id": "t", "url": "http://fastlane.test/tasks/t"}
    job = body["job"]
    assert {"createdAt", "lastModifiedAt", "image", "command", "taskId", "scheduled", "executionCount",
            "requestIPAddress", "metadata", "executions"} <= set(job)
    metadata = job["metadata"]
    assert metadata["envs"] == {"DB_PASSWORD": "***", "MODE": "fast"}
    assert metadata["custom"] == {"user": "ana"}
    assert (metadata["retries"], metadata["retry_count"], metadata["timeout"]) == (3, 0, 60)
    assert metadata["notify"] == {"fails": ["ops@example.com"]}
    assert "hunter2" not in str(body)


def test_execution_details_shape(api):
    created = api.post("/tasks/t", JOB).json
    body = api.get(f"/tasks/t/jobs/{created['jobId']}/executions/{created['executionId']}").json
    assert body["task"]["id"] == "t" and body["job"]["id"] == created["jobId"]
    assert body["execution"]["url"] == created["executionUrl"]
    assert set(body["execution"]) == {"executionId", "createdAt", "startedAt", "finishedAt", "image", "command",
                                      "status", "exitCode", "requestIPAddress", "metadata", "log", "error", "notifications", "url",
                                      "reason", "logTruncated", "errorTruncated", "outputLimitBytes", "outputError",
                                      "stdoutUrl", "stderrUrl", "waitingFor", "concurrency", "timeline"}
    assert body["execution"]["timeline"] == [{"at": body["execution"]["createdAt"], "status": "accepted",
                                              "reason": "posted"}]


def test_unknown_things_are_404_with_the_operation(api):
    created = api.post("/tasks/t", JOB).json
    assert api.get("/tasks/nope").json["operation"] == "get_task"
    assert api.get(f"/tasks/nope/jobs/{created['jobId']}").status_code == 404
    assert api.get("/tasks/t/jobs/not-a-uuid").status_code == 404
    assert api.get(f"/tasks/t/jobs/{uuid.uuid4()}").json["operation"] == "get_job"
    missing = api.get(f"/tasks/t/jobs/{created['jobId']}/executions/{uuid.uuid4()}")
    assert missing.status_code == 404 and missing.json["field"] == "executionId"


def test_trailing_slashes_answer_the_same(api):
    created = api.post("/tasks/t/", JOB).json
    assert api.get("/tasks/").json["total"] == 1
    assert api.get("/tasks/t/").json["taskId"] == "t"
    assert api.get(f"/tasks/t/jobs/{created['jobId']}/").status_code == 200


def test_public_base_url_overrides_the_host(api, monkeypatch):
    from chalicelib import wiring

    monkeypatch.setenv("PUBLIC_BASE_URL", "https://jobs.example.com/")
    wiring.reset()
    assert api.post("/tasks/t", JOB).json["taskUrl"] == "https://jobs.example.com/tasks/t"


def test_forwarded_proto_is_honoured(api):
    body = api.post("/tasks/t", JOB, headers={"x-forwarded-proto": "https"}).json
    assert body["taskUrl"].startswith("https://fastlane.test/")


def test_job_details_read_no_output(api, monkeypatch):
    from chalicelib import wiring

    created = api.post("/tasks/t", JOB).json

    class NoReads:
        def read(self, *args):
            raise AssertionError("job details read output")

    import functools

    monkeypatch.setattr(wiring, "get_output_reader", functools.lru_cache(maxsize=1)(lambda: NoReads()))
    execution = api.get(f"/tasks/t/jobs/{created['jobId']}").json["job"]["executions"][0]
    assert execution["log"] is None and execution["stdoutUrl"].endswith(f"{created['executionId']}/stdout")


def test_every_route_checks_the_task_id(api):
    from app import app

    job, execution = "5a023792-1445-44e9-8a8b-cfe5ad05d1c6", "6b023792-1445-44e9-8a8b-cfe5ad05d1c6"
    for path, methods in app.routes.items():
        if "{task_id}" not in path:
            continue
        for bad in ("..", ".", "x" * 256, "sp ace"):
            url = path.replace("{task_id}", bad).replace("{job_id}", job).replace("{execution_id}", execution)
            for method in methods:
                answer = api.request(method, url, JOB if method in ("POST", "PUT") else None)
                assert answer.status_code == 400 and answer.json["field"] == "taskId", (method, url, answer.body)


def test_every_route_finds_nothing_for_ids_that_are_not_uuids(api):
    from app import app

    api.post("/tasks/t", JOB)
    for path, methods in app.routes.items():
        if "{job_id}" not in path:
            continue
        url = path.replace("{task_id}", "t").replace("{job_id}", "x" * 2000).replace("{execution_id}", "..")
        for method in methods:
            answer = api.request(method, url, JOB if method in ("POST", "PUT") else None)
            assert answer.status_code in (400, 404) and answer.json["field"] == "jobId", (method, url)
