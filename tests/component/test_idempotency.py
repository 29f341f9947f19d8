"""Idempotency-Key on POST /tasks/{taskId}, PUT .../jobs/{jobId} and POST .../retry, through the
Chalice app on moto: the aws backend, whose keys the powertools utility keeps on DynamoDB."""
from __future__ import annotations

import dataclasses
import time
import uuid

import pytest

from chalicelib.domain.idempotency import KEEP_SECONDS, Answer, body_fingerprint, scoped_key
from chalicelib.ports import KeyState
from tests.conftest import queued_messages
from tests.powertools_clock import follow_clock

JOB = {"image": "ubuntu", "command": "echo once", "envs": {"A": "1", "B": "2"}}
SAME_JOB = {"envs": {"B": "2", "A": "1"}, "command": "echo once", "image": "ubuntu"}  # other order, same JSON


def key() -> dict[str, str]:
    return {"Idempotency-Key": str(uuid.uuid4())}


def jobs_of(api, task: str) -> list[dict]:
    task_details = api.get(f"/tasks/{task}")
    return task_details.json["jobs"] if task_details.status_code == 200 else []


def test_the_same_key_and_body_get_the_first_answer_and_create_one_job(api, sqs, aws):
    headers = key()
    first = api.post("/tasks/t", JOB, headers=headers)
    second = api.post("/tasks/t", SAME_JOB, headers=headers)

    assert first.status_code == second.status_code == 200
    assert second.body == first.body
    assert second.headers["Content-Type"] == first.headers["Content-Type"] == "application/json"
    assert "Idempotent-Replayed" not in first.headers and second.headers["Idempotent-Replayed"] == "true"
    assert [job["id"] for job in jobs_of(api, "t")] == [first.json["jobId"]]
    assert len(queued_messages(sqs, aws["JOBS_QUEUE_URL"])) == 1


def test_the_same_key_with_another_body_is_409_naming_the_header_and_creates_nothing(api):
    headers = key()
    first = api.post("/tasks/t", JOB, headers=headers)
    other = api.post("/tasks/t", {**JOB, "command": "echo twice"}, headers=headers)

    assert other.status_code == 409
    assert other.json["field"] == "Idempotency-Key" and other.json["operation"] == "enqueue_job"
    assert "another body" in other.json["error"]
    assert [job["id"] for job in jobs_of(api, "t")] == [first.json["jobId"]]


@pytest.mark.parametrize("bad", ["", "x" * 256, "two words", "caf\u00e9"])
def test_a_key_that_breaks_the_rule_is_400_naming_the_header_and_the_rule(api, bad):
    response = api.post("/tasks/t", JOB, headers={"Idempotency-Key": bad})

    assert response.status_code == 400
    assert response.json["field"] == "Idempotency-Key"
    assert "1 to 255 visible ASCII characters" in response.json["error"]
    assert api.get("/tasks").json["total"] == 0


def test_an_error_answer_is_not_kept_so_the_corrected_request_may_use_the_key(api):
    headers = key()
    refused = api.post("/tasks/t", {"image": "ubuntu"}, headers=headers)
    created = api.post("/tasks/t", JOB, headers=headers)
    again = api.post("/tasks/t", JOB, headers=headers)

    assert (refused.status_code, created.status_code, again.status_code) == (400, 200, 200)
    assert "Idempotent-Replayed" not in refused.headers and again.headers["Idempotent-Replayed"] == "true"
    assert again.json == created.json and len(jobs_of(api, "t")) == 1


def test_a_key_belongs_to_its_route_and_resource(api):
    headers = key()
    here = api.post("/tasks/here", JOB, headers=headers)
    there = api.post("/tasks/there", JOB, headers=headers)

    assert here.status_code == there.status_code == 200
    assert "Idempotent-Replayed" not in there.headers
    assert len(jobs_of(api, "here")) == len(jobs_of(api, "there")) == 1


def test_put_twice_with_one_key_adds_one_execution_however_the_job_id_is_written(api):
    job_id, headers = str(uuid.uuid4()), key()
    first = api.put(f"/tasks/t/jobs/{job_id}", JOB, headers=headers)
    again = api.put(f"/tasks/t/jobs/{job_id.upper()}", SAME_JOB, headers=headers)

    assert first.status_code == again.status_code == 200 and again.body == first.body
    assert again.headers["Idempotent-Replayed"] == "true"
    assert api.get(f"/tasks/t/jobs/{job_id}").json["job"]["executionCount"] == 1


def test_retry_twice_with_one_key_starts_one_execution_whatever_the_bodies(api):
    created = api.post("/tasks/t", JOB).json
    api.post(created["executionUrl"].replace("http://fastlane.test", "") + "/stop")
    headers = key()
    first = api.post(f"/tasks/t/jobs/{created['jobId']}/retry", headers=headers)
    again = api.post(f"/tasks/t/jobs/{created['jobId']}/retry", {"ignored": True}, headers=headers)

    assert first.status_code == again.status_code == 200
    assert again.json["executionId"] == first.json["executionId"] != created["executionId"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert api.get(f"/tasks/t/jobs/{created['jobId']}").json["job"]["executionCount"] == 2


def test_a_request_whose_key_is_in_progress_is_409_with_retry_after(api):
    from chalicelib import wiring

    headers = key()
    seen = []

    def meanwhile() -> Answer:
        seen.append(api.post("/tasks/t", JOB, headers=headers))
        return Answer(503, "{}")  # not kept: the key is free again afterwards

    held = scoped_key("POST", "/tasks/t", headers["Idempotency-Key"])
    assert wiring.backend().idempotency_keys.run_once(held, body_fingerprint(JOB), meanwhile).state is KeyState.RAN

    (busy,) = seen
    assert busy.status_code == 409 and busy.headers["Retry-After"] == "1"
    assert busy.json["field"] == "Idempotency-Key" and "in progress" in busy.json["error"]
    assert jobs_of(api, "t") == []
    assert api.post("/tasks/t", JOB, headers=headers).status_code == 200


def test_a_kept_answer_expires_after_24_hours(api, monkeypatch):
    now = [time.time()]
    follow_clock(monkeypatch, lambda: now[0])
    headers = key()
    first = api.post("/tasks/t", JOB, headers=headers).json

    now[0] += KEEP_SECONDS - 60
    assert api.post("/tasks/t", JOB, headers=headers).json == first
    now[0] += 61
    later = api.post("/tasks/t", JOB, headers=headers)

    assert later.status_code == 200 and "Idempotent-Replayed" not in later.headers
    assert later.json["jobId"] != first["jobId"] and len(jobs_of(api, "t")) == 2


def test_a_backend_that_keeps_no_keys_refuses_a_request_with_one(api):
    from chalicelib import wiring

    wiring.use_backend(dataclasses.replace(wiring.backend(), idempotency_keys=None))
    refused = api.post("/tasks/t", JOB, headers=key())

    assert refused.status_code == 503 and refused.json["field"] == "Idempotency-Key"
    assert jobs_of(api, "t") == []
    assert api.post("/tasks/t", JOB).status_code == 200  # without a key, as ever
