"""Schedule controls through the app on moto, as a client sees them: pause and resume (Scheduler's
own State follows the job), run now, overlap buffer, the catch-up window, jitter and next runs."""
from __future__ import annotations

import json
import time

import pytest

from chalicelib.domain.schedule import jitter_offset, next_runs
from infra.local.event_sources import scheduled_event
from tests.component.test_scheduling import JOB, YEARLY, fire, job, schedules, tick


@pytest.fixture
def scheduler(aws):
    import boto3

    from tests.component.engine_support import REGION

    return boto3.client("scheduler", region_name=REGION)


def version_of(job_id: str) -> str:
    from chalicelib import wiring

    return wiring.backend().jobs.get_job(job_id).schedule_version


def control(api, created, verb: str):
    return api.post(f"/tasks/{created['taskId']}/jobs/{created['jobId']}/{verb}")


def state(scheduler, created) -> str:
    return schedules(scheduler)[f"{created['taskId']}-{created['jobId']}"]["State"]


# pause and resume -----------------------------------------------------------------------------------


def test_a_paused_job_disables_its_schedule_and_a_tick_that_still_comes_runs_nothing(api, runner, scheduler,
                                                                                      sqs, aws):
    created = api.post("/tasks/t", {**JOB, "cron": YEARLY}).json
    before = time.time()

    paused = control(api, created, "pause")

    assert paused.status_code == 200
    shown = paused.json["schedule"]
    assert shown["paused"] is True and shown["pausedAt"] >= before and shown["nextRuns"] == []
    assert shown["nextRunAt"] is None
    assert state(scheduler, created) == "DISABLED"
    fire(sqs, aws, tick(created, version_of(created["jobId"]), 1))
    assert runner.runs == []
    details = job(api, created)["schedule"]
    assert (details["skippedTicks"], details["lastSkipReason"]) == (1, "paused")


def test_pause_and_resume_are_idempotent(api, runner, scheduler):
    created = api.post("/tasks/t", {**JOB, "cron": YEARLY}).json

    first, second = control(api, created, "pause").json, control(api, created, "pause").json
    assert first["schedule"]["pausedAt"] == second["schedule"]["pausedAt"]

    resumed, again = control(api, created, "resume"), control(api, created, "resume")
    assert resumed.status_code == again.status_code == 200
    shown = again.json["schedule"]
    assert shown["paused"] is False and shown["pausedAt"] is None and len(shown["nextRuns"]) == 5
    assert state(scheduler, created) == "ENABLED"


def test_resume_computes_the_next_tick_from_now(api, runner, scheduler):
    created = api.post("/tasks/t", {**JOB, "cron": "0 0 * * *"}).json
    control(api, created, "pause")

    shown = control(api, created, "resume").json["schedule"]

    assert shown["nextRunAt"] == next_runs("0 0 * * *", time.time(), count=1)[0]


@pytest.mark.parametrize("verb", ["pause", "resume"])
def test_a_job_with_no_schedule_cannot_be_paused_or_resumed(api, runner, verb):
    created = api.post("/tasks/t", JOB).json

    refused = control(api, created, verb)

    assert refused.status_code == 409 and created["jobId"] in refused.json["error"]


@pytest.mark.parametrize("verb", ["pause", "resume"])
def test_a_stopped_job_cannot_be_paused_or_resumed(api, runner, verb):
    created = api.post("/tasks/t", {**JOB, "cron": YEARLY}).json
    control(api, created, "stop")

    refused = control(api, created, verb)

    assert refused.status_code == 409 and created["jobId"] in refused.json["error"]


def test_a_paused_one_shot_runs_nothing_and_runs_on_resume_within_its_window(api, runner, sqs, aws):
    created = api.post("/tasks/t", {**JOB, "startIn": "10s", "catchupWindow": 600}).json
    control(api, created, "pause")
    firing = {"kind": "schedule", "taskId": "t", "jobId": created["jobId"], "dueAt": time.time() - 1,
              "version": version_of(created["jobId"])}
    fire(sqs, aws, firing)
    assert runner.runs == [] and job(api, created)["schedule"]["pending"] is True

    control(api, created, "resume")
    fire(sqs, aws, firing)  # what the resume armed: its time has come

    assert len(runner.runs) == 1 and job(api, created)["schedule"]["pending"] is False


def test_the_reconciler_disables_the_schedule_of_a_paused_job_that_still_fires(api, runner, scheduler, aws):
    import app as app_module
    from chalicelib import wiring

    created = api.post("/tasks/t", {**JOB, "cron": "* * * * *"}).json
    control(api, created, "pause")
    stored = wiring.backend().jobs.get_job(created["jobId"])
    wiring.get_scheduling().pausing._set_state(stored, enabled=True)  # the pause's Scheduler call was lost
    JobM = wiring.backend().extras["tables"].Job
    JobM(job_id=created["jobId"]).update(actions=[JobM.next_run_at.set(time.time() - 600)])  # ticks went by

    app_module.reconcile(scheduled_event("reconciler"), None)

    assert state(scheduler, created) == "DISABLED"
    shown = job(api, created)["schedule"]
    assert shown["paused"] is True and shown["skippedTicks"] >= 10 and shown["lastSkipReason"] == "paused"
    assert wiring.backend().jobs.get_job(created["jobId"]).next_run_at > time.time() and runner.runs == []


def test_the_reconciler_enables_the_schedule_of_a_resumed_job_that_does_not_fire(api, runner, scheduler, aws):
    import app as app_module
    from chalicelib import wiring

    created = api.post("/tasks/t", {**JOB, "cron": "* * * * *"}).json
    control(api, created, "pause")
    control(api, created, "resume")
    stored = wiring.backend().jobs.get_job(created["jobId"])
    wiring.get_scheduling().pausing._set_state(stored.with_changes(paused_at=1.0), enabled=False)  # lost call
    JobM = wiring.backend().extras["tables"].Job
    JobM(job_id=created["jobId"]).update(actions=[JobM.next_run_at.set(time.time() - 600)])

    app_module.reconcile(scheduled_event("reconciler"), None)

    assert state(scheduler, created) == "ENABLED"


# run now ----------------------------------------------------------------------------------------


def test_run_now_runs_a_scheduled_job_that_never_ran_and_leaves_its_schedule(api, runner):
    created = api.post("/tasks/t", {**JOB, "cron": YEARLY}).json
    before = job(api, created)["schedule"]

    ran = control(api, created, "retry")

    assert ran.status_code == 200 and ran.json["executionId"]
    details = job(api, created)
    assert details["executions"][0]["metadata"] == {"runNow": True}
    assert details["schedule"]["nextRunAt"] == before["nextRunAt"] and details["schedule"]["pending"] is True


def test_run_now_is_refused_while_an_execution_runs(api, runner):
    created = api.post("/tasks/t", {**JOB, "cron": YEARLY}).json
    control(api, created, "retry")

    assert control(api, created, "retry").status_code == 409


def test_run_now_runs_a_stopped_one_shot_that_never_ran_once_and_schedules_nothing(api, runner):
    created = api.post("/tasks/t", {**JOB, "startIn": "10s"}).json
    control(api, created, "stop")

    ran = control(api, created, "retry")

    assert ran.status_code == 200
    details = job(api, created)
    assert details["executionCount"] == 1 and details["schedule"]["pending"] is False


# overlap buffer -----------------------------------------------------------------------------------


def test_a_tick_while_the_previous_runs_waits_then_runs_and_one_more_is_skipped(api, runner, sqs, aws):
    created = api.post("/tasks/t", {**JOB, "cron": YEARLY, "overlap": "buffer"}).json
    version = version_of(created["jobId"])
    fire(sqs, aws, tick(created, version, 3))
    fire(sqs, aws, tick(created, version, 2))  # waits
    fire(sqs, aws, tick(created, version, 1))  # one waits already: skipped
    shown = job(api, created)
    assert shown["executionCount"] == 1 and shown["schedule"]["waitingTick"] is not None
    assert shown["schedule"]["skippedTicks"] == 1

    first = shown["executions"][0]
    api.post(first["url"].replace("http://fastlane.test", "") + "/stop")
    waiting = {**tick(created, version, 0), "scheduledAt": time.strftime(
        "%Y-%m-%dT%H:%M:%SZ", time.gmtime(shown["schedule"]["waitingTick"])), "buffered": True}
    fire(sqs, aws, waiting)  # its next look

    after = job(api, created)
    assert after["executionCount"] == 2 and after["schedule"]["waitingTick"] is None
    assert "bufferedAt" in after["executions"][0]["metadata"]


def test_a_tick_that_finds_the_job_idle_while_one_waits_runs_the_waiting_one_first_then_waits(api, runner, sqs,
                                                                                               aws):
    created = api.post("/tasks/t", {**JOB, "cron": YEARLY, "overlap": "buffer"}).json
    version = version_of(created["jobId"])
    fire(sqs, aws, tick(created, version, 3))
    fire(sqs, aws, tick(created, version, 2))  # waits
    first = job(api, created)["executions"][0]
    api.post(first["url"].replace("http://fastlane.test", "") + "/stop")  # ends before the waiting one looks again

    fire(sqs, aws, tick(created, version, 1))

    after = job(api, created)
    assert after["executionCount"] == 2 and "bufferedAt" in after["executions"][0]["metadata"]
    assert after["schedule"]["waitingTick"] is not None and after["schedule"]["skippedTicks"] == 0


# catch-up window ---------------------------------------------------------------------------------------


def test_a_late_tick_within_the_window_runs_and_says_how_late(api, runner, sqs, aws):
    created = api.post("/tasks/t", {**JOB, "cron": YEARLY, "catchupWindow": 300}).json

    fire(sqs, aws, tick(created, version_of(created["jobId"]), 200))

    details = job(api, created)
    assert details["executionCount"] == 1 and details["executions"][0]["metadata"]["lateBy"] >= 200


def test_a_late_tick_past_the_window_is_skipped_and_says_why(api, runner, sqs, aws):
    created = api.post("/tasks/t", {**JOB, "cron": YEARLY, "catchupWindow": 30}).json

    fire(sqs, aws, tick(created, version_of(created["jobId"]), 200))

    shown = job(api, created)["schedule"]
    assert runner.runs == [] and shown["skippedTicks"] == 1 and "catch-up window" in shown["lastSkipReason"]


def test_after_an_outage_only_the_latest_missed_tick_runs(api, runner, sqs, aws):
    created = api.post("/tasks/t", {**JOB, "cron": "* * * * *", "catchupWindow": 3600}).json
    version = version_of(created["jobId"])
    now = time.time()
    ticks = [t for t in next_runs("* * * * *", now - 300, count=5) if t <= now]

    for moment in ticks:  # delivered together once the outage is over
        fire(sqs, aws, {**tick(created, version, 0),
                        "scheduledAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(moment))})

    details = job(api, created)
    assert details["executionCount"] == 1
    assert details["executions"][0]["metadata"]["scheduledAt"] == ticks[-1]
    assert details["schedule"]["skippedTicks"] == len(ticks) - 1


# jitter and next runs ---------------------------------------------------------------------------


def test_next_runs_are_five_fire_times_in_the_time_zone_with_their_jitter(api, runner):
    created = api.post("/tasks/t", {**JOB, "cron": "30 2 * * *", "timezone": "Europe/Paris", "jitter": 600}).json

    shown = job(api, created)["schedule"]

    ticks = next_runs("30 2 * * *", time.time(), "Europe/Paris")
    version = version_of(created["jobId"])
    assert shown["nextRuns"] == [round(t + jitter_offset(created["jobId"], version, t, 600), 3) for t in ticks]
    assert all(0 <= run - t < 600 for run, t in zip(shown["nextRuns"], ticks, strict=True))


def test_a_jittered_tick_comes_back_at_its_offset(api, runner, sqs, aws):
    created = api.post("/tasks/t", {**JOB, "cron": YEARLY, "jitter": 600}).json
    version = version_of(created["jobId"])
    # A tick (each second of the next minute is one a delivery may name) whose offset is long
    # enough to see it wait: one in 200 is not, and 60 of those in a row do not happen.
    now = float(int(time.time()))
    due = next(moment for moment in (now + k for k in range(60))
               if jitter_offset(created["jobId"], version, moment, 600) > 3)

    fire(sqs, aws, {**tick(created, version, 0), "scheduledAt": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                               time.gmtime(due))})

    assert runner.runs == []
    delayed = sqs.get_queue_attributes(QueueUrl=aws["JOBS_QUEUE_URL"], AttributeNames=["All"])["Attributes"]
    assert delayed["ApproximateNumberOfMessagesDelayed"] == "1"


def test_job_details_show_the_schedule_fields(api, runner):
    created = api.post("/tasks/t", {**JOB, "cron": YEARLY}).json

    shown = job(api, created)["schedule"]

    assert {"paused", "pausedAt", "skippedTicks", "lastSkippedAt", "lastSkipReason", "nextRuns",
            "catchupWindow"} <= set(shown)
    assert json.dumps(shown)  # plain JSON
