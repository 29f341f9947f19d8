"""The reconciler on the aws adapters (moto), with ECS stood in by a recorder that can be made to
throttle, fail, lose events and answer MISSING: every side effect is repeated until it is seen."""
from __future__ import annotations

import json
import time

import pytest

from chalicelib.domain.ecs import TaskState
from chalicelib.domain.errors import DependencyDown, LaunchFailed
from infra.local.event_sources import scheduled_event
from tests.component.conftest import execution
from tests.component.engine_support import install_engine, key_of, send_events, task_event

SLEEPER = {"image": "ubuntu", "command": "sleep 600"}


@pytest.fixture
def tune(monkeypatch, runner):
    """Settings for the rest of a test (environment variables), with the engine built again."""
    from chalicelib import wiring

    def apply(**env: str) -> None:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        wiring.reset()
        install_engine(monkeypatch, runner)

    return apply


def reconcile() -> dict[str, int]:
    import app as app_module

    return app_module.reconcile(scheduled_event("reconciler"), None)


def running_in_pool() -> int:
    from chalicelib import wiring

    return sum(wiring.backend().pools.pool_running(["default"]).values())


def stored(created):
    from chalicelib import wiring

    return wiring.backend().executions.get_execution(created["jobId"], created["executionId"])


class FlakyStop:
    """StopTask that fails the first `failures` times, as a throttled or unreachable ECS does."""

    def __init__(self, runner, failures: int) -> None:
        self.failures, self.calls, self._stop = failures, 0, runner.stop

    def __call__(self, task_arn: str, reason: str) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise DependencyDown("ECS: ThrottlingException: Rate exceeded")
        self._stop(task_arn, reason)


def test_a_stop_that_failed_is_repeated_until_the_task_is_seen_stopped(api, runner, drive, tune, monkeypatch):
    tune(MISSING_GRACE_SECONDS="600")
    created = api.post("/tasks/t", SLEEPER).json
    drive("jobs")
    arn = runner.tasks[created["executionId"]]
    runner.states[arn] = TaskState(arn=arn, last_status="RUNNING", started_at=1.0)
    flaky = FlakyStop(runner, failures=2)
    monkeypatch.setattr(runner, "stop", flaky)

    stop = api.post(f"/tasks/t/jobs/{created['jobId']}/executions/{created['executionId']}/stop")
    assert stop.status_code == 200 and execution(api, created)["status"] == "stopped"
    assert running_in_pool() == 1  # the container is not seen gone: its slot is held

    assert reconcile()["stopped"] == 1 and flaky.calls == 2  # asked again, failed again
    assert reconcile()["stopped"] == 1 and flaky.calls == 3 and runner.stopped == [(arn, "stopped by a client")]
    assert running_in_pool() == 1

    # ECS reports it stopped (its event lost): the slot is given back and its exit code kept.
    runner.states[arn] = TaskState(arn=arn, last_status="STOPPED", exit_code=143, started_at=1.0, stopped_at=2.0)
    assert reconcile()["released"] == 1
    assert running_in_pool() == 0
    ended = execution(api, created)
    assert (ended["status"], ended["exitCode"]) == ("stopped", 143)
    assert reconcile()["stopped"] == 0 and flaky.calls == 3  # nothing left to do


def started(api, runner, drive, sqs, aws, timeout: float, started_at: str) -> tuple[dict, str]:
    """A sleeper with `timeout`, launched and seen RUNNING since `started_at`: its job and task ARN."""
    created = api.post("/tasks/t", {**SLEEPER, "timeout": timeout}).json
    drive("jobs")
    arn = runner.tasks[created["executionId"]]
    send_events(sqs, aws["EVENTS_QUEUE_URL"], task_event(key_of(created), arn, "RUNNING", started_at=started_at))
    drive("events")
    return created, arn


@pytest.mark.parametrize(("stopped_after", "status", "stopped"), [(0.5, "done", False), (5.0, "timedout", True)])
def test_a_timeout_check_asks_ecs_first_when_the_stopped_event_may_have_been_lost(
        api, runner, drive, sqs, aws, stopped_after, status, stopped):
    """A container that exited 0 before its deadline, its STOPPED event lost and the reconciler's
    pass not come yet: the check records its own ending, not a timeout (and no retry follows).
    One that ran past its deadline is timed out as before."""
    created, arn = started(api, runner, drive, sqs, aws, 1, "2020-01-01T00:00:00.000Z")  # deadline: 1 s later
    runner.states[arn] = TaskState(arn=arn, last_status="STOPPED", exit_code=0, started_at=1577836800.0,
                                   stopped_at=1577836800.0 + stopped_after)
    drive("jobs")  # the timeout check, due long ago
    ended = execution(api, created)
    assert ended["status"] == status and bool(runner.stopped) is stopped
    if status == "done":
        assert ended["exitCode"] == 0 and running_in_pool() == 0


def test_a_timed_out_container_whose_stopped_event_is_lost_frees_its_slot(api, runner, drive, sqs, aws, tune):
    tune(MISSING_GRACE_SECONDS="600")
    created, arn = started(api, runner, drive, sqs, aws, 1, "2020-01-01T00:00:00.000Z")
    runner.states[arn] = TaskState(arn=arn, last_status="RUNNING", started_at=1577836800.0)
    assert reconcile()["timedout"] == 1
    assert execution(api, created)["status"] == "timedout" and runner.stopped[0][0] == arn
    assert running_in_pool() == 1
    runner.states[arn] = TaskState(arn=arn, last_status="STOPPED", exit_code=137, started_at=1577836800.0,
                                   stopped_at=1577836802.0)
    reconcile()
    assert running_in_pool() == 0 and execution(api, created)["exitCode"] == 137


def test_a_task_gone_after_a_stop_frees_its_slot_after_the_grace(api, runner, drive, tune):
    tune(MISSING_GRACE_SECONDS="600")
    created = api.post("/tasks/t", SLEEPER).json
    drive("jobs")
    api.post(f"/tasks/t/jobs/{created['jobId']}/executions/{created['executionId']}/stop")
    reconcile()  # ECS answers MISSING (runner.states has no state): within the grace, kept
    assert running_in_pool() == 1
    tune(MISSING_GRACE_SECONDS="-1")
    assert reconcile()["released"] == 1 and running_in_pool() == 0


def test_a_launch_whose_answer_was_lost_is_found_and_stopped_after_a_stop(api, runner, drive, tune):
    """The dispatcher died between RunTask and recording the task, a client then stopped the
    execution, and the task's RUNNING event was lost: the reconciler finds the task by its
    execution id and stops it; the slot is held until it is seen stopped."""
    from chalicelib import wiring

    created = api.post("/tasks/t", SLEEPER).json
    backend = wiring.backend()
    current = stored(created)
    backend.pools.take_slot(current, "default", 0)
    arn = runner.run(stored(created), None, wiring.get_engine().pools[0])  # launched, never recorded
    runner.states[arn] = TaskState(arn=arn, last_status="RUNNING", started_at=1.0)
    stop = api.post(f"/tasks/t/jobs/{created['jobId']}/executions/{created['executionId']}/stop")
    assert stop.status_code == 200 and runner.stopped == []  # no task known yet

    tune(MISSING_GRACE_SECONDS="600")
    reconcile()
    assert runner.stopped == []  # a launch may still be in flight: not yet looked up
    tune(MISSING_GRACE_SECONDS="-1")
    assert reconcile()["stopped"] == 1
    assert runner.stopped == [(arn, "stopped by a client")] and stored(created).task_arn == arn
    runner.states[arn] = TaskState(arn=arn, last_status="STOPPED", exit_code=143, started_at=1.0, stopped_at=2.0)
    reconcile()
    assert running_in_pool() == 0


def test_a_put_while_enqueued_launches_the_parameters_the_execution_was_made_with(api, runner, drive):
    created = api.post("/tasks/t", {"image": "ubuntu:22.04", "command": "echo old", "envs": {"A": "old"}}).json
    seen = []
    original = runner.run

    def run(execution, spec, pool):
        seen.append((execution.execution_id, spec.image, spec.command, dict(spec.envs)))
        return original(execution, spec, pool)

    runner.run = run
    put = api.put(f"/tasks/t/jobs/{created['jobId']}", {"image": "ubuntu:24.04", "command": "echo new",
                                                         "envs": {"A": "new"}})
    assert put.status_code == 200
    drive("jobs")
    by_execution = {execution_id: rest for execution_id, *rest in seen}
    assert by_execution[created["executionId"]] == ["ubuntu:22.04", "echo old", {"A": "old"}]
    assert by_execution[put.json["executionId"]] == ["ubuntu:24.04", "echo new", {"A": "new"}]


def test_a_redeploy_that_changed_the_pool_launches_earlier_executions_as_they_were_made(api, runner, drive, tune):
    """The cluster and size are frozen on the execution with its launch parameters: a RunTask
    sent again under the same client token is the same request, and a task is looked for where
    it was launched."""
    tune(POOLS=json.dumps([{"name": "gpu", "match": ".*", "cluster": "blue", "cpu": "256", "memory": "512"}]))
    created = api.post("/tasks/t", SLEEPER).json
    tune(POOLS=json.dumps([{"name": "gpu", "match": ".*", "cluster": "green", "cpu": "1024", "memory": "2048"}]))
    later = api.post("/tasks/t", SLEEPER).json
    seen = {}
    original = runner.run

    def run(execution, spec, pool):
        seen[execution.execution_id] = (pool.name, pool.cluster, pool.cpu, pool.memory)
        return original(execution, spec, pool)

    runner.run = run
    drive("jobs")
    assert seen == {created["executionId"]: ("gpu", "blue", "256", "512"),
                    later["executionId"]: ("gpu", "green", "1024", "2048")}
    assert ":task/blue/" in runner.tasks[created["executionId"]]


def test_copies_of_a_replaced_launch_message_do_nothing(api, runner, drive, sqs, aws):
    """Under throttling each attempt replaces the launch message; a copy of an earlier one (a
    redelivery) must not start a second chain of attempts."""
    created = api.post("/tasks/t", SLEEPER).json
    stale = json.dumps({"taskId": "t", "jobId": created["jobId"], "executionId": created["executionId"]})
    runner.failure = LaunchFailed("ThrottlingException: Rate exceeded", retryable=True)
    drive("jobs")  # throttled: the next attempt is queued with the next generation
    assert stored(created).launches == 1
    attempts = []
    original = runner.run

    def run(execution, spec, pool):
        attempts.append(execution.execution_id)
        return original(execution, spec, pool)

    runner.run = run
    sqs.send_message(QueueUrl=aws["JOBS_QUEUE_URL"], MessageBody=stale)  # a redelivered copy
    import app as app_module
    from infra.local.event_sources import deliver_once

    deliver_once(sqs, aws["JOBS_QUEUE_URL"], app_module.dispatch_jobs)
    assert attempts == [] and stored(created).launches == 1


def test_a_lost_launch_is_resent_a_bounded_number_of_times_then_failed(api, runner, sqs, aws, tune):
    tune(RECONCILE_GRACE_SECONDS="-1", LAUNCH_RESENDS="2")
    created = api.post("/tasks/t", SLEEPER).json

    def lose_everything() -> None:
        while messages := sqs.receive_message(QueueUrl=aws["JOBS_QUEUE_URL"], MaxNumberOfMessages=10).get("Messages"):
            for message in messages:
                sqs.delete_message(QueueUrl=aws["JOBS_QUEUE_URL"], ReceiptHandle=message["ReceiptHandle"])

    lose_everything()
    assert reconcile()["resent"] == 1
    lose_everything()
    assert reconcile()["resent"] == 1
    lose_everything()
    assert reconcile()["finalised"] == 1
    ended = execution(api, created)
    assert ended["status"] == "failed" and "launch message was lost 3 times" in ended["error"]
    assert runner.runs == []


def test_the_reconciler_repairs_a_pool_count_that_drifted_when_seen_twice(api, runner, drive):
    from chalicelib import wiring

    created = api.post("/tasks/t", SLEEPER).json
    drive("jobs")
    arn = runner.tasks[created["executionId"]]
    runner.states[arn] = TaskState(arn=arn, last_status="RUNNING", started_at=1.0)
    pools = wiring.backend().pools
    assert pools.recount("default", 1, 4)  # a count that no longer matches its holders
    assert reconcile()["recounted"] == 0 and running_in_pool() == 4  # seen once: reported, not yet repaired
    assert reconcile()["recounted"] == 1 and running_in_pool() == 1


def test_a_running_event_for_a_job_stopped_meanwhile_stops_its_container(api, runner, drive, sqs, aws):
    created = api.post("/tasks/t", SLEEPER).json
    drive("jobs")
    from chalicelib import wiring

    wiring.backend().jobs.set_job_stopped(created["jobId"], True)  # its stop raced the launch
    arn = runner.tasks[created["executionId"]]
    send_events(sqs, aws["EVENTS_QUEUE_URL"], task_event(key_of(created), arn, "RUNNING"))
    drive("events")
    assert execution(api, created)["status"] == "stopped" and runner.stopped[0][0] == arn



def delayed_checks(sqs, aws) -> int:
    attributes = sqs.get_queue_attributes(QueueUrl=aws["JOBS_QUEUE_URL"], AttributeNames=["All"])["Attributes"]
    return int(attributes["ApproximateNumberOfMessagesDelayed"]) + int(attributes["ApproximateNumberOfMessages"])


def iso(moment: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def test_a_long_timeout_gets_its_check_from_the_reconcilers_last_pass_before_it(api, runner, drive, sqs, aws, tune):
    tune(RECONCILE_INTERVAL="60", MISSING_GRACE_SECONDS="600")
    since = time.time() - 300  # 300 s before its deadline: more than two intervals
    created, arn = started(api, runner, drive, sqs, aws, 600, iso(since))
    runner.states[arn] = TaskState(arn=arn, last_status="RUNNING", started_at=since)
    assert execution(api, created)["status"] == "running"
    assert delayed_checks(sqs, aws) == 0  # no message at the start: most executions end well before

    assert reconcile()["checks"] == 0  # still more than two intervals away
    # As if it had started 510 s ago: the deadline is 90 s away, within this pass's window.
    from chalicelib import wiring

    wiring.backend().executions.update_execution(stored(created), None, started_at=since - 210)
    assert reconcile()["checks"] == 1
    assert delayed_checks(sqs, aws) == 1  # the check, due at the deadline to the second


def test_a_short_timeout_gets_its_check_when_the_execution_starts(api, runner, drive, sqs, aws, tune):
    tune(RECONCILE_INTERVAL="60")
    started(api, runner, drive, sqs, aws, 90, iso(time.time()))
    assert delayed_checks(sqs, aws) == 1


def test_an_execution_that_cannot_be_repaired_leaves_the_rest_of_the_pass_to_go_on(api, runner, drive, sqs, aws,
                                                                                     monkeypatch):
    """One execution whose every write is refused (a poison record, a refused write): the
    others are still timed out, the pool is still recounted, and the pass says it failed in part."""
    from chalicelib import wiring
    from chalicelib.domain.errors import DependencyDown

    # long timeouts: their checks are the reconciler's, not messages of their own
    jobs = [started(api, runner, drive, sqs, aws, 600, "2020-01-01T00:00:00.000Z") for _ in range(3)]
    for _, arn in jobs:
        runner.states[arn] = TaskState(arn=arn, last_status="RUNNING", started_at=1577836800.0)
    poison = jobs[1][0]["executionId"]
    executions = wiring.backend().executions
    transition = executions.transition

    def refused(execution, *args, **kwargs):
        if execution.execution_id == poison:
            raise DependencyDown("DynamoDB: AccessDeniedException")
        return transition(execution, *args, **kwargs)

    monkeypatch.setattr(executions, "transition", refused)
    assert wiring.backend().pools.recount("default", 3, 7)  # a count that no longer matches its holders

    first = reconcile()
    assert (first["timedout"], first["errors"]) == (2, 1)
    assert [execution(api, created)["status"] for created, _ in jobs] == ["timedout", "running", "timedout"]
    second = reconcile()  # the poison fails again; the drift seen twice is repaired all the same
    assert (second["errors"], second["recounted"]) == (1, 1) and running_in_pool() == 3


def test_a_batch_of_tasks_ecs_will_not_describe_still_has_its_timeouts_enforced(api, runner, drive, sqs, aws,
                                                                                 monkeypatch):
    from chalicelib.domain.errors import DependencyDown

    created, arn = started(api, runner, drive, sqs, aws, 600, "2020-01-01T00:00:00.000Z")

    def refused(arns):
        raise DependencyDown("ECS: AccessDeniedException")

    monkeypatch.setattr(runner, "describe", refused)
    counts = reconcile()
    assert (counts["timedout"], counts["finalised"], counts["errors"]) == (1, 0, 1)
    assert execution(api, created)["status"] == "timedout" and runner.stopped[0][0] == arn


def test_a_lost_launch_behind_a_backlog_waiting_out_long_backoffs_is_resent_and_pools_are_recounted(api, runner, sqs,
                                                                                                   aws):
    """More than a page of older executions wait out delays (retries' backoffs, a full pool):
    the reconciler's worklist is ordered by when each launch is due, so a newer one whose launch
    message was lost is resent on the next pass, and the backlog does not stop the recount."""
    from chalicelib import wiring
    from chalicelib.adapters.dynamo.mapping import execution_to_item
    from chalicelib.domain.model import Job, JobSpec, new_execution, new_id

    backend, engine = wiring.backend(), wiring.get_engine()
    at = time.time()
    spec = JobSpec(image="ubuntu", command="sleep 1")
    ExecM = backend.extras["tables"].Execution
    with ExecM.batch_write() as batch:  # the backlog, written as its executions' items alone (fast on moto)
        for n in range(501):
            job = Job(task_id="t", job_id=new_id(), spec=spec, created_at=at - 7200 + n, last_modified_at=at - 7200 + n)
            waiting = new_execution(job, job.created_at, placement=engine.placement("t"), due_at=at + 3600)
            batch.save(execution_to_item(ExecM, waiting, 1))
    lost = api.post("/tasks/t", SLEEPER).json
    lose = sqs.receive_message(QueueUrl=aws["JOBS_QUEUE_URL"], MaxNumberOfMessages=1)["Messages"][0]
    sqs.delete_message(QueueUrl=aws["JOBS_QUEUE_URL"], ReceiptHandle=lose["ReceiptHandle"])
    backend.executions.update_execution(stored(lost), None, due_at=at - 600)  # its launch was due 10 minutes ago
    assert backend.pools.recount("default", 0, 3)  # a count that no longer matches its holders (none)

    first = reconcile()
    assert first["resent"] == 1 and stored(lost).resends == 1
    assert reconcile()["recounted"] == 1 and running_in_pool() == 0


def test_a_stored_record_that_cannot_be_read_leaves_the_others_repaired(api, runner, drive, sqs, aws):
    """A record the service cannot read (written by another version, edited by hand) in the
    worklist of running executions: the others are still timed out, the record is counted as an
    error on every pass, and pools are not recounted without knowing whether it holds a slot."""
    import os

    import boto3

    jobs = [started(api, runner, drive, sqs, aws, 600, "2020-01-01T00:00:00.000Z") for _ in range(3)]
    for _, arn in jobs:
        runner.states[arn] = TaskState(arn=arn, last_status="RUNNING", started_at=1577836800.0)
    poison = jobs[1][0]
    boto3.client("dynamodb", region_name="us-east-1").update_item(
        TableName=os.environ["EXECUTIONS_TABLE"], Key={"jobId": {"S": poison["jobId"]},
                                                "executionId": {"S": poison["executionId"]}},
        UpdateExpression="SET #s = :s", ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":s": {"S": "paused-by-a-newer-version"}})

    counts = reconcile()
    assert (counts["timedout"], counts["errors"], counts["recounted"]) == (2, 1, 0)
    assert [execution(api, created)["status"] for created in (jobs[0][0], jobs[2][0])] == ["timedout", "timedout"]
    assert reconcile()["errors"] == 1  # still there, still counted; nothing else to do
