"""stdout/stderr/logs read from CloudWatch Logs, and the ECS runner against moto's ECS."""
from __future__ import annotations

import time

import boto3
import pytest

from chalicelib.domain.ecs import log_streams, started_by
from infra.local.event_sources import deliver_once
from tests.component.engine_support import REGION, FakeRunner, install_engine, key_of, send_events, task_event


@pytest.fixture
def logs(aws, monkeypatch):
    client = boto3.client("logs", region_name=REGION)
    client.create_log_group(logGroupName="/test/jobs")
    monkeypatch.setenv("LOG_GROUP", "/test/jobs")
    from chalicelib import wiring

    wiring.reset()
    return client


def write(logs, stream, lines):
    try:
        logs.create_log_stream(logGroupName="/test/jobs", logStreamName=stream)
    except logs.exceptions.ResourceAlreadyExistsException:
        pass
    now = int(time.time() * 1000)
    for start in range(0, len(lines), 5000):
        chunk = lines[start:start + 5000]
        logs.put_log_events(logGroupName="/test/jobs", logStreamName=stream,
                            logEvents=[{"timestamp": now, "message": line} for line in chunk])


@pytest.fixture
def finished(api, logs, monkeypatch, sqs, aws):
    """A job that ran, printed to both streams and exited 123."""
    import app as app_module

    runner = FakeRunner()
    install_engine(monkeypatch, runner)
    created = api.post("/tasks/t", {"image": "ubuntu", "command": "bash -c 'echo it failed; exit 123'"}).json
    deliver_once(sqs, aws["JOBS_QUEUE_URL"], app_module.dispatch_jobs)
    arn = runner.tasks[created["executionId"]]
    stdout, stderr = log_streams(arn)
    write(logs, stdout, ["it failed"])
    write(logs, stderr, ["bash: warning"])
    send_events(sqs, aws["EVENTS_QUEUE_URL"], task_event(key_of(created), arn, "STOPPED", exit_code=123))
    deliver_once(sqs, aws["EVENTS_QUEUE_URL"], app_module.monitor_tasks)
    return created, arn


def test_stdout_stderr_and_logs_of_the_latest_execution(api, finished):
    created, _ = finished
    base = f"/tasks/t/jobs/{created['jobId']}"
    stdout = api.request("GET", base + "/stdout")
    assert stdout.body == b"it failed\n"
    assert stdout.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert stdout.headers["Fastlane-Exit-Code"] == "123"
    assert "Link" not in stdout.headers
    assert api.request("GET", base + "/stderr").body == b"bash: warning\n"
    assert api.request("GET", base + "/logs").body == b"it failed\n-=-\nbash: warning\n"


def test_output_of_a_given_execution(api, finished):
    created, _ = finished
    base = created["executionUrl"].replace("http://fastlane.test", "")
    assert api.request("GET", base + "/stdout").body == b"it failed\n"
    assert api.request("GET", base + "/logs").body == b"it failed\n-=-\nbash: warning\n"


def test_large_output_is_paged_never_cut(api, finished, logs, monkeypatch):
    from chalicelib import wiring

    created, arn = finished
    lines = [f"line {i:06d} " + "x" * 80 for i in range(30_000)]
    write(logs, log_streams(arn)[0], lines)
    monkeypatch.setenv("LOG_PAGE_BYTES", "200000")
    wiring.reset()
    install_engine(monkeypatch, FakeRunner())
    url = created["executionUrl"].replace("http://fastlane.test", "") + "/stdout"
    received, pages = [], 0
    while url:
        page = api.request("GET", url)
        assert page.status_code == 200
        assert len(page.body) < 200_000 + 1_100_000
        received.append(page.body.decode())
        pages += 1
        link = page.headers.get("Link")
        url = link[1:link.index(">")].replace("http://fastlane.test", "") if link else None
    text = "".join(received)
    assert text.splitlines() == ["it failed"] + lines
    assert pages > 1


def test_the_details_of_a_long_output_hold_its_true_end_read_back_in_one_call(api, finished, logs, monkeypatch):
    """Read from the head, the details would have had to page through the whole stream (and, past
    16 pages, held the end of what they had read); read back from the end, one call finds the tail."""
    from chalicelib import wiring

    created, arn = finished
    lines = [f"line {i:06d} " + "x" * 80 for i in range(30_000)]  # 2.8 MB, 28 pages of 100 KB
    write(logs, log_streams(arn)[0], lines)
    monkeypatch.setenv("LOG_PAGE_BYTES", "100000")
    wiring.reset()
    install_engine(monkeypatch, FakeRunner())
    calls = []
    wiring.client("logs").meta.events.register("before-parameter-build.*.GetLogEvents", lambda params, **_: calls.append(params))

    execution = api.get(created["executionUrl"].replace("http://fastlane.test", "")).json["execution"]

    assert execution["log"].endswith(lines[-1] + "\n") and execution["logTruncated"] is True
    assert len(execution["log"].encode()) <= execution["outputLimitBytes"] == 64 * 1024
    assert execution["log"].splitlines()[-2] == lines[-2]
    assert execution["error"].startswith("bash: warning\n") and execution["errorTruncated"] is False
    by_stream = [call["logStreamName"] for call in calls]
    assert by_stream.count(log_streams(arn)[0]) == 1  # more than 64 KiB in the first call back
    assert by_stream.count(log_streams(arn)[1]) == 2  # a short stream: the second call finds its start
    assert all(call["startFromHead"] is False for call in calls)


def test_a_throttled_log_store_leaves_the_output_out_of_the_details_and_makes_a_read_503(api, finished):
    """What a poller comes for is the status, which the executions table answered: the details
    say the output could not be read this time instead of failing whole; the output's own route,
    which has nothing else to give, is a 503 (AWS's fault), never a 500."""
    from botocore.exceptions import ClientError

    from chalicelib import wiring

    created, _ = finished

    def throttled(**_: object) -> None:
        raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "GetLogEvents")

    wiring.client("logs").meta.events.register("before-call.*.GetLogEvents", throttled)
    body = api.get(created["executionUrl"].replace("http://fastlane.test", "")).json
    execution = body["execution"]
    assert (execution["status"], execution["exitCode"]) == ("failed", 123)
    assert execution["log"] is None
    assert execution["outputError"] == ("The output could not be read: CloudWatch Logs is unavailable just now; "
                                        "try again in a moment.")
    stdout = api.request("GET", f"/tasks/t/jobs/{created['jobId']}/stdout")
    assert stdout.status_code == 503, stdout.body
    # What AWS said (it can name the account, the role, the log group) stays in the log.
    assert b"Rate exceeded" not in stdout.body and b"CloudWatch Logs is unavailable" in stdout.body


def test_output_of_an_execution_that_never_ran_is_empty_and_unknown_jobs_404(api, logs):
    created = api.post("/tasks/t", {"image": "ubuntu", "command": "true"}).json
    response = api.request("GET", f"/tasks/t/jobs/{created['jobId']}/stdout")
    assert response.status_code == 200 and response.body == b"" and response.headers["Fastlane-Exit-Code"] == ""
    scheduled = api.post("/tasks/t", {"image": "ubuntu", "command": "true", "cron": "0 * * * *"}).json
    assert api.get(f"/tasks/t/jobs/{scheduled['jobId']}/stdout").status_code == 404


def test_a_bad_page_token_is_400(api, finished):
    created, _ = finished
    response = api.get(created["executionUrl"].replace("http://fastlane.test", "") + "/stdout?token=garbage")
    assert response.status_code == 400 and response.json["field"] == "token"


def test_the_runner_registers_one_task_definition_per_image_and_launches_on_fargate(aws):
    from chalicelib import wiring
    from chalicelib.config import get_settings
    from chalicelib.domain.model import Execution, ExecutionStatus, JobSpec, new_id
    from chalicelib.domain.pools import load_pools

    ecs = boto3.client("ecs", region_name=REGION)
    ec2 = boto3.client("ec2", region_name=REGION)
    ecs.create_cluster(clusterName="test")
    subnet = ec2.describe_subnets()["Subnets"][0]["SubnetId"]
    group = ec2.describe_security_groups()["SecurityGroups"][0]["GroupId"]
    import os

    os.environ["SUBNETS"], os.environ["SECURITY_GROUPS"] = subnet, group
    try:
        wiring.reset()
        runner = wiring.backend().runner
        pool = load_pools(get_settings())[0]
        spec = JobSpec(image="ubuntu:22.04", command="echo 'it works'", envs={"MODE": "x"})
        arns, ids = [], []
        for _ in range(2):
            execution = Execution(task_id="t", job_id=new_id(), execution_id=new_id(), image=spec.image,
                                  command=spec.command, status=ExecutionStatus.ENQUEUED, created_at=time.time())
            arns.append(runner.run(execution, spec, pool))
            ids.append(started_by(execution.job_id, execution.execution_id))
        definitions = ecs.list_task_definitions()["taskDefinitionArns"]
        assert len(definitions) == 1
        wiring.reset()
        assert wiring.backend().runner.task_definition("ubuntu:22.04") == definitions[0]  # found again, not re-registered
        assert len(ecs.list_task_definitions()["taskDefinitionArns"]) == 1
        tasks = ecs.describe_tasks(cluster="test", tasks=arns)["tasks"]
        assert sorted(t["startedBy"] for t in tasks) == sorted(ids)
        override = tasks[0]["overrides"]["containerOverrides"][0]
        assert override["command"] == ["echo", "it works"]
        assert {"name": "MODE", "value": "x"} in override["environment"]
        assert runner.describe([arns[0]])[arns[0]].arn == arns[0]
    finally:
        del os.environ["SUBNETS"], os.environ["SECURITY_GROUPS"]
