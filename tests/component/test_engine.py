"""The execution engine through its handlers, on moto, with ECS stood in by a recorder."""
from __future__ import annotations

import json
import uuid

from chalicelib.domain.ecs import TaskState
from chalicelib.domain.errors import LaunchFailed
from infra.local.event_sources import scheduled_event
from tests.component.conftest import execution
from tests.component.engine_support import REGION, install_engine, key_of, send_events, task_event

JOB = {"image": "ubuntu", "command": "bash -c 'echo \"it failed\" && exit 123'"}


def events(sqs, aws, *items):
    send_events(sqs, aws["EVENTS_QUEUE_URL"], *items)


def test_dispatch_launches_the_command_split_into_arguments(api, runner, drive):
    created = api.post("/tasks/t", JOB).json
    assert drive("jobs") == 1
    assert runner.runs == [(created["executionId"], ["bash", "-c", 'echo "it failed" && exit 123'])]
    launched = execution(api, created)
    assert launched["status"] == "pulling"


def test_a_duplicate_launch_message_starts_one_container(api, runner, drive, sqs, aws):
    created = api.post("/tasks/t", JOB).json
    body = json.dumps({"taskId": "t", "jobId": created["jobId"], "executionId": created["executionId"]})
    sqs.send_message(QueueUrl=aws["JOBS_QUEUE_URL"], MessageBody=body)
    drive("jobs")
    assert len(runner.runs) == 1


def test_task_state_changes_drive_the_execution(api, runner, drive, sqs, aws):
    created = api.post("/tasks/t", {"image": "ubuntu", "command": "true"}).json
    drive("jobs")
    arn = runner.tasks[created["executionId"]]
    events(sqs, aws, task_event(key_of(created), arn, "RUNNING"))
    drive("events")
    running = execution(api, created)
    assert running["status"] == "running" and running["startedAt"] is not None
    events(sqs, aws, task_event(key_of(created), arn, "STOPPED", exit_code=0))
    drive("events")
    done = execution(api, created)
    assert (done["status"], done["exitCode"]) == ("done", 0) and done["finishedAt"] is not None


def test_duplicate_and_late_events_change_nothing(api, runner, drive, sqs, aws):
    created = api.post("/tasks/t", {"image": "ubuntu", "command": "true"}).json
    drive("jobs")
    arn = runner.tasks[created["executionId"]]
    stopped = task_event(key_of(created), arn, "STOPPED", exit_code=0)
    events(sqs, aws, stopped, stopped, task_event(key_of(created), arn, "RUNNING"))
    drive("events")
    assert execution(api, created)["status"] == "done"
    status = api.get("/status").json
    assert status["executions"]["done"] == 1 and status["executions"]["running"] == 0


def test_a_failure_with_retries_creates_the_next_execution_with_backoff(api, runner, drive, sqs, aws):
    created = api.post("/tasks/t", {**JOB, "retries": 2}).json
    drive("jobs")
    arn = runner.tasks[created["executionId"]]
    events(sqs, aws, task_event(key_of(created), arn, "STOPPED", exit_code=123))
    drive("events")
    job = api.get(f"/tasks/t/jobs/{created['jobId']}").json["job"]
    assert job["metadata"]["retry_count"] == 1 and job["executionCount"] == 2
    retry, failed = job["executions"]
    assert (failed["status"], failed["exitCode"]) == ("failed", 123)
    assert retry["status"] == "enqueued" and retry["metadata"]["retryOf"] == created["executionId"]


def test_a_launch_failure_fails_the_execution_with_the_reason(api, runner, drive):
    runner.failure = LaunchFailed("ClientException: image not allowed", retryable=False)
    created = api.post("/tasks/t", JOB).json
    drive("jobs")
    failed = execution(api, created)
    assert failed["status"] == "failed" and "image not allowed" in failed["error"]


def test_a_throttled_launch_is_tried_again_not_failed(api, runner, drive, sqs, aws):
    runner.failure = LaunchFailed("ThrottlingException: slow down", retryable=True)
    created = api.post("/tasks/t", JOB).json
    drive("jobs")
    assert execution(api, created)["status"] == "enqueued"
    messages = sqs.receive_message(QueueUrl=aws["JOBS_QUEUE_URL"], WaitTimeSeconds=3).get("Messages", [])
    assert json.loads(messages[0]["Body"])["attempt"] == 1


def test_an_expired_job_never_launches(api, runner, drive):
    import time

    from tests.system.conftest import wait_until

    expiration = time.time() + 0.3
    created = api.post("/tasks/t", {**JOB, "expiration": expiration}).json
    wait_until(lambda: time.time() > expiration, timeout=2, interval=0.05, what="the expiration to pass")
    drive("jobs")
    expired = execution(api, created)
    assert expired["status"] == "expired" and runner.runs == []


def test_stopping_a_job_stops_its_execution_and_its_retries(api, runner, drive, sqs, aws):
    created = api.post("/tasks/t", {**JOB, "retries": 3}).json
    drive("jobs")
    arn = runner.tasks[created["executionId"]]
    response = api.post(f"/tasks/t/jobs/{created['jobId']}/stop")
    assert response.status_code == 200
    assert set(response.json) == {"taskId", "jobId", "jobUrl", "taskUrl"}
    assert runner.stopped == [(arn, "stopped by a client")]
    assert execution(api, created)["status"] == "stopped"
    events(sqs, aws, task_event(key_of(created), arn, "STOPPED", exit_code=137))
    drive("events")
    job = api.get(f"/tasks/t/jobs/{created['jobId']}").json["job"]
    assert job["executionCount"] == 1
    assert job["executions"][0]["status"] == "stopped" and job["executions"][0]["exitCode"] == 137


def test_stopping_one_execution(api, runner, drive):
    created = api.post("/tasks/t", JOB).json
    drive("jobs")
    path = created["executionUrl"].replace("http://fastlane.test", "") + "/stop"
    response = api.post(path)
    assert response.status_code == 200
    assert response.json["execution"] == {"id": created["executionId"], "url": created["executionUrl"]}
    again = api.post(path)
    assert again.status_code == 409 and again.json["operation"] == "stop_execution"


def test_an_enqueued_execution_that_is_stopped_is_never_launched(api, runner, drive):
    created = api.post("/tasks/t", JOB).json
    api.post(created["executionUrl"].replace("http://fastlane.test", "") + "/stop")
    drive("jobs")
    assert runner.runs == [] and execution(api, created)["status"] == "stopped"


def test_retry(api, runner, drive, sqs, aws):
    scheduled = api.post("/tasks/t", {**JOB, "cron": "* * * * *"}).json
    run_now = api.post(f"/tasks/t/jobs/{scheduled['jobId']}/retry")  # never ran: a scheduled job runs now
    assert run_now.status_code == 200 and run_now.json["executionId"]

    created = api.post("/tasks/t", JOB).json
    drive("jobs")
    busy = api.post(f"/tasks/t/jobs/{created['jobId']}/retry")
    assert busy.status_code == 409
    events(sqs, aws, task_event(key_of(created), runner.tasks[created["executionId"]], "STOPPED", exit_code=1))
    drive("events")
    again = api.post(f"/tasks/t/jobs/{created['jobId']}/retry")
    assert again.status_code == 200 and again.json["executionId"] != created["executionId"]
    drive("jobs")
    assert again.json["executionId"] in runner.tasks
    assert api.post(f"/tasks/t/jobs/{uuid.uuid4()}/retry").status_code == 404


def test_a_timeout_stops_the_task_and_ends_timedout(api, runner, drive, sqs, aws):
    created = api.post("/tasks/t", {**JOB, "timeout": 1}).json
    drive("jobs")
    arn = runner.tasks[created["executionId"]]
    events(sqs, aws, task_event(key_of(created), arn, "RUNNING", started_at="2020-01-01T00:00:00Z"))
    drive("events")
    drive("jobs")  # the timeout check, due long ago
    ended = execution(api, created)
    assert ended["status"] == "timedout" and "timeout of 1 s" in ended["error"]
    assert runner.stopped and runner.stopped[0][0] == arn


def test_a_full_pool_makes_launches_wait(aws, api, runner, drive, monkeypatch, sqs):
    from chalicelib import wiring

    monkeypatch.setenv("MAX_RUNNING", "1")
    wiring.reset()
    install_engine(monkeypatch, runner)
    first = api.post("/tasks/t", JOB).json
    second = api.post("/tasks/t", JOB).json
    drive("jobs")
    assert [r[0] for r in runner.runs] == [first["executionId"]]
    assert execution(api, second)["status"] == "enqueued"
    assert api.get("/status").json["pools"][0] == {
        "name": "default", "match": ".*", "cluster": "test", "running": 1, "maxRunning": 1}
    events(sqs, aws, task_event(key_of(first), runner.tasks[first["executionId"]], "STOPPED", exit_code=0))
    drive("events")
    assert api.get("/status").json["pools"][0]["running"] == 0
    messages = sqs.receive_message(QueueUrl=aws["JOBS_QUEUE_URL"], WaitTimeSeconds=5).get("Messages", [])
    assert messages, "the waiting launch must still be queued"
    sqs.change_message_visibility(QueueUrl=aws["JOBS_QUEUE_URL"], ReceiptHandle=messages[0]["ReceiptHandle"],
                                  VisibilityTimeout=0)
    drive("jobs")
    assert second["executionId"] in runner.tasks


def test_the_reconciler_finalises_an_execution_whose_stop_event_was_lost(api, runner, drive):
    import app as app_module

    created = api.post("/tasks/t", JOB).json
    drive("jobs")
    arn = runner.tasks[created["executionId"]]
    runner.states[arn] = TaskState(arn=arn, last_status="STOPPED", exit_code=3, reason=None,
                                   started_at=1.0, stopped_at=2.0)
    assert app_module.reconcile(scheduled_event("reconciler"), None)["finalised"] == 1
    ended = execution(api, created)
    assert (ended["status"], ended["exitCode"]) == ("failed", 3)


def test_the_reconciler_fails_an_execution_whose_task_is_gone_after_the_grace(api, runner, drive, monkeypatch):
    """ECS may answer MISSING just after RunTask: within the grace the execution is left alone."""
    import app as app_module
    from chalicelib import wiring

    created = api.post("/tasks/t", JOB).json
    drive("jobs")
    app_module.reconcile(scheduled_event("reconciler"), None)
    assert execution(api, created)["status"] == "pulling"

    monkeypatch.setenv("MISSING_GRACE_SECONDS", "-1")
    wiring.reset()
    install_engine(monkeypatch, runner)
    app_module.reconcile(scheduled_event("reconciler"), None)
    ended = execution(api, created)
    assert ended["status"] == "failed" and "gone" in ended["error"]


def test_the_reconciler_resends_a_launch_that_never_left(api, runner, drive, aws, monkeypatch, sqs):
    import app as app_module
    from chalicelib import wiring

    created = api.post("/tasks/t", JOB).json
    for message in sqs.receive_message(QueueUrl=aws["JOBS_QUEUE_URL"], MaxNumberOfMessages=10)["Messages"]:
        sqs.delete_message(QueueUrl=aws["JOBS_QUEUE_URL"], ReceiptHandle=message["ReceiptHandle"])  # lost
    monkeypatch.setenv("RECONCILE_GRACE_SECONDS", "-1")
    wiring.reset()
    install_engine(monkeypatch, runner)
    assert app_module.reconcile(scheduled_event("reconciler"), None)["resent"] == 1
    drive("jobs")
    assert created["executionId"] in runner.tasks


def test_status_shape(api, runner):
    api.post("/tasks/t", JOB)
    body = api.get("/status").json
    assert body["version"] and body["tasks"] == 1 and body["jobs"] == 1
    assert body["executions"]["enqueued"] == 1
    assert set(body["queues"]) == {"jobs", "jobsDeadLetter", "events", "eventsDeadLetter", "notify", "notifyDeadLetter"}
    assert body["queues"]["jobs"]["visible"] == 1
    assert body["scheduled"]["count"] == 0


def test_a_running_container_of_an_execution_stopped_before_its_task_was_recorded_is_stopped(
        api, runner, drive, sqs, aws):
    """The dispatcher died between RunTask and recording the task; a client then stopped the
    execution. The container's RUNNING event must stop it, not be ignored."""
    created = api.post("/tasks/t", {"image": "ubuntu", "command": "sleep 600"}).json
    arn = f"arn:aws:ecs:{REGION}:123456789012:task/test/{uuid.uuid4().hex}"  # launched, never recorded
    stop = api.post(f"/tasks/t/jobs/{created['jobId']}/executions/{created['executionId']}/stop")
    assert stop.status_code == 200

    events(sqs, aws, task_event(key_of(created), arn, "RUNNING"))
    drive("events")

    assert [task for task, _ in runner.stopped] == [arn]
    assert execution(api, created)["status"] == "stopped"


def test_a_late_running_event_of_a_finished_execution_stops_nothing(api, runner, drive, sqs, aws):
    created = api.post("/tasks/t", {"image": "ubuntu", "command": "true"}).json
    drive("jobs")
    arn = runner.tasks[created["executionId"]]
    events(sqs, aws, task_event(key_of(created), arn, "STOPPED", exit_code=0),
           task_event(key_of(created), arn, "RUNNING"))
    drive("events")
    assert runner.stopped == [] and execution(api, created)["status"] == "done"


class CountingThrottle:
    """RunTask throttled every time, counting how often it was asked."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, execution, spec, pool):
        self.calls += 1
        raise LaunchFailed("ThrottlingException: Rate exceeded", retryable=True)


def test_after_a_throttle_the_launches_of_the_next_moment_are_sent_back_without_asking(
        api, runner, drive, sqs, aws, monkeypatch):
    from chalicelib.services.engine import dispatch

    monkeypatch.setattr(dispatch, "THROTTLE_PAUSE_SECONDS", 600.0)  # "the next moment" spans the whole batch
    throttled = CountingThrottle()
    monkeypatch.setattr(runner, "run", throttled)
    created = [api.post("/tasks/t", JOB).json for _ in range(6)]

    drive("jobs")  # one batch: the first launch is throttled, the five after it are paced

    assert throttled.calls == 1
    assert {execution(api, c)["status"] for c in created} == {"enqueued"}
    attributes = sqs.get_queue_attributes(QueueUrl=aws["JOBS_QUEUE_URL"], AttributeNames=["All"])["Attributes"]
    assert int(attributes["ApproximateNumberOfMessagesDelayed"]) == 6  # each comes back later, none is lost


def test_a_throttled_launch_comes_back_within_the_time_its_backlog_takes():
    from chalicelib.config import Settings
    from chalicelib.services.engine import build_engine
    from chalicelib.services.engine.dispatch import LAUNCH_OVERDRIVE

    class Backlog:
        def pending(self) -> int:
            return 1000

    settings = Settings(region="us-east-1", tasks_table="t", jobs_table="j", executions_table="e", jobs_queue_url="q")
    engine = build_engine(None, None, None, None, Backlog(), None, settings, clock=lambda: 100.0)  # type: ignore[arg-type]
    delays = [engine.dispatcher._throttle_delay() for _ in range(500)]
    window = 1000 / (settings.launch_rate * LAUNCH_OVERDRIVE)  # 40 s for 1,000 waiting at 20 a second
    assert 1.0 <= min(delays) and max(delays) <= window
    assert sum(d > window / 2 for d in delays) > 150  # spread over the window, not bunched at its start
