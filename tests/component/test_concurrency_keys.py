"""Concurrency keys through the handlers, on moto, with ECS stood in by a recorder: a launch needs a
slot of its key with its pool's, one that waits says what for, and a leaked count is repaired."""
from __future__ import annotations

from typing import Any

from infra.local.event_sources import scheduled_event
from tests.component.conftest import execution
from tests.component.engine_support import key_of, send_events, task_event
from tests.polling import wait_until

KEYED = {"image": "ubuntu", "command": "true", "concurrency": {"key": "reports-{taskId}", "limit": 1}}


def post(api: Any, task: str = "t", payload: dict[str, Any] = KEYED) -> dict[str, Any]:
    response = api.post(f"/tasks/{task}", payload)
    assert response.status_code == 200, response.json
    return dict(response.json)


def stop_container(runner, sqs, aws, drive, created: dict[str, Any]) -> None:
    arn = runner.tasks[created["executionId"]]
    send_events(sqs, aws["EVENTS_QUEUE_URL"], task_event(key_of(created), arn, "STOPPED", exit_code=0))
    drive("events")


def test_a_second_job_of_a_full_key_waits_saying_what_for_then_runs(api, runner, drive, sqs, aws):
    first, second = post(api), post(api)
    drive("jobs")
    assert execution(api, first)["status"] == "pulling"
    waiting = execution(api, second)
    assert waiting["status"] == "enqueued" and runner.runs == [(first["executionId"], ["true"])]
    assert waiting["waitingFor"] == "a slot of concurrency key 'reports-t' (1 running)"
    assert waiting["concurrency"] == {"key": "reports-t", "limit": 1}
    assert api.get("/status").json["concurrency"] == [{"key": "reports-t", "running": 1, "limit": 1}]

    stop_container(runner, sqs, aws, drive, first)

    def launched() -> dict[str, Any] | None:
        drive("jobs")  # its launch comes back after a short wait
        current = execution(api, second)
        return current if current["status"] == "pulling" else None

    assert wait_until(launched, timeout=10, what="the waiting execution launched")["waitingFor"] is None


def test_the_key_is_per_task_when_it_names_the_task(api, runner, drive):
    post(api, "a")
    post(api, "b")
    drive("jobs")
    assert len(runner.runs) == 2
    keys = {entry["key"] for entry in api.get("/status").json["concurrency"]}
    assert keys == {"reports-a", "reports-b"}


def test_a_job_without_a_key_is_not_held_back_by_one(api, runner, drive):
    post(api)
    post(api)
    plain = post(api, payload={"image": "ubuntu", "command": "true"})
    drive("jobs")
    assert execution(api, plain)["status"] == "pulling" and len(runner.runs) == 2


def test_a_leaked_key_count_is_repaired_by_the_reconciler(api, runner, drive, sqs, aws):
    import app as app_module
    from chalicelib import wiring

    created = post(api)
    drive("jobs")
    stop_container(runner, sqs, aws, drive, created)
    pools = wiring.backend().pools
    assert pools.recount_key("reports-t", 0, 1, 1)  # a count no execution holds: what a lost write leaves
    assert app_module.reconcile(scheduled_event("reconciler"), None)["recounted"] == 0  # seen once: reported
    assert app_module.reconcile(scheduled_event("reconciler"), None)["recounted"] == 1
    assert api.get("/status").json["concurrency"] == []
    waiting = post(api)
    drive("jobs")
    assert execution(api, waiting)["status"] == "pulling"


def test_a_bad_key_is_a_400_naming_the_field(api):
    response = api.post("/tasks/t", {**KEYED, "concurrency": {"key": "reports-{jobId}", "limit": 1}})
    assert response.status_code == 400 and "concurrency.key" in str(response.json)
    response = api.post("/tasks/t", {**KEYED, "concurrency": {"key": "reports", "limit": 0}})
    assert response.status_code == 400 and "concurrency.limit" in str(response.json)
    assert api.get("/tasks/t").status_code == 404
