"""Scheduling through the app's handlers on moto: SQS timers, Scheduler schedules, firings taken
once, overlap policies, PUT and stop, and repair of lost firings."""
from __future__ import annotations

import json
import time

import boto3
import pytest

from infra.local.event_sources import deliver_once, scheduled_event
from tests.component.engine_support import REGION

JOB = {"image": "ubuntu", "command": "echo tick"}


@pytest.fixture
def scheduler(aws):
    return boto3.client("scheduler", region_name=REGION)


def schedules(scheduler) -> dict[str, dict]:
    names = [s["Name"] for s in scheduler.list_schedules(GroupName="test")["Schedules"]]
    return {name: scheduler.get_schedule(Name=name, GroupName="test") for name in names}


def job(api, created):
    return api.get(f"/tasks/{created['taskId']}/jobs/{created['jobId']}").json["job"]


def fire(sqs, aws, message: dict) -> None:
    import app as app_module

    sqs.send_message(QueueUrl=aws["JOBS_QUEUE_URL"], MessageBody=json.dumps(message))
    while deliver_once(sqs, aws["JOBS_QUEUE_URL"], app_module.dispatch_jobs):
        pass


def queued(sqs, aws) -> list[dict]:
    attributes = sqs.get_queue_attributes(QueueUrl=aws["JOBS_QUEUE_URL"], AttributeNames=["All"])["Attributes"]
    return attributes


def test_start_in_soon_is_an_sqs_timer(api, runner, sqs, aws, scheduler):
    before = time.time()
    created = api.post("/tasks/t", {**JOB, "startIn": "10s"}).json
    after = time.time()
    assert created["executionId"] is None and created["queueJobId"]
    details = job(api, created)
    assert details["scheduled"] is True and details["schedule"]["pending"] is True
    assert before + 10 - 0.01 <= details["schedule"]["nextRunAt"] <= after + 10
    assert queued(sqs, aws)["ApproximateNumberOfMessagesDelayed"] == "1"
    assert schedules(scheduler) == {}


def test_start_at_far_ahead_is_a_one_time_schedule_fired_early(api, runner, scheduler):
    due = int(time.time()) + 86400
    created = api.post("/tasks/t", {**JOB, "startAt": due}).json
    found = schedules(scheduler)
    name = f"t-{created['jobId']}"
    assert list(found) == [name]
    expression = found[name]["ScheduleExpression"]
    assert expression == "at(" + time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(due - 60)) + ")"
    message = json.loads(found[name]["Target"]["Input"])
    assert (message["kind"], message["dueAt"]) == ("schedule", due)
    assert found[name]["ActionAfterCompletion"] == "DELETE"


def test_cron_is_one_scheduler_cron_schedule_in_its_time_zone(api, runner, scheduler, aws):
    created = api.post("/tasks/report:daily", {**JOB, "cron": "30 6 * * 1-5", "timezone": "Europe/Paris"}).json
    found = schedules(scheduler)
    name = f"report_daily-{created['jobId']}"
    assert found[name]["ScheduleExpression"] == "cron(30 6 ? * 2,3,4,5,6 *)"
    assert found[name]["ScheduleExpressionTimezone"] == "Europe/Paris"
    assert found[name]["Target"]["Arn"] == aws["JOBS_QUEUE_ARN"]
    assert "<aws.scheduler.scheduled-time>" in found[name]["Target"]["Input"]
    assert job(api, created)["schedule"]["cron"] == "30 6 * * 1-5"


def test_a_cron_scheduler_cannot_say_is_scheduled_tick_by_tick(api, runner, scheduler, sqs, aws):
    created = api.post("/tasks/t", {**JOB, "cron": "0 0 13 * 5"}).json
    found = schedules(scheduler)[f"t-{created['jobId']}"]
    assert found["ScheduleExpression"].startswith("at(")
    message = json.loads(found["Target"]["Input"])
    assert message["perTick"] is True
    from chalicelib.domain.schedule import next_cron_run

    due = float(int(time.time()) - 1)  # as the one-time schedule delivers it: the tick's own time
    message["scheduledAt"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(due))
    fire(sqs, aws, message)
    assert len(runner.runs) == 1
    rearmed = json.loads(schedules(scheduler)[f"t-{created['jobId']}"]["Target"]["Input"])
    expected = next_cron_run("0 0 13 * 5", due)
    assert rearmed["scheduledAt"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expected))


def test_a_tick_a_week_late_is_skipped_and_counted_not_run(api, runner, scheduler, sqs, aws):
    from chalicelib.domain.schedule import next_cron_run

    created = api.post("/tasks/t", {**JOB, "cron": "0 0 * * 5"}).json
    last_friday = next_cron_run("0 0 * * 5", time.time() - 8 * 86400)
    fire(sqs, aws, {"kind": "tick", "taskId": "t", "jobId": created["jobId"], "version": _version(aws, created["jobId"]),
                    "scheduledAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(last_friday)), "perTick": False})
    shown = job(api, created)["schedule"]
    assert runner.runs == []
    assert (shown["skippedTicks"], shown["lastSkippedAt"]) == (1, last_friday)
    assert shown["lastSkipReason"].startswith("missed")


def test_a_firing_is_taken_once_and_launches_at_once(api, runner, sqs, aws):
    created = api.post("/tasks/t", {**JOB, "startIn": "10s"}).json
    current = job(api, created)
    once = {"kind": "schedule", "taskId": "t", "jobId": created["jobId"], "dueAt": time.time() - 1,
            "version": _version(aws, created["jobId"])}
    fire(sqs, aws, once)
    fire(sqs, aws, once)
    after = job(api, created)
    assert after["executionCount"] == 1 and after["executions"][0]["status"] == "pulling"
    assert after["schedule"]["pending"] is False and current["schedule"]["pending"] is True
    assert len(runner.runs) == 1


def _version(aws, job_id):
    from chalicelib import wiring

    return wiring.backend().jobs.get_job(job_id).schedule_version


def test_a_stale_firing_is_dropped(api, runner, sqs, aws):
    created = api.post("/tasks/t", {**JOB, "startIn": "10s"}).json
    fire(sqs, aws, {"kind": "schedule", "taskId": "t", "jobId": created["jobId"], "dueAt": time.time() - 1,
                    "version": "not-the-current-one"})
    assert runner.runs == []


# Ticks a test sends a few seconds apart, each on time: a cron whose next tick is far away, so no
# tick is superseded by a later one due already (see the catch-up tests).
YEARLY = "0 0 1 1 *"


def tick(created, version, seconds_ago: float) -> dict:
    return {"kind": "tick", "taskId": created["taskId"], "jobId": created["jobId"], "version": version,
            "scheduledAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - seconds_ago))}


def test_each_tick_runs_once_and_older_ticks_are_dropped(api, runner, sqs, aws):
    created = api.post("/tasks/t", {**JOB, "cron": YEARLY}).json
    version = _version(aws, created["jobId"])
    two_ago, one_ago, three_ago = (tick(created, version, s) for s in (2, 1, 3))
    fire(sqs, aws, two_ago)
    fire(sqs, aws, two_ago)  # duplicate delivery
    fire(sqs, aws, one_ago)
    fire(sqs, aws, three_ago)  # late and out of order
    assert len(runner.runs) == 2
    assert job(api, created)["executionCount"] == 2


def test_overlap_forbid_skips_a_tick_while_one_runs(api, runner, sqs, aws):
    created = api.post("/tasks/t", {**JOB, "cron": YEARLY, "overlap": "forbid"}).json
    version = _version(aws, created["jobId"])
    fire(sqs, aws, tick(created, version, 2))
    fire(sqs, aws, tick(created, version, 1))
    details = job(api, created)
    assert details["executionCount"] == 1
    assert details["schedule"]["skippedTicks"] == 1 and details["schedule"]["lastSkippedAt"] is not None


def test_overlap_replace_stops_the_running_one(api, runner, sqs, aws):
    created = api.post("/tasks/t", {**JOB, "cron": YEARLY, "overlap": "replace"}).json
    version = _version(aws, created["jobId"])
    fire(sqs, aws, tick(created, version, 2))
    first = runner.runs[0][0]
    fire(sqs, aws, tick(created, version, 1))
    assert [arn for arn, _ in runner.stopped] == [runner.tasks[first]]
    executions = job(api, created)["executions"]
    assert [e["status"] for e in executions] == ["pulling", "stopped"]


def test_a_cron_job_on_a_full_pool_keeps_at_most_its_limit_of_executions_and_counts_the_ticks_skipped(
        api, runner, sqs, aws, monkeypatch):
    """Every tick of an `overlap: allow` job on a pool that stays full adds an execution that
    waits; the job's item holds their ids, so past MAX_ACTIVE_PER_JOB ticks are skipped and
    counted instead, and a PUT that would run it is refused until some end."""
    import app as app_module
    from chalicelib import wiring
    from tests.component.engine_support import install_engine

    monkeypatch.setenv("MAX_RUNNING", "1")
    monkeypatch.setenv("MAX_ACTIVE_PER_JOB", "3")
    wiring.reset()
    install_engine(monkeypatch, runner)
    api.post("/tasks/other", {"image": "ubuntu", "command": "sleep 600"})  # holds the pool's one slot
    while deliver_once(sqs, aws["JOBS_QUEUE_URL"], app_module.dispatch_jobs):
        pass
    created = api.post("/tasks/t", {**JOB, "cron": YEARLY}).json
    version = _version(aws, created["jobId"])

    for minutes_ago in range(6, 0, -1):  # six ticks; each finds the pool full
        fire(sqs, aws, tick(created, version, minutes_ago))

    details = job(api, created)
    assert details["executionCount"] == 3 and len(runner.runs) == 1  # the other job's, alone
    assert {e["status"] for e in details["executions"]} == {"enqueued"}
    assert details["schedule"]["skippedTicks"] == 3 and details["schedule"]["lastSkippedAt"] is not None
    put = api.put(f"/tasks/t/jobs/{created['jobId']}", JOB)
    assert put.status_code == 409 and "3 executions that have not ended" in put.json["error"]
    assert job(api, created)["executionCount"] == 3


def test_put_replaces_the_schedule(api, runner, scheduler, sqs, aws):
    created = api.post("/tasks/t", {**JOB, "startAt": int(time.time()) + 86400}).json
    old_version = _version(aws, created["jobId"])
    api.put(f"/tasks/t/jobs/{created['jobId']}", {"image": "ubuntu", "command": "echo new", "startIn": "5s"})
    assert schedules(scheduler) == {}  # the far one is gone; a timer replaces it
    fire(sqs, aws, {"kind": "schedule", "taskId": "t", "jobId": created["jobId"], "dueAt": time.time() - 1,
                    "version": old_version})
    assert runner.runs == []  # the old firing runs nothing
    fire(sqs, aws, {"kind": "schedule", "taskId": "t", "jobId": created["jobId"], "dueAt": time.time() - 1,
                    "version": _version(aws, created["jobId"])})
    assert [argv for _, argv in runner.runs] == [["echo", "new"]]


def test_stopping_a_cron_job_deletes_its_schedule_and_later_ticks_run_nothing(api, runner, scheduler, sqs, aws):
    created = api.post("/tasks/t", {**JOB, "cron": YEARLY}).json
    version = _version(aws, created["jobId"])
    fire(sqs, aws, tick(created, version, 2))
    assert api.post(f"/tasks/t/jobs/{created['jobId']}/stop").status_code == 200
    assert schedules(scheduler) == {}
    fire(sqs, aws, tick(created, version, 1))
    assert len(runner.runs) == 1
    assert job(api, created)["schedule"]["pending"] is False


def test_stopping_an_execution_leaves_the_schedule(api, runner, scheduler, sqs, aws):
    created = api.post("/tasks/t", {**JOB, "cron": YEARLY}).json
    fire(sqs, aws, tick(created, _version(aws, created["jobId"]), 1))
    execution = job(api, created)["executions"][0]
    assert api.post(execution["url"].replace("http://fastlane.test", "") + "/stop").status_code == 200
    assert len(schedules(scheduler)) == 1 and job(api, created)["schedule"]["pending"] is True


@pytest.mark.parametrize("payload,field", [
    ({"cron": "61 * * * *"}, "cron"),
    ({"cron": "* * * * *", "timezone": "Nowhere/Land"}, "timezone"),
    ({"startIn": "soon"}, "startIn"),
    ({"startAt": time.time() + 6 * 366 * 86400}, "startAt"),
    ({"startIn": "1s", "overlap": "forbid"}, "overlap"),
    ({"cron": "* * * * *", "overlap": "sometimes"}, "overlap"),
    ({"cron": "0 0 30 2 *"}, "cron"),
])
def test_bad_schedules_are_400_and_store_nothing(api, runner, scheduler, sqs, aws, payload, field):
    response = api.post("/tasks/t", {**JOB, **payload})
    assert response.status_code == 400 and response.json["field"] == field
    assert api.get("/tasks").json["total"] == 0 and schedules(scheduler) == {}
    assert queued(sqs, aws)["ApproximateNumberOfMessagesDelayed"] == "0"


@pytest.mark.parametrize(("payload", "kind"), [({"cron": "* * * * *"}, "tick"),
                                               ({"startAt": int(time.time()) + 86400, "catchupWindow": 3600},
                                                "schedule")])
def test_the_reconciler_hands_an_overdue_firing_to_the_jobs_queue_and_launches_nothing(
        api, runner, sqs, aws, payload, kind):
    """The reconciler's role may not run tasks: the dispatcher launches what it repairs, as it
    launches everything else, and a firing handed over twice still makes one execution."""
    import app as app_module
    from chalicelib import wiring

    created = api.post("/tasks/t", {**JOB, **payload}).json
    JobM = wiring.backend().extras["tables"].Job
    JobM(job_id=created["jobId"]).update(actions=[JobM.next_run_at.set(time.time() - 600)])  # a lost firing
    launches = []
    runner.run = lambda execution, *rest: launches.append(execution)  # type: ignore[method-assign]
    app_module.reconcile(scheduled_event("reconciler"), None)
    app_module.reconcile(scheduled_event("reconciler"), None)  # again, before the dispatcher took it
    assert launches == []
    handed = sqs.receive_message(QueueUrl=aws["JOBS_QUEUE_URL"], MaxNumberOfMessages=10, VisibilityTimeout=0)
    assert [json.loads(m["Body"])["kind"] for m in handed["Messages"]] == [kind, kind]

    del runner.run  # the recorder launches again
    while deliver_once(sqs, aws["JOBS_QUEUE_URL"], app_module.dispatch_jobs):
        pass
    assert len(runner.runs) == 1 and job(api, created)["executionCount"] == 1


def test_a_schedule_that_cannot_be_repaired_leaves_the_others_repaired(api, runner, sqs, aws, monkeypatch):
    """Scheduler refuses to arm one job's schedule again (its time zone, say): the other overdue
    schedule is handed over all the same, and the pass counts the failure."""
    import app as app_module
    from chalicelib import wiring
    from chalicelib.domain.errors import DependencyDown

    refused, repaired = (api.post("/tasks/t", {**JOB, "cron": "* * * * *"}).json for _ in range(2))
    JobM = wiring.backend().extras["tables"].Job
    for created, late in ((refused, 900), (repaired, 600)):  # the refused one comes first
        JobM(job_id=created["jobId"]).update(actions=[JobM.next_run_at.set(time.time() - late)])
    scheduler = wiring.backend().scheduler
    put_cron = scheduler.put_cron

    def refuse_one(name, *args, **kwargs):
        if name.endswith(refused["jobId"]):
            raise DependencyDown("Scheduler: ValidationException: invalid time zone")
        return put_cron(name, *args, **kwargs)

    monkeypatch.setattr(scheduler, "put_cron", refuse_one)
    counts = app_module.reconcile(scheduled_event("reconciler"), None)
    assert (counts["schedules"], counts["errors"]) == (1, 1)
    handed = sqs.receive_message(QueueUrl=aws["JOBS_QUEUE_URL"], MaxNumberOfMessages=10, VisibilityTimeout=0)
    assert {json.loads(m["Body"])["jobId"] for m in handed["Messages"]} >= {repaired["jobId"]}


def test_status_lists_pending_schedules(api, runner):
    created = api.post("/tasks/t", {**JOB, "cron": "0 * * * *"}).json
    scheduled = api.get("/status").json["scheduled"]
    assert scheduled["count"] == 1
    assert [j["jobId"] for j in scheduled["jobs"]] == [created["jobId"]]
    assert scheduled["jobs"][0]["nextRunAt"] > time.time()


def test_the_local_scheduler_fires_stored_schedules_into_the_queue(api, runner, scheduler, sqs, aws):
    from infra.local.scheduler import ScheduleFirer

    created = api.post("/tasks/t", {**JOB, "cron": "* * * * *"}).json
    local = ScheduleFirer(scheduler, sqs, "test")
    assert local.fire_due(time.time()) == 0  # first sight: armed for the next minute
    assert local.fire_due(time.time() + 61) == 1
    body = json.loads(sqs.receive_message(QueueUrl=aws["JOBS_QUEUE_URL"], MaxNumberOfMessages=10)["Messages"][0]["Body"])
    assert body["kind"] == "tick" and body["jobId"] == created["jobId"]
    assert body["scheduledAt"].endswith(":00Z")


def test_a_batch_is_handled_soonest_due_first(api, runner, sqs, aws):
    """A launch due now is not held behind a firing that waits for its second."""
    import app as app_module
    from infra.local.event_sources import sqs_event

    waiting = api.post("/tasks/t", {**JOB, "startIn": "10s"}).json
    now = api.post("/tasks/t", JOB).json
    waiting_message = {"kind": "schedule", "taskId": "t", "jobId": waiting["jobId"], "dueAt": time.time() + 1.5,
                       "version": _version(aws, waiting["jobId"])}
    launch = {"taskId": "t", "jobId": now["jobId"], "executionId": now["executionId"]}
    messages = [{"MessageId": str(i), "ReceiptHandle": str(i), "Body": json.dumps(body)}
                for i, body in enumerate([waiting_message, launch])]
    app_module.dispatch_jobs(sqs_event(messages, aws["JOBS_QUEUE_ARN"], REGION), None)
    assert [execution_id for execution_id, _ in runner.runs][0] == now["executionId"]
    assert len(runner.runs) == 2


def test_a_firing_less_than_a_second_past_the_early_margin_comes_back_a_second_later_not_at_once():
    """SQS delays are whole seconds: one that rounds down to 0 would hand the firing straight back,
    again and again, until the margin was reached."""
    from chalicelib.config import Settings
    from chalicelib.domain.messages import ScheduleFiring
    from chalicelib.services.scheduling import EARLY, Scheduling

    class Queue:
        def __init__(self) -> None:
            self.sent: list[float] = []

        def send(self, message, delay_seconds: float = 0) -> str:
            self.sent.append(delay_seconds)
            return "id"

    queue = Queue()
    settings = Settings(region="us-east-1", tasks_table="t", jobs_table="j", executions_table="e", jobs_queue_url="q")
    scheduling = Scheduling(None, None, None, queue, None, None, settings, clock=lambda: 1000.0)  # type: ignore[arg-type]
    firing = ScheduleFiring("t", "j", "v", 1000.0 + EARLY + 0.4)

    assert scheduling._wait(firing, firing.due_at) is True
    assert queue.sent == [1]
    assert scheduling._wait(firing, 1000.0 + EARLY) is False  # within the margin: handled now
