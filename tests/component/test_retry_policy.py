"""A job's retry policy through the handlers, on moto, with ECS stood in by a recorder: each
failure's reason decides, and each retry says which rule did."""
from __future__ import annotations

from typing import Any

from chalicelib.domain.errors import LaunchFailed
from chalicelib.domain.retry import MAX_IGNORED_RETRIES
from tests.component.engine_support import key_of, send_events, task_event

FAST = {"initial": 0.01, "factor": 1, "max": 0.01}
POLICY = {"attempts": 1, "backoff": FAST, "rules": [
    {"exitCodes": [2, "64-78"], "action": "fail"},
    {"reasons": ["capacity"], "action": "ignore"},
]}


def post(api: Any, policy: dict[str, Any]) -> dict[str, Any]:
    response = api.post("/tasks/t", {"image": "ubuntu", "command": "true", "retry": policy})
    assert response.status_code == 200, response.json
    return dict(response.json)


def executions(api: Any, created: dict[str, Any]) -> list[dict[str, Any]]:
    """Oldest first."""
    return list(reversed(api.get(f"/tasks/t/jobs/{created['jobId']}").json["job"]["executions"]))


def end_latest(api, runner, drive, sqs, aws, created, **how: Any) -> None:
    """Launch the job's newest execution and have ECS stop its task as `how` says."""
    drive("jobs")
    latest = executions(api, created)[-1]
    arn = runner.tasks[latest["executionId"]]
    event = task_event(key_of({"jobId": created["jobId"], "executionId": latest["executionId"]}), arn, "STOPPED",
                       exit_code=how.get("exit_code"), reason=how.get("reason"))
    if "stop_code" in how:
        event["detail"]["stopCode"] = how["stop_code"]
    send_events(sqs, aws["EVENTS_QUEUE_URL"], event)
    drive("events")


def test_a_failure_a_rule_fails_is_not_retried(api, runner, drive, sqs, aws):
    created = post(api, POLICY)
    end_latest(api, runner, drive, sqs, aws, created, exit_code=70)
    assert [e["status"] for e in executions(api, created)] == ["failed"]


def test_a_failure_no_rule_matches_is_retried_by_the_default_and_counts(api, runner, drive, sqs, aws):
    created = post(api, POLICY)
    end_latest(api, runner, drive, sqs, aws, created, exit_code=1)
    first, retry = executions(api, created)
    assert retry["status"] == "enqueued"
    assert retry["metadata"] == {"retryOf": first["executionId"], "retry": 1, "reason": "exit", "rule": "default"}
    end_latest(api, runner, drive, sqs, aws, created, exit_code=1)
    assert [e["status"] for e in executions(api, created)] == ["failed", "failed"]  # its one attempt used


def test_an_ignored_failure_is_retried_without_using_an_attempt(api, runner, drive, sqs, aws):
    created = post(api, POLICY)
    end_latest(api, runner, drive, sqs, aws, created, stop_code="SpotInterruption",
               reason="Your Spot Task was interrupted.")
    retry = executions(api, created)[-1]
    assert retry["metadata"]["reason"] == "capacity" and retry["metadata"]["rule"] == "rules[1]"
    assert retry["metadata"]["ignored"] == 1
    end_latest(api, runner, drive, sqs, aws, created, exit_code=1)  # the attempt it still has
    end_latest(api, runner, drive, sqs, aws, created, exit_code=1)
    assert [e["status"] for e in executions(api, created)] == ["failed", "failed", "failed"]


def test_ignored_failures_stop_being_free_at_the_ceiling(api, runner, drive, sqs, aws):
    created = post(api, {**POLICY, "attempts": 0})
    for _ in range(MAX_IGNORED_RETRIES + 1):
        end_latest(api, runner, drive, sqs, aws, created, stop_code="SpotInterruption",
                   reason="Your Spot Task was interrupted.")
    job = api.get(f"/tasks/t/jobs/{created['jobId']}").json["job"]
    assert job["executionCount"] == MAX_IGNORED_RETRIES + 1  # the first run, then the ignored ones: no more
    newest = job["executions"][0]
    assert newest["status"] == "failed" and newest["metadata"]["ignored"] == MAX_IGNORED_RETRIES


def test_a_refused_launch_is_classified_and_decided_on(api, runner, drive, sqs, aws):
    runner.failure = LaunchFailed("ClientException: Container.image is not valid", retryable=False)
    created = post(api, {"attempts": 2, "backoff": FAST, "rules": [{"reasons": ["launch"], "action": "fail"}]})
    drive("jobs")
    [failed] = executions(api, created)
    assert failed["status"] == "failed" and "not valid" in failed["error"]


def test_a_timeout_is_its_own_reason(api, runner, drive, sqs, aws):
    from chalicelib import wiring

    created = post(api, {"attempts": 3, "backoff": FAST, "rules": [{"reasons": ["timeout"], "action": "fail"}]})
    drive("jobs")
    engine = wiring.get_engine()
    engine.ending.time_out(wiring.backend().executions.get_execution(created["jobId"], created["executionId"]))
    assert [e["status"] for e in executions(api, created)] == ["timedout"]


def test_the_job_shows_its_policy(api):
    created = post(api, POLICY)
    metadata = api.get(f"/tasks/t/jobs/{created['jobId']}").json["job"]["metadata"]
    assert metadata["retry"]["rules"][0] == {"exitCodes": [2, "64-78"], "action": "fail"}
    assert metadata["retry"]["attempts"] == 1


def test_a_bad_policy_is_a_400_naming_the_field_and_stores_nothing(api):
    response = api.post("/tasks/t", {"image": "ubuntu", "command": "true",
                                     "retry": {"rules": [{"reasons": ["disk"], "action": "fail"}]}})
    assert response.status_code == 400
    assert "retry.rules[0].reasons[0]" in str(response.json)
    assert api.get("/tasks/t").status_code == 404
