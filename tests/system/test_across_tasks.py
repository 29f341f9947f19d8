"""Executions across tasks over HTTP, on each backend: GET /executions by status, time and task
prefix, POST /executions/retry, and the task list filtered by prefix; with their 4xx answers."""
from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest

from tests.system.conftest import Runtime, running_runtime

pytestmark = pytest.mark.system
FINAL = {"done", "failed", "timedout", "expired", "stopped"}
PAGINATION = {"items", "total", "page", "pages", "perPage", "hasNext", "hasPrev", "nextUrl", "prevUrl", "totalCapped"}


@pytest.fixture(scope="module", params=["local", "aws"])
def runtime(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    with running_runtime(tmp_path_factory.mktemp(f"across-{request.param}"), {"PER_PAGE": "2"},
                         backend=request.param) as rt:
        yield rt


def ran(runtime: Runtime, task: str, command: str) -> dict:
    """A job run to its end: its enqueue answer, with its execution's final status."""
    created = runtime.post(f"/tasks/{task}", {"image": "ubuntu", "command": command})
    assert created.status_code == 200, created.text
    body = created.json()
    body["status"] = runtime.wait_for_execution(body["executionUrl"], FINAL)["status"]
    return body


def refused(response, field: str, status: int = 400) -> dict:  # noqa: ANN001 - a requests answer
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert body["field"] == field, body
    return body


def test_failed_executions_of_a_task_prefix_are_listed_newest_first_with_their_task_and_job(runtime: Runtime) -> None:
    prefix = f"nightly-{uuid.uuid4().hex[:8]}"
    failed = [ran(runtime, f"{prefix}-{n}", "false") for n in range(3)]
    done = ran(runtime, f"{prefix}-3", "true")
    ran(runtime, f"other-{prefix}", "false")
    assert [f["status"] for f in failed] + [done["status"]] == ["failed"] * 3 + ["done"]

    first = runtime.get(f"/executions?status=failed&task={prefix}")
    assert first.status_code == 200, first.text
    page = first.json()
    assert set(page) == PAGINATION
    assert (page["total"], page["pages"], page["perPage"], page["hasNext"], page["totalCapped"]) == (3, 2, 2, True, False)
    assert page["nextUrl"] == f"{runtime.url}/executions?status=failed&task={prefix}&page=2"
    second = runtime.get(runtime.path(page["nextUrl"])).json()
    listed = page["items"] + second["items"]
    assert [item["executionId"] for item in listed] == [f["executionId"] for f in reversed(failed)]
    item = listed[0]
    assert (item["taskId"], item["jobId"], item["status"]) == (failed[2]["taskId"], failed[2]["jobId"], "failed")
    assert (item["url"], item["jobUrl"], item["taskUrl"]) == (failed[2]["executionUrl"], failed[2]["jobUrl"],
                                                              failed[2]["taskUrl"])
    assert item["statusAt"] >= item["finishedAt"] - 1 and item["exitCode"] == 1

    both = runtime.get(f"/executions/?status=done,failed&task={prefix}&since={time.time() - 600:.3f}").json()
    assert both["total"] == 4 and both["items"][0]["executionId"] == done["executionId"]
    assert runtime.get(f"/executions?task={prefix}&since={time.time() + 1:.3f}").json()["total"] == 0


def test_bad_listing_parameters_are_400_naming_them(runtime: Runtime) -> None:
    refused(runtime.get("/executions?status=failed,sleeping"), "status")
    refused(runtime.get("/executions?since=yesterday"), "since")
    refused(runtime.get("/executions?since=-5"), "since")
    refused(runtime.get(f"/executions?since={time.time() + 3600:.0f}"), "since")
    refused(runtime.get("/executions?task=no%20spaces"), "task")
    refused(runtime.get(f"/executions?task={'t' * 256}"), "task")
    refused(runtime.get("/executions?page=0"), "page")
    deep = refused(runtime.get("/executions?page=5001"), "page")  # 2 a page: past the newest 10,000
    assert "since" in deep["error"]
    refused(runtime.get("/executions?status=failed&task=nothing-here&page=2"), "page", 404)
    assert runtime.get("/executions?status=failed&task=nothing-here").json()["items"] == []


def test_the_jobs_of_executions_are_retried_once_each_answering_every_id(runtime: Runtime) -> None:
    prefix = f"retried-{uuid.uuid4().hex[:8]}"
    first = ran(runtime, f"{prefix}-a", "false")
    again = runtime.post(runtime.path(first["jobUrl"]) + "/retry").json()  # a second execution of the same job
    runtime.wait_for_execution(again["executionUrl"], FINAL)
    other = ran(runtime, f"{prefix}-b", "true")
    unknown = str(uuid.uuid4())

    answer = runtime.post("/executions/retry", {"executions": [first["executionId"], unknown, other["executionId"],
                                                               again["executionId"]], "task": prefix})

    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert [(r["executionId"], r["status"]) for r in results] == [
        (first["executionId"], 200), (unknown, 404), (other["executionId"], 200), (again["executionId"], 200)]
    assert results[0]["retry"] == results[3]["retry"]  # one job: retried once, both ids share it
    assert (results[0]["taskId"], results[0]["jobId"]) == (first["taskId"], first["jobId"])
    assert results[1]["error"] and results[1]["taskId"] is None
    retried = results[0]["retry"]
    assert set(retried) == {"taskId", "jobId", "executionId", "executionUrl", "queueJobId", "jobUrl", "taskUrl"}
    assert retried["executionId"] not in (first["executionId"], again["executionId"])
    assert runtime.get(runtime.path(first["jobUrl"])).json()["job"]["executionCount"] == 3


def test_an_id_whose_job_cannot_be_retried_gets_what_the_jobs_retry_route_answers(runtime: Runtime) -> None:
    created = runtime.post(f"/tasks/busy-{uuid.uuid4().hex[:8]}", {"image": "ubuntu", "command": "sleep 30"}).json()
    try:
        runtime.wait_for_execution(created["executionUrl"], {"running"})
        single = runtime.post(runtime.path(created["jobUrl"]) + "/retry")

        result = runtime.post("/executions/retry", {"executions": [created["executionId"]]}).json()["results"][0]

        assert single.status_code == result["status"] == 409
        assert (result["error"], result["field"], result["operation"]) == (
            single.json()["error"], single.json()["field"], "retry_job")
        assert "retry" not in result
    finally:
        runtime.post(runtime.path(created["jobUrl"]) + "/stop")


def test_a_bulk_retry_is_checked_whole_before_anything_is_retried(runtime: Runtime) -> None:
    prefix = f"checked-{uuid.uuid4().hex[:8]}"
    mine = ran(runtime, f"{prefix}-a", "false")
    theirs = ran(runtime, f"elsewhere-{prefix}", "false")

    foreign = refused(runtime.post("/executions/retry", {"executions": [mine["executionId"], theirs["executionId"]],
                                                         "task": prefix}), "executions[1]")
    assert "nothing was retried" in foreign["error"]
    for created in (mine, theirs):
        assert runtime.get(runtime.path(created["jobUrl"])).json()["job"]["executionCount"] == 1

    refused(runtime.post("/executions/retry", {"executions": [str(uuid.uuid4())] * 101}), "executions")
    refused(runtime.post("/executions/retry", {"executions": []}), "executions")
    refused(runtime.post("/executions/retry", {"executions": mine["executionId"]}), "executions")
    refused(runtime.post("/executions/retry", {"executions": [mine["executionId"], "not-an-id"]}), "executions[1]")
    refused(runtime.post("/executions/retry", {"executions": [mine["executionId"]], "task": "bad task"}), "task")
    refused(runtime.post("/executions/retry/", data=b"[1, 2]", headers={"Content-Type": "application/json"}), "body")


def test_the_task_list_filters_by_prefix_by_id(runtime: Runtime) -> None:
    prefix = f"browse-{uuid.uuid4().hex[:8]}"
    for name in ("c", "a", "b"):
        assert runtime.post(f"/tasks/{prefix}:{name}", {"image": "ubuntu", "command": "true"}).status_code == 200
    runtime.post(f"/tasks/x{prefix}", {"image": "ubuntu", "command": "true"})

    page = runtime.get(f"/tasks/?prefix={prefix}:").json()

    assert [t["taskId"] for t in page["items"]] == [f"{prefix}:a", f"{prefix}:b"]
    assert (page["total"], page["pages"], page["totalCapped"]) == (3, 2, False)
    assert page["nextUrl"] == f"{runtime.url}/tasks?prefix={prefix}:&page=2"
    assert [t["taskId"] for t in runtime.get(runtime.path(page["nextUrl"])).json()["items"]] == [f"{prefix}:c"]
    refused(runtime.get("/tasks?prefix=%23pool:"), "prefix")
    refused(runtime.get(f"/tasks?prefix={prefix}&page=3"), "page", 404)
