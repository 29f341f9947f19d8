"""POST /tasks/{taskId} and PUT /tasks/{taskId}/jobs/{jobId} through the Chalice app on moto."""
from __future__ import annotations

import time
import uuid

import boto3
import pytest

from chalicelib.config import get_settings
from tests.conftest import REGION, queued_messages

JOB = {"image": "ubuntu", "command": "echo 'it works'"}


def test_enqueue_creates_task_job_and_execution_and_sends_one_launch(api, sqs, aws):
    response = api.post("/tasks/test-wrkng", JOB)
    assert response.status_code == 200
    body = response.json
    assert set(body) == {"taskId", "jobId", "executionId", "executionUrl", "queueJobId", "jobUrl", "taskUrl"}
    assert body["taskUrl"] == "http://fastlane.test/tasks/test-wrkng"
    assert body["jobUrl"] == f"http://fastlane.test/tasks/test-wrkng/jobs/{body['jobId']}"
    assert body["executionUrl"] == f"{body['jobUrl']}/executions/{body['executionId']}"
    # The launch carries what the execution froze, so the dispatcher reads nothing before it launches.
    assert queued_messages(sqs, aws["JOBS_QUEUE_URL"]) == [
        {"taskId": "test-wrkng", "jobId": body["jobId"], "executionId": body["executionId"],
         "execution": {"image": "ubuntu", "command": "echo 'it works'", "envs": {}, "notifies": False, "jobRetries": 0,
                       "createdAt": pytest.approx(time.time(), abs=60), "requestIp": "127.0.0.1",
                       "placement": {"cluster": get_settings().ecs_cluster, "cpu": "256", "memory": "512"},
                       "timeline": [{"at": pytest.approx(time.time(), abs=60), "status": "accepted",
                                     "reason": "posted"}]}}]

    execution = api.get(f"/tasks/test-wrkng/jobs/{body['jobId']}/executions/{body['executionId']}").json
    assert execution["execution"]["status"] == "enqueued"
    assert execution["execution"]["command"] == "echo 'it works'"


def test_a_second_job_reuses_the_task(api):
    first = api.post("/tasks/t", JOB).json
    second = api.post("/tasks/t", JOB).json
    assert first["jobId"] != second["jobId"]
    task = api.get("/tasks/t").json
    assert [j["id"] for j in task["jobs"]] == [first["jobId"], second["jobId"]]
    assert api.get("/tasks").json["total"] == 1


def test_scheduled_job_is_stored_without_execution(api, sqs, aws):
    body = api.post("/tasks/t", {**JOB, "cron": "*/5 * * * *"}).json
    assert body["executionId"] is None and body["executionUrl"] is None
    job = api.get(f"/tasks/t/jobs/{body['jobId']}").json["job"]
    assert job["scheduled"] is True and job["executions"] == [] and job["metadata"]["cron"] == "*/5 * * * *"
    assert queued_messages(sqs, aws["JOBS_QUEUE_URL"]) == []


def test_invalid_payload_is_400_naming_the_field_and_leaves_nothing(api, sqs, aws):
    response = api.post("/tasks/t", {**JOB, "retries": "many"})
    assert response.status_code == 400
    assert response.json["operation"] == "enqueue_job"
    assert response.json["field"] == "retries"
    assert api.get("/tasks").json["total"] == 0
    assert api.get("/tasks/t").status_code == 404
    assert queued_messages(sqs, aws["JOBS_QUEUE_URL"]) == []


def test_documented_error_messages(api):
    assert api.post("/tasks/t", {"image": "ubuntu"}).json["error"] == "image and command must be filled in the request."
    assert api.post("/tasks/t", "not json").json["error"] == (
        "Failed to enqueue task because JSON body could not be parsed.")
    both = api.post("/tasks/t", {**JOB, "startIn": "1m", "cron": "* * * * *"})
    assert both.status_code == 400
    assert both.json["error"] == "Only ONE of 'startAt', 'startIn' and 'cron' should be in the request."
    assert api.post("/tasks/bad%20id", JOB).status_code == 400
    assert api.post("/tasks/t", {**JOB, "metadata": "text"}).json["field"] == "metadata"


def test_errors_are_json(api):
    response = api.post("/tasks/t", {})
    assert response.headers["Content-Type"] == "application/json"
    assert set(response.json) >= {"error", "operation"}


def test_body_over_the_limit_is_413(api, monkeypatch):
    response = api.post("/tasks/t", {**JOB, "metadata": {"blob": "x" * 300_000}})
    assert response.status_code == 413
    assert response.json["field"] == "body"


def test_form_encoded_content_type_is_parsed_as_json(api):
    response = api.post("/tasks/t", JOB, headers={"content-type": "application/x-www-form-urlencoded"})
    assert response.status_code == 200


def test_put_creates_a_job_with_the_given_uuid(api):
    job_id = str(uuid.uuid4())
    body = api.put(f"/tasks/t/jobs/{job_id}", JOB).json
    assert body["jobId"] == job_id
    assert api.get(f"/tasks/t/jobs/{job_id}").json["job"]["executionCount"] == 1


def test_put_replaces_the_specification_and_adds_an_execution(api, sqs, aws):
    job_id = str(uuid.uuid4())
    api.put(f"/tasks/t/jobs/{job_id}", JOB)
    second = api.put(f"/tasks/t/jobs/{job_id}", {"image": "alpine", "command": "date", "retries": 2}).json
    details = api.get(f"/tasks/t/jobs/{job_id}").json
    job = details["job"]
    assert (job["image"], job["command"], job["metadata"]["retries"], job["executionCount"]) == ("alpine", "date", 2, 2)
    assert job["executions"][0]["executionId"] == second["executionId"]  # newest first
    assert api.get("/tasks/t").json["total"] == 1
    assert len(queued_messages(sqs, aws["JOBS_QUEUE_URL"])) == 2


def test_put_with_a_non_uuid_is_400(api):
    response = api.put("/tasks/t/jobs/not-a-uuid", JOB)
    assert response.status_code == 400 and response.json["field"] == "jobId"


def test_put_of_a_job_that_belongs_to_another_task_is_409(api):
    job_id = api.post("/tasks/one", JOB).json["jobId"]
    response = api.put(f"/tasks/two/jobs/{job_id}", JOB)
    assert response.status_code == 409
    assert api.get("/tasks/two").status_code == 404


def test_request_ip_is_recorded_on_job_and_execution(api):
    body = api.post("/tasks/t", JOB).json
    job = api.get(f"/tasks/t/jobs/{body['jobId']}").json["job"]
    assert job["requestIPAddress"] == "127.0.0.1"
    assert job["executions"][0]["requestIPAddress"] == "127.0.0.1"


def test_launch_message_failure_still_accepts_the_job(api, aws, monkeypatch):
    """The execution is stored as enqueued first; a lost send is repaired by the reconciler,
    so the client gets its ids and must not post again."""
    boto3.client("sqs", region_name=REGION).delete_queue(QueueUrl=aws["JOBS_QUEUE_URL"])
    response = api.post("/tasks/t", JOB)
    assert response.status_code == 200
    assert response.json["queueJobId"] is None
    execution_url = response.json["executionUrl"].replace("http://fastlane.test", "")
    assert api.get(execution_url).json["execution"]["status"] == "enqueued"


def test_a_job_posted_between_anothers_number_and_its_write_takes_the_next_number(aws, monkeypatch):
    """A job's number is taken with an atomic ADD before its write: a job posted in between (here
    the task's first job is still being written) takes the next number, and both are stored, the
    task listed once. (moto's transactions are not isolated between threads, so the race is
    staged, not threaded.)"""
    from chalicelib import wiring
    from chalicelib.adapters.dynamo import jobs as dynamo_jobs

    service = wiring.get_job_service()
    store = wiring.backend().jobs
    take = dynamo_jobs.take_job_number
    raced = []

    def take_then_race(tables, task_id, at):
        number = take(tables, task_id, at)
        if not raced and task_id == "race":
            raced.append(True)
            service.enqueue("race", service.validate("race", dict(JOB)), None)  # lands after our number, before our write
        return number

    monkeypatch.setattr(dynamo_jobs, "take_job_number", take_then_race)
    service.enqueue("race", service.validate("race", dict(JOB)), None)
    service.enqueue("race", service.validate("race", dict(JOB)), None)
    monkeypatch.setattr(dynamo_jobs, "take_job_number", take)
    task = store.get_task("race")
    assert task.jobs_count == 3
    jobs = store.list_jobs("race", 1, 10)
    assert sorted(j.seq for j in jobs.items) == [1, 2, 3]
    assert service.list_tasks(1).total == 1
