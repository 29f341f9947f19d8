"""Jobs really run: the acceptance of the execution engine, over HTTP against the local runtime,
once on each backend (local: the state file; aws: the AWS adapters on moto's server)."""
from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator

import boto3
import pytest

from chalicelib.domain.ecs import started_by
from tests.system.conftest import POOLS, Runtime, running_runtime, wait_until

pytestmark = pytest.mark.system
FINAL = {"done", "failed", "timedout", "expired", "stopped"}


@pytest.fixture(scope="module", params=["local", "aws"])
def runtime(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    with running_runtime(tmp_path_factory.mktemp(f"engine-{request.param}"), {"POOLS": POOLS},
                         backend=request.param) as rt:
        yield rt


def run(runtime, task: str, payload: dict) -> tuple[dict, dict]:
    created = runtime.post(f"/tasks/{task}", payload)
    assert created.status_code == 200, created.text
    body = created.json()
    return body, runtime.wait_for_execution(body["executionUrl"], FINAL)


def output(runtime, created: dict, which: str) -> tuple[str, str]:
    response = runtime.get(runtime.path(created["jobUrl"]) + "/" + which)
    assert response.status_code == 200
    return response.text, response.headers["Fastlane-Exit-Code"]


def test_it_works(runtime):
    created, execution = run(runtime, "engine", {"image": "ubuntu", "command": "echo 'it works'"})
    assert (execution["status"], execution["exitCode"]) == ("done", 0)
    assert execution["startedAt"] <= execution["finishedAt"]
    assert output(runtime, created, "stdout") == ("it works\n", "0")


def test_a_failing_command(runtime):
    created, execution = run(runtime, "engine", {"image": "ubuntu", "command": "bash -c 'echo \"it failed\" && exit 123'"})
    assert (execution["status"], execution["exitCode"]) == ("failed", 123)
    assert output(runtime, created, "stdout") == ("it failed\n", "123")
    assert output(runtime, created, "stderr") == ("", "123")


def test_an_unknown_command(runtime):
    created, execution = run(runtime, "engine", {"image": "ubuntu", "command": "bash -c 'qwe'"})
    assert (execution["status"], execution["exitCode"]) == ("failed", 127)
    stderr, _ = output(runtime, created, "stderr")
    assert stderr.startswith("bash: ") and stderr.endswith("qwe: command not found\n")
    logs, _ = output(runtime, created, "logs")
    assert logs == "-=-\n" + stderr


def test_retries_with_backoff(runtime):
    created = runtime.post("/tasks/engine-retries", {"image": "ubuntu", "command": "false", "retries": 2}).json()

    seen: list[dict] = []

    def three_ended():
        job = runtime.get(runtime.path(created["jobUrl"])).json()["job"]
        seen[:] = [job]
        executions = job["executions"]
        return job if len(executions) == 3 and all(e["status"] == "failed" for e in executions) else None

    try:
        job = wait_until(three_ended, timeout=40, what="three failed executions")
    except AssertionError as error:
        raise AssertionError(f"{error}; the job as last seen: {seen}") from None
    assert job["metadata"]["retry_count"] == 2
    starts = sorted(e["startedAt"] for e in job["executions"])
    gaps = [later - earlier for earlier, later in zip(starts, starts[1:], strict=False)]
    assert gaps[0] >= 1.5 and gaps[1] >= 3.5 and gaps[1] > gaps[0]  # 2 s, then 4 s


def test_a_retry_policy_decides_on_the_exit_code_and_on_a_container_that_cannot_start(runtime):
    """Exit 3 is retried (the default) once, with the job's own backoff; a program that does not
    exist is a `launch` failure, which the rule fails at once."""
    policy = {"attempts": 1, "backoff": {"initial": 0.5, "factor": 1, "max": 0.5},
              "rules": [{"reasons": ["launch"], "action": "fail"}]}
    retried = runtime.post("/tasks/engine-policy", {"image": "ubuntu", "command": "bash -c 'exit 3'",
                                                   "retry": policy}).json()
    unstartable, execution = run(runtime, "engine-policy", {"image": "ubuntu", "command": "no-such-program-here",
                                                            "retry": policy})
    assert execution["status"] == "failed"

    def two_ended():
        executions = runtime.get(runtime.path(retried["jobUrl"])).json()["job"]["executions"]
        return executions if len(executions) == 2 and all(e["status"] in FINAL for e in executions) else None

    second, first = wait_until(two_ended, timeout=40, what="the failure and its one retry")
    assert (first["exitCode"], second["exitCode"]) == (3, 3)
    assert second["metadata"] == {"retryOf": first["executionId"], "retry": 1, "reason": "exit", "rule": "default"}
    # A retry is made in the same write as the failure it follows: none was.
    job = runtime.get(runtime.path(unstartable["jobUrl"])).json()["job"]
    assert job["executionCount"] == 1 and "executable file not found" in job["executions"][0]["error"]


def test_timeout(runtime):
    started = time.time()
    created, execution = run(runtime, "engine", {"image": "ubuntu", "command": "sleep 30", "timeout": 1})
    assert execution["status"] == "timedout"
    assert time.time() - started < 10


def test_stop_a_running_job_then_retry_it(runtime):
    created = runtime.post("/tasks/engine-stop", {"image": "ubuntu", "command": "sleep 30"}).json()
    runtime.wait_for_execution(created["executionUrl"], {"running"})
    stopped = runtime.post(runtime.path(created["jobUrl"]) + "/stop")
    assert stopped.status_code == 200
    execution = runtime.wait_for_execution(created["executionUrl"], FINAL)
    assert execution["status"] == "stopped"

    retried = runtime.post(runtime.path(created["jobUrl"]) + "/retry")
    assert retried.status_code == 200
    runtime.wait_for_execution(retried.json()["executionUrl"], {"running"})
    stop_one = runtime.post(runtime.path(retried.json()["executionUrl"]) + "/stop")
    assert stop_one.status_code == 200
    assert runtime.wait_for_execution(retried.json()["executionUrl"], FINAL)["status"] == "stopped"


def test_retry_after_a_failure_runs_again(runtime):
    created, execution = run(runtime, "engine", {"image": "ubuntu", "command": "bash -c 'echo again; exit 3'"})
    assert execution["status"] == "failed"
    retried = runtime.post(runtime.path(created["jobUrl"]) + "/retry").json()
    execution = runtime.wait_for_execution(retried["executionUrl"], FINAL)
    assert (execution["status"], execution["exitCode"]) == ("failed", 3)
    job = runtime.get(runtime.path(created["jobUrl"])).json()["job"]
    assert job["executionCount"] == 2


def test_a_pool_limit_holds(runtime):
    peak = []
    done = threading.Event()

    def watch():
        while not done.is_set():
            pools = runtime.get("/status").json()["pools"]
            peak.append(next(p["running"] for p in pools if p["name"] == "limited"))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        created = [runtime.post("/tasks/limited-sleepers", {"image": "ubuntu", "command": "sleep 1"}).json()
                   for _ in range(6)]
        executions = [runtime.wait_for_execution(c["executionUrl"], FINAL, timeout=60) for c in created]
    finally:
        done.set()
        watcher.join()
    assert all(e["status"] == "done" for e in executions)
    assert max(peak) <= 2
    # From the executions' own times: never more than two ran at once.
    moments = sorted([(e["startedAt"], 1) for e in executions] + [(e["finishedAt"], -1) for e in executions])
    concurrent = running = 0
    for _, step in moments:
        running += step
        concurrent = max(concurrent, running)
    assert concurrent <= 2, [(e["executionId"], e["startedAt"], e["finishedAt"]) for e in executions]


class JobsQueue:
    """The runtime's jobs queue and its ECS tasks, reached as an operator would: SQS and the local
    Fargate's ECS API on the aws backend, the state file on the local one."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        if runtime.backend == "aws":
            aws, ecs_endpoint = runtime.endpoints()
            options = {"region_name": "us-east-1", "aws_access_key_id": "local", "aws_secret_access_key": "local"}
            self.sqs = boto3.client("sqs", endpoint_url=aws, **options)
            self.url = self.sqs.get_queue_url(QueueName="fastlane-jobs")["QueueUrl"]
            self.ecs = boto3.client("ecs", endpoint_url=ecs_endpoint, **options)
        else:
            from infra.local.sqlite.db import Database
            from infra.local.sqlite.queues import LocalQueues

            self.db = Database(str(runtime.state))
            self.queues = LocalQueues(self.db)

    def send(self, body: str) -> None:
        if self.runtime.backend == "aws":
            self.sqs.send_message(QueueUrl=self.url, MessageBody=body)
        else:
            from infra.local.sqlite.queues import JOBS

            self.queues.send(JOBS, body)

    def visible(self) -> int:
        if self.runtime.backend == "aws":
            return int(self.sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["All"])
                       ["Attributes"]["ApproximateNumberOfMessages"])
        from infra.local.sqlite.queues import JOBS

        return self.queues.depth(JOBS)["visible"]

    def ecs_tasks(self, job_id: str, execution_id: str) -> int:
        if self.runtime.backend == "aws":
            return len([arn for status in ("RUNNING", "STOPPED")
                        for arn in self.ecs.list_tasks(cluster="fastlane", startedBy=started_by(job_id, execution_id),
                                                       desiredStatus=status)["taskArns"]])
        with sqlite3.connect(f"file:{self.runtime.state}?mode=ro", uri=True) as connection:
            return int(connection.execute("SELECT COUNT(*) FROM ecs_tasks WHERE execution_id = ?",
                                          (execution_id,)).fetchone()[0])

    def close(self) -> None:
        if self.runtime.backend == "local":
            self.db.close()


def test_a_duplicate_launch_message_starts_one_container(runtime):
    created, execution = run(runtime, "engine-dup", {"image": "ubuntu", "command": "echo once"})
    jobs = JobsQueue(runtime)
    try:
        body = json.dumps({"taskId": "engine-dup", "jobId": created["jobId"], "executionId": created["executionId"]})
        jobs.send(body)
        jobs.send(body)
        wait_until(lambda: jobs.visible() == 0, timeout=10, what="the duplicates to be consumed")
        assert jobs.ecs_tasks(created["jobId"], created["executionId"]) == 1
    finally:
        jobs.close()
    job = runtime.get(runtime.path(created["jobUrl"])).json()["job"]
    assert job["executionCount"] == 1 and job["executions"][0]["status"] == "done"


def test_status(runtime):
    run(runtime, "engine-status", {"image": "ubuntu", "command": "true"})
    status = runtime.get("/status").json()
    assert status["executions"]["done"] >= 1
    assert {p["name"] for p in status["pools"]} == {"limited", "default"}
