"""The local Fargate (infra/local/fargate.py) driven through a boto3 ECS client, with CloudWatch
Logs and SQS served by moto's threaded server (not mock_aws: it would catch the ECS calls too)."""
from __future__ import annotations

import json
import logging
import os
import re
import socket
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from botocore.exceptions import ClientError

from infra.local.fargate import LocalFargate
from tests import polling

REGION = "us-east-1"
CREDENTIALS = {"region_name": REGION, "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
LOG_GROUP = "/fastlane/jobs"
GRACE = 0.5
TASK_ARN = re.compile(r"arn:aws:ecs:us-east-1:123456789012:task/default/[0-9a-f]{32}")
EVENT_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
DETAIL_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    return polling.wait_until(predicate, timeout=timeout, interval=0.02, what=what)


def task_id(arn: str) -> str:
    return arn.rsplit("/", 1)[1]


class Local:
    """A LocalFargate with its own events queue, and the clients a test reads it with."""

    def __init__(self, moto_endpoint: str, **options: Any) -> None:
        self.sqs = boto3.client("sqs", endpoint_url=moto_endpoint, **CREDENTIALS)
        self.logs = boto3.client("logs", endpoint_url=moto_endpoint, **CREDENTIALS)
        self.queue_url = self.sqs.create_queue(QueueName=f"ecs-events-{uuid.uuid4().hex[:12]}")["QueueUrl"]
        self.fargate = LocalFargate(sqs_client=self.sqs, logs_client=self.logs, events_queue_url=self.queue_url,
                                    log_group=LOG_GROUP, region=REGION, stop_grace_seconds=GRACE, **options)
        self.fargate.start()
        self.ecs = boto3.client("ecs", endpoint_url=self.fargate.endpoint, **CREDENTIALS)
        self.seen: list[dict[str, Any]] = []

    def register(self, command: list[str] | None = None, env: dict[str, str] | None = None,
                 image: str = "ubuntu", family: str = "fastlane-job") -> str:
        container: dict[str, Any] = {"name": "job", "image": image, "essential": True,
                                     "environment": [{"name": k, "value": v} for k, v in (env or {}).items()]}
        if command is not None:
            container["command"] = command
        definition = self.ecs.register_task_definition(
            family=family, containerDefinitions=[container], cpu="256", memory="512", networkMode="awsvpc",
            requiresCompatibilities=["FARGATE"])["taskDefinition"]
        return definition["taskDefinitionArn"]

    def run(self, command: list[str] | None, env: dict[str, str] | None = None, definition: str | None = None,
            **kwargs: Any) -> dict[str, Any]:
        override: dict[str, Any] = {"name": "job"}
        if command is not None:
            override["command"] = command
        if env:
            override["environment"] = [{"name": k, "value": v} for k, v in env.items()]
        response = self.ecs.run_task(
            cluster="default", taskDefinition=definition or self.register(), count=1, launchType="FARGATE",
            networkConfiguration={"awsvpcConfiguration": {"subnets": ["subnet-1"], "assignPublicIp": "DISABLED"}},
            overrides={"containerOverrides": [override]}, **kwargs)
        assert response["failures"] == []
        (task,) = response["tasks"]
        return task

    def poll(self) -> list[dict[str, Any]]:
        messages = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10,
                                            WaitTimeSeconds=0).get("Messages", [])
        if messages:
            self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)])
            self.seen += [json.loads(m["Body"]) for m in messages]
        return self.seen

    def events(self, arn: str) -> list[dict[str, Any]]:
        return [event for event in self.poll() if event["resources"] == [arn]]

    def wait_event(self, arn: str, status: str, timeout: float = 10.0) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            return next((e for e in self.events(arn) if e["detail"]["lastStatus"] == status), None)

        return wait_until(found, timeout, f"{status} event of {arn}")

    def statuses(self, arn: str) -> list[str]:
        return [event["detail"]["lastStatus"] for event in self.events(arn)]

    def log_lines(self, arn: str, stream: str) -> list[str]:
        lines: list[str] = []
        token: str | None = None
        while True:
            extra = {"nextToken": token} if token else {}
            page = self.logs.get_log_events(logGroupName=LOG_GROUP, logStreamName=f"{task_id(arn)}/{stream}",
                                            startFromHead=True, **extra)
            lines += [event["message"] for event in page["events"]]
            if page["nextForwardToken"] == token:
                return lines
            token = page["nextForwardToken"]

    def describe(self, arn: str) -> dict[str, Any]:
        (task,) = self.ecs.describe_tasks(cluster="default", tasks=[arn])["tasks"]
        return task


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    """CloudWatch Logs and SQS for the module's tests; each test has its own queue, and log
    streams are named by task id, so they do not meet."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def make_local(moto_endpoint: str) -> Iterator[Callable[..., Local]]:
    made: list[Local] = []

    def make(**options: Any) -> Local:
        made.append(Local(moto_endpoint, **options))
        return made[-1]

    try:
        yield make
    finally:
        for local in made:
            local.fargate.stop()


@pytest.fixture
def local(make_local: Callable[..., Local]) -> Local:
    return make_local()


def test_a_task_reports_pending_running_stopped_and_its_output(local):
    tags = [{"key": "taskId", "value": "hello"}]
    task = local.run(["echo", "it works"], startedBy="execution-1", tags=tags)
    arn = task["taskArn"]
    assert TASK_ARN.fullmatch(arn)
    assert task["lastStatus"] == "PENDING" and task["desiredStatus"] == "RUNNING"
    assert task["launchType"] == "FARGATE" and task["containers"][0]["name"] == "job"

    stopped = local.wait_event(arn, "STOPPED")
    events = local.events(arn)
    assert [e["detail"]["lastStatus"] for e in events] == ["PENDING", "RUNNING", "STOPPED"]
    versions = [e["detail"]["version"] for e in events]
    assert versions == sorted(set(versions))
    assert {k: stopped[k] for k in ("version", "detail-type", "source", "account", "region", "resources")} == {
        "version": "0", "detail-type": "ECS Task State Change", "source": "aws.ecs", "account": "123456789012",
        "region": REGION, "resources": [arn]}
    assert EVENT_TIME.fullmatch(stopped["time"])
    detail = stopped["detail"]
    assert detail["stopCode"] == "EssentialContainerExited"
    assert detail["stoppedReason"] == "Essential container in task exited"
    assert detail["desiredStatus"] == "STOPPED"
    assert detail["containers"][0]["exitCode"] == 0 and detail["containers"][0]["lastStatus"] == "STOPPED"
    assert all(DETAIL_TIME.fullmatch(detail[k]) for k in ("createdAt", "startedAt", "stoppingAt", "stoppedAt"))
    assert (detail["taskArn"], detail["startedBy"], detail["tags"]) == (arn, "execution-1", tags)
    assert detail["overrides"] == {"containerOverrides": [{"name": "job", "command": ["echo", "it works"]}]}
    assert (detail["cpu"], detail["memory"], detail["group"]) == ("256", "512", "family:fastlane-job")
    assert "exitCode" not in events[1]["detail"]["containers"][0]

    assert local.log_lines(arn, "stdout") == ["it works"]
    assert local.log_lines(arn, "stderr") == []

    described = local.describe(arn)
    assert described["lastStatus"] == "STOPPED" and described["containers"][0]["exitCode"] == 0
    assert described["stoppedAt"] >= described["startedAt"] >= described["createdAt"]
    assert local.ecs.list_tasks(cluster="default", desiredStatus="STOPPED")["taskArns"] == [arn]
    assert local.ecs.list_tasks(cluster="default", desiredStatus="STOPPED", startedBy="other")["taskArns"] == []
    assert local.ecs.list_tasks(cluster="default")["taskArns"] == []


def test_exit_status_and_stderr_are_reported(local):
    failed = local.run(["bash", "-c", 'echo "it failed" && exit 123'])["taskArn"]
    missing = local.run(["bash", "-c", "qwe"])["taskArn"]

    assert local.wait_event(failed, "STOPPED")["detail"]["containers"][0]["exitCode"] == 123
    assert local.log_lines(failed, "stdout") == ["it failed"]
    assert local.wait_event(missing, "STOPPED")["detail"]["containers"][0]["exitCode"] == 127
    # Bash 5.1 and later name the line of a -c script when stderr is not a terminal.
    (line,) = local.log_lines(missing, "stderr")
    assert re.fullmatch(r"bash: (line 1: )?qwe: command not found", line)


def test_a_command_that_cannot_start_fails_to_start_without_running(local, tmp_path):
    not_executable = tmp_path / "script.sh"
    not_executable.write_text("echo hi\n")
    cases = {
        local.run(["qwe"])["taskArn"]: 'CannotStartContainerError: exec: "qwe": executable file not found in $PATH',
        local.run([str(not_executable)])["taskArn"]:
            f'CannotStartContainerError: exec: "{not_executable}": permission denied',
        local.run(None, definition=local.register(command=None, family="no-command"))["taskArn"]:
            "CannotStartContainerError: no command specified",
    }
    for arn, reason in cases.items():
        detail = local.wait_event(arn, "STOPPED")["detail"]
        assert local.statuses(arn) == ["PENDING", "STOPPED"]
        assert detail["stopCode"] == "TaskFailedToStart"
        assert detail["stoppedReason"] == reason
        assert detail["containers"][0]["reason"] == reason
        assert "exitCode" not in detail["containers"][0] and "startedAt" not in detail
    # The server is still answering.
    assert local.run(["true"])["lastStatus"] == "PENDING"


def test_stop_task_terminates_the_process(local):
    arn = local.run(["sleep", "30"])["taskArn"]
    local.wait_event(arn, "RUNNING")
    started = time.monotonic()
    stopping = local.ecs.stop_task(cluster="default", task=arn, reason="no longer needed")["task"]
    assert stopping["desiredStatus"] == "STOPPED" and stopping["stopCode"] == "UserInitiated"

    detail = local.wait_event(arn, "STOPPED", timeout=5)["detail"]
    assert time.monotonic() - started < GRACE + 2
    assert detail["stopCode"] == "UserInitiated" and detail["stoppedReason"] == "no longer needed"
    assert detail["containers"][0]["exitCode"] == 128 + 15
    assert local.fargate.running_count() == 0

    # Stopping it again changes nothing; by id works as well as by ARN.
    again = local.ecs.stop_task(cluster="default", task=task_id(arn), reason="again")["task"]
    assert again == local.describe(arn)
    assert again["version"] == detail["version"] and again["stoppedReason"] == "no longer needed"

    with pytest.raises(ClientError) as error:
        local.ecs.stop_task(cluster="default", task=arn.replace(task_id(arn), "0" * 32))
    assert error.value.response["Error"]["Code"] == "InvalidParameterException"
    assert error.value.response["Error"]["Message"] == "The referenced task was not found."


def test_a_process_ignoring_sigterm_is_killed_after_the_grace(local):
    arn = local.run(["bash", "-c", "trap '' TERM; echo ready; sleep 30"])["taskArn"]
    local.wait_event(arn, "RUNNING")  # its log streams exist from then on
    # Once it printed, the trap is in place.
    wait_until(lambda: local.log_lines(arn, "stdout") == ["ready"], what="the trap")
    started = time.monotonic()
    local.ecs.stop_task(cluster="default", task=arn)

    detail = local.wait_event(arn, "STOPPED", timeout=5)["detail"]
    assert GRACE <= time.monotonic() - started < GRACE + 3
    assert detail["stoppedReason"] == "Task stopped by user"
    assert detail["containers"][0]["exitCode"] == 128 + 9


def test_the_same_client_token_runs_one_task(local):
    definition = local.register()
    first = local.run(["sleep", "30"], definition=definition, clientToken="execution-1")
    second = local.run(["sleep", "30"], definition=definition, clientToken="execution-1")
    assert second["taskArn"] == first["taskArn"]

    local.wait_event(first["taskArn"], "RUNNING")
    assert local.fargate.running_count() == 1
    assert local.ecs.list_tasks(cluster="default", desiredStatus="RUNNING")["taskArns"] == [first["taskArn"]]
    local.ecs.stop_task(cluster="default", task=first["taskArn"])
    local.wait_event(first["taskArn"], "STOPPED")
    assert [e["detail"]["lastStatus"] for e in local.poll()] == ["PENDING", "RUNNING", "STOPPED"]


def test_the_same_client_token_with_other_parameters_is_refused_naming_its_task(local):
    definition = local.register()
    first = local.run(["sleep", "30"], definition=definition, clientToken="execution-2")
    with pytest.raises(ClientError) as refused:
        local.run(["sleep", "31"], definition=definition, clientToken="execution-2")
    error = refused.value.response
    assert error["Error"]["Code"] == "ConflictException" and error["resourceIds"] == [first["taskArn"]]
    # The refused request started nothing: the one task is listed (a PENDING task's desired status
    # is RUNNING), and once it runs, its process is the only one. Its process starts after RunTask
    # answered, as an ECS task's container does: counting processes before RUNNING finds none.
    assert local.ecs.list_tasks(cluster="default", desiredStatus="RUNNING")["taskArns"] == [first["taskArn"]]
    local.wait_event(first["taskArn"], "RUNNING")
    assert local.fargate.running_count() == 1
    local.ecs.stop_task(cluster="default", task=first["taskArn"])
    local.wait_event(first["taskArn"], "STOPPED")


def test_the_environment_is_the_definitions_with_the_overrides(local, monkeypatch):
    monkeypatch.setenv("FASTLANE_HOST_ONLY", "must not leak")
    definition = local.register(env={"FROM_DEFINITION": "d", "SHARED": "from definition"})
    arn = local.run(["bash", "-c", 'env; echo "cwd=$(pwd)"'], definition=definition,
                    env={"SHARED": "from override", "GREETING": "hi there"})["taskArn"]
    local.wait_event(arn, "STOPPED")

    lines = local.log_lines(arn, "stdout")
    env = dict(line.split("=", 1) for line in lines)
    assert env["FROM_DEFINITION"] == "d"
    assert env["SHARED"] == "from override"
    assert env["GREETING"] == "hi there"
    assert env["LANG"] == "C.UTF-8" and env["PATH"] == os.environ["PATH"]
    assert "FASTLANE_HOST_ONLY" not in env
    assert env["cwd"] == env["HOME"] and env["HOME"] != os.environ.get("HOME")
    assert not Path(env["HOME"]).exists()  # removed once the task stopped


def test_several_tasks_run_at_once(local, tmp_path):
    go = tmp_path / "go"
    definition = local.register()
    arns = [local.run(["bash", "-c", 'while [ ! -e "$GO" ]; do sleep 0.02; done; echo "done $N"'],
                      definition=definition, env={"GO": str(go), "N": str(n)})["taskArn"] for n in range(4)]

    wait_until(lambda: local.fargate.running_count() == 4, what="4 running tasks")
    assert sorted(local.ecs.list_tasks(cluster="default")["taskArns"]) == sorted(arns)
    go.touch()
    for n, arn in enumerate(arns):
        assert local.wait_event(arn, "STOPPED")["detail"]["containers"][0]["exitCode"] == 0
        assert local.log_lines(arn, "stdout") == [f"done {n}"]
    assert local.fargate.running_count() == 0


def test_describe_tasks_reports_unknown_tasks_as_missing(local):
    arn = local.run(["true"])["taskArn"]
    unknown = arn.replace(task_id(arn), "f" * 32)
    response = local.ecs.describe_tasks(cluster="default", tasks=[unknown, arn])
    assert [t["taskArn"] for t in response["tasks"]] == [arn]
    assert response["failures"] == [{"arn": unknown, "reason": "MISSING"}]
    # A task is only found in its own cluster.
    elsewhere = local.ecs.describe_tasks(cluster="other", tasks=[arn])
    assert elsewhere["tasks"] == [] and elsewhere["failures"] == [{"arn": arn, "reason": "MISSING"}]


def test_all_output_is_in_the_logs_before_the_stopped_event(local):
    arn = local.run(["seq", "1", "20000"])["taskArn"]
    local.wait_event(arn, "STOPPED", timeout=20)
    assert local.log_lines(arn, "stdout") == [str(n) for n in range(1, 20001)]


def test_long_lines_are_split_and_bad_bytes_replaced(local):
    script = ("import sys; sys.stdout.write('x' * 450000 + '\\n'); "
              "sys.stdout.buffer.write(b'caf\\xff\\n\\nlast line without newline')")
    arn = local.run([sys.executable, "-c", script])["taskArn"]
    local.wait_event(arn, "STOPPED")
    lines = local.log_lines(arn, "stdout")
    assert [len(line) for line in lines[:3]] == [200_000, 200_000, 50_000]
    assert lines[3:] == ["caf\ufffd", "last line without newline"]


def test_task_definitions_have_revisions(local):
    first = local.register(command=["true"], family="fam")
    second = local.register(command=["false"], family="fam")
    assert (first, second) == ("arn:aws:ecs:us-east-1:123456789012:task-definition/fam:1",
                               "arn:aws:ecs:us-east-1:123456789012:task-definition/fam:2")
    describe = local.ecs.describe_task_definition
    assert describe(taskDefinition="fam")["taskDefinition"]["revision"] == 2
    assert describe(taskDefinition="fam:1")["taskDefinition"]["containerDefinitions"][0]["command"] == ["true"]
    latest = describe(taskDefinition=second)["taskDefinition"]
    assert (latest["status"], latest["cpu"], latest["memory"]) == ("ACTIVE", "256", "512")

    for ref in ("nope", "fam:3"):
        with pytest.raises(ClientError) as error:
            describe(taskDefinition=ref)
        assert error.value.response["Error"]["Code"] == "ClientException"
        assert error.value.response["Error"]["Message"] == "Unable to describe task definition."
    with pytest.raises(ClientError) as error:
        local.ecs.run_task(taskDefinition="nope")
    assert error.value.response["Error"]["Code"] == "InvalidParameterException"


def test_an_unknown_operation_is_refused_by_name(local):
    with pytest.raises(ClientError) as error:
        local.ecs.list_clusters()
    assert error.value.response["Error"]["Code"] == "InvalidParameterException"
    assert "ListClusters" in error.value.response["Error"]["Message"]


def alive(pid: int) -> bool:
    """Running, not a zombie waiting for a parent that may never reap it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def test_what_the_main_process_leaves_behind_dies_with_it(local):
    arn = local.run(["bash", "-c", "sleep 30 & echo $!"])["taskArn"]
    detail = local.wait_event(arn, "STOPPED", timeout=5)["detail"]
    assert detail["containers"][0]["exitCode"] == 0
    (pid,) = local.log_lines(arn, "stdout")
    wait_until(lambda: not alive(int(pid)), timeout=2, what="the background process to die")


def test_stopped_tasks_are_forgotten_beyond_the_bound(local, monkeypatch):
    from infra.local import fargate

    monkeypatch.setattr(fargate, "MAX_TASKS", 3)
    definition = local.register()
    arns = []
    for _ in range(5):
        arns.append(local.run(["true"], definition=definition)["taskArn"])
        local.wait_event(arns[-1], "STOPPED")
    response = local.ecs.describe_tasks(cluster="default", tasks=arns)
    assert [t["taskArn"] for t in response["tasks"]] == arns[2:]
    assert [f["arn"] for f in response["failures"]] == arns[:2]


def test_stop_kills_every_running_process(local):
    arn = local.run(["bash", "-c", "echo $$; exec sleep 30"])["taskArn"]
    local.wait_event(arn, "RUNNING")
    pid = int(wait_until(lambda: local.log_lines(arn, "stdout"), what="the pid")[0])
    local.fargate.stop()
    assert local.fargate.running_count() == 0
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_docker_engine_runs_each_task_with_docker_run(make_local, fake_docker):
    local = make_local(engine="docker")
    definition = local.register(command=["echo", "default"], env={"A": "1"}, image="fake/exit-7")
    arn = local.run(["echo", "it works"], definition=definition, env={"GREETING": "hi there"})["taskArn"]

    detail = local.wait_event(arn, "STOPPED")["detail"]
    assert detail["stopCode"] == "EssentialContainerExited" and detail["containers"][0]["exitCode"] == 7
    argv = ["run", "--rm", "--name", f"fastlane-{task_id(arn)}", "-e", "A=1", "-e", "GREETING=hi there",
            "fake/exit-7", "echo", "it works"]
    assert fake_docker() == [argv]
    assert local.log_lines(arn, "stdout") == argv


def test_docker_engine_stops_a_task_with_docker_stop(make_local, fake_docker):
    local = make_local(engine="docker")
    arn = local.run(["sleep", "30"], definition=local.register(image="fake/wait-for-stop"))["taskArn"]
    local.wait_event(arn, "RUNNING")
    local.ecs.stop_task(cluster="default", task=arn, reason="cancelled")

    detail = local.wait_event(arn, "STOPPED", timeout=5)["detail"]
    assert detail["stopCode"] == "UserInitiated" and detail["stoppedReason"] == "cancelled"
    assert detail["containers"][0]["exitCode"] == 143
    assert fake_docker()[1] == ["stop", "-t", "1", f"fastlane-{task_id(arn)}"]


def raw_run_task(local: Local, **headers: str) -> requests.Response:
    """A RunTask as a page in a browser could send it: a plain POST with the headers given."""
    definition = local.register()
    body = json.dumps({"cluster": "default", "taskDefinition": definition, "overrides": {
        "containerOverrides": [{"name": "job", "command": ["sleep", "30"]}]}})
    return requests.post(local.fargate.endpoint, data=body, timeout=10, headers={
        "X-Amz-Target": "AmazonEC2ContainerServiceV20141113.RunTask",
        "Content-Type": "application/x-amz-json-1.1", **headers})


@pytest.mark.parametrize("headers", [
    {"Origin": "http://evil.example"},
    {"Origin": "http://127.0.0.1:1"},  # another port of this machine is another origin
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site"},
    {"Host": "evil.example"},  # a name rebound to 127.0.0.1 by a page's own DNS
], ids=["foreign-origin", "other-port", "cross-site", "same-site", "foreign-host"])
def test_a_request_a_browser_marks_as_foreign_is_refused_and_runs_nothing(local, headers):
    refused = raw_run_task(local, **headers)
    assert refused.status_code == 403
    (value,) = headers.values()
    assert refused.json()["__type"] == "AccessDeniedException" and value in refused.json()["message"]
    assert local.ecs.list_tasks(cluster="default", desiredStatus="RUNNING")["taskArns"] == []
    assert local.ecs.list_tasks(cluster="default", desiredStatus="STOPPED")["taskArns"] == []


def test_a_request_of_its_own_origin_or_of_no_browser_is_served(local):
    own = raw_run_task(local, Origin=local.fargate.endpoint, **{"Sec-Fetch-Site": "same-origin"})
    assert own.status_code == 200
    arn = own.json()["tasks"][0]["taskArn"]
    assert raw_run_task(local, Host=f"localhost:{local.fargate.port}").status_code == 200  # no Origin: not a page
    local.ecs.stop_task(cluster="default", task=arn)
    local.wait_event(arn, "STOPPED")
