"""Every AWS call each Lambda function makes, recorded while the function runs its real flows
on moto in process: the API routes, the dispatch, monitor, reconciler and notify handlers, the
websocket handlers and the logs function, with the real adapters (nothing stubbed but the
asynchronous Lambda invoke, whose target moto cannot run).

A call is recorded with the IAM actions it needs (botocore names operations, IAM names actions;
a transaction needs the action of each item) and the environment variable that names the
resource it touches, so a test can find the resource in the deployment template."""
from __future__ import annotations

import base64
import gzip
import json
import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

REGION = "us-east-1"
ACCOUNT = "123456789012"
PREFIX = "iam"
API_ID = "wsapi1"
MAIL_SENDER = "fastlane@example.com"


@dataclass(frozen=True)
class Call:
    """One AWS call: the IAM action it needs and the environment variable naming its resource
    ("" when the resource is not named by the environment, e.g. ecs:DescribeTaskDefinition)."""

    action: str
    resource: str
    operation: str


@dataclass
class Recorder:
    """Which function is running now, and what each one called."""

    env: dict[str, str]
    current: str | None = None
    calls: dict[str, set[Call]] = field(default_factory=dict)
    invoked: list[dict[str, Any]] = field(default_factory=list)  # payloads of asynchronous invokes

    @contextmanager
    def running(self, function: str) -> Iterator[None]:
        """Each invocation as in a new Lambda container: nothing cached from another function."""
        from chalicelib import wiring

        wiring.reset()
        self.current = function
        self.calls.setdefault(function, set())
        try:
            yield
        finally:
            self.current = None

    def _by_value(self, value: str, *names: str) -> str:
        for name in names:
            if self.env.get(name) == value:
                return name
        return ""

    def resource_of(self, service: str, params: dict[str, Any]) -> str:
        """The environment variable that names the resource of a call."""
        if service == "dynamodb":
            tables = [params.get("TableName")] + list((params.get("RequestItems") or {}).keys())
            tables += [next(iter(item.values())).get("TableName") for item in params.get("TransactItems") or []]
            found = {self._by_value(t, "TASKS_TABLE", "JOBS_TABLE", "EXECUTIONS_TABLE", "CONNECTIONS_TABLE",
                                    "DELIVERIES_TABLE", "IDEMPOTENCY_TABLE") for t in tables if t}
            return ",".join(sorted(found))
        if service == "sqs":
            return self._by_value(params.get("QueueUrl", ""), "JOBS_QUEUE_URL", "EVENTS_QUEUE_URL", "NOTIFY_QUEUE_URL",
                                  "JOBS_DLQ_URL", "EVENTS_DLQ_URL", "NOTIFY_DLQ_URL")
        if service == "logs":
            return self._by_value(params.get("logGroupName", ""), "LOG_GROUP")
        if service == "ecs":
            return "ECS_CLUSTER" if params.get("cluster") or params.get("taskDefinition") else ""
        if service == "scheduler":
            return "SCHEDULE_GROUP"
        if service == "lambda":
            return self._by_value(params.get("FunctionName", ""), "LOGS_FUNCTION_NAME")
        if service == "ses":
            return "MAIL_SENDER"
        if service == "secretsmanager":
            return self._by_value(params.get("SecretId", ""), "STREAM_TOKEN_SECRET_ID", "BASIC_AUTH_SECRET_ID")
        if service == "execute-api":
            return "WEBSOCKET_URL"
        return ""

    def record(self, service: str, signing: str, operation: str, params: dict[str, Any]) -> None:
        if self.current is None:
            return
        calls = self.calls[self.current]
        for action, resource in iam_actions(service, signing, operation, params, self):
            calls.add(Call(action, resource, operation))


# IAM checks a transaction item by item, and names a few actions differently from the operation.
TRANSACT_ITEM_ACTIONS = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem",
                         "ConditionCheck": "ConditionCheckItem", "Get": "GetItem"}
RENAMED = {("lambda", "Invoke"): "lambda:InvokeFunction", ("sqs", "SendMessageBatch"): "sqs:SendMessage",
           ("apigatewaymanagementapi", "PostToConnection"): "execute-api:ManageConnections",
           ("apigatewaymanagementapi", "DeleteConnection"): "execute-api:ManageConnections",
           ("apigatewaymanagementapi", "GetConnection"): "execute-api:ManageConnections"}


def iam_actions(service: str, signing: str, operation: str, params: dict[str, Any],
                recorder: Recorder) -> list[tuple[str, str]]:
    if service == "apigatewaymanagementapi":
        return [(RENAMED[(service, operation)], recorder.resource_of("execute-api", params))]
    resource = recorder.resource_of(service, params)
    if service == "dynamodb" and operation in ("TransactWriteItems", "TransactGetItems"):
        found = []
        for item in params.get("TransactItems") or []:
            kind, body = next(iter(item.items()))
            table = recorder.resource_of("dynamodb", {"TableName": body.get("TableName")})
            found.append((f"dynamodb:{TRANSACT_ITEM_ACTIONS[kind]}", table))
        return found
    found = [(RENAMED.get((service, operation), f"{signing}:{operation}"), resource)]
    # Actions a call needs besides its own: passing roles, and tagging what it creates.
    if service == "ecs" and operation == "RegisterTaskDefinition":
        for key in ("executionRoleArn", "taskRoleArn"):
            if params.get(key):
                found.append(("iam:PassRole", {"executionRoleArn": "TASK_EXECUTION_ROLE_ARN",
                                               "taskRoleArn": "TASK_ROLE_ARN"}[key]))
    if service == "ecs" and operation in ("RegisterTaskDefinition", "RunTask") and params.get("tags"):
        found.append(("ecs:TagResource", resource))
    if service == "scheduler" and operation in ("CreateSchedule", "UpdateSchedule"):
        found.append(("iam:PassRole", "SCHEDULER_ROLE_ARN"))
    return found


@contextmanager
def recording(recorder: Recorder) -> Iterator[None]:
    """Record every botocore call (boto3 and PynamoDB both go through BaseClient). The
    asynchronous invoke of the logs function is answered here: moto cannot run it."""
    from botocore.client import BaseClient
    from botocore.loaders import JSONFileLoader, Loader

    original = BaseClient._make_api_call
    original_load, original_list = JSONFileLoader.load_file, Loader.list_available_services
    loaded: dict[Any, Any] = {}

    def load_file(loader: Any, file_path: str) -> Any:
        """botocore's data files, parsed once: every new container would parse them again."""
        if file_path not in loaded:
            loaded[file_path] = original_load(loader, file_path)
        return loaded[file_path]

    def list_available_services(loader: Any, type_name: str) -> Any:
        if ("services", type_name) not in loaded:
            loaded[("services", type_name)] = original_list(loader, type_name)
        return loaded[("services", type_name)]

    def make_api_call(client: Any, operation: str, params: dict[str, Any]) -> Any:
        model = client.meta.service_model
        recorder.record(model.service_name, model.signing_name, operation, params)
        if model.service_name == "lambda" and operation == "Invoke":
            recorder.invoked.append(json.loads(params["Payload"]))
            return {"StatusCode": 202}
        return original(client, operation, params)

    BaseClient._make_api_call = make_api_call  # type: ignore[method-assign]
    JSONFileLoader.load_file = load_file  # type: ignore[method-assign]
    Loader.list_available_services = list_available_services  # type: ignore[method-assign]
    try:
        yield
    finally:
        BaseClient._make_api_call = original  # type: ignore[method-assign]
        JSONFileLoader.load_file = original_load  # type: ignore[method-assign]
        Loader.list_available_services = original_list  # type: ignore[method-assign]


# the flows --------------------------------------------------------------------------------------


def ws_event(route: str, connection_id: str, *, body: Any = None,
             query: dict[str, str] | None = None) -> dict[str, Any]:
    kind = {"$connect": "CONNECT", "$disconnect": "DISCONNECT"}.get(route, "MESSAGE")
    event: dict[str, Any] = {
        "requestContext": {"routeKey": route, "eventType": kind, "connectionId": connection_id, "apiId": API_ID,
                           "stage": "api", "domainName": f"{API_ID}.execute-api.{REGION}.amazonaws.com",
                           "requestId": str(uuid.uuid4()), "connectedAt": int(time.time() * 1000),
                           "messageDirection": "IN", "identity": {"sourceIp": "127.0.0.1"}},
        "isBase64Encoded": False,
    }
    if kind == "CONNECT":
        event["headers"] = {"Host": event["requestContext"]["domainName"]}
        event["queryStringParameters"] = query
    if kind == "MESSAGE":
        event["body"] = json.dumps(body)
    return event


def task_event(name: str, task_arn: str, cluster_arn: str, status: str, exit_code: int | None = None) -> dict:
    container: dict[str, Any] = {"name": "job", "lastStatus": status}
    if exit_code is not None:
        container["exitCode"] = exit_code
    detail = {"taskArn": task_arn, "clusterArn": cluster_arn, "lastStatus": status, "startedBy": name,
              "containers": [container], "startedAt": "2026-11-28T10:00:00.000Z"}
    if status == "STOPPED":
        detail.update(stoppedAt="2026-11-28T10:00:05.000Z", stoppedReason="Essential container in task exited")
    return {"version": "0", "detail-type": "ECS Task State Change", "source": "aws.ecs", "detail": detail}


class Flows:
    """Drives each function as its trigger would, through chalice.test.Client."""

    def __init__(self, client: Any, recorder: Recorder, boto: Any) -> None:
        self.client, self.recorder, self.boto = client, recorder, boto
        self.env = recorder.env
        self.sqs = boto.client("sqs", region_name=REGION)
        self.logs = boto.client("logs", region_name=REGION)

    # triggers

    def http(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
        with self.recorder.running("APIHandler"):
            response = getattr(self.client.http, method.lower())(
                path, body=json.dumps(body) if body is not None else None,
                headers={"host": "fastlane.test", "content-type": "application/json", **(headers or {})})
        assert response.status_code < 500, (method, path, response.status_code, response.body)
        body = response.body.decode() if isinstance(response.body, bytes) else response.body
        return json.loads(body) if body and response.headers.get(
            "Content-Type", "").startswith("application/json") else body

    def invoke(self, function: str, name: str, payload: dict[str, Any]) -> Any:
        with self.recorder.running(function):
            return self.client.lambda_.invoke(name, payload).payload

    def drain(self, variable: str) -> list[str]:
        """Take every message off a queue (visible now or delayed), as the event source would."""
        bodies: list[str] = []
        url = self.env[variable]
        for _ in range(30):
            got = self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
            messages = got.get("Messages", [])
            if not messages:
                break
            for message in messages:
                bodies.append(message["Body"])
                self.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        return bodies

    def sqs_event(self, bodies: list[str], queue: str) -> dict[str, Any]:
        return self.client.events.generate_sqs_event(message_bodies=bodies, queue_name=queue)

    def dispatch(self, bodies: list[str]) -> None:
        if not bodies:
            return
        undelayed = []
        for body in bodies:
            message = json.loads(body)
            if "dueAt" in message:
                message["dueAt"] = time.time() - 1  # run now what was delayed
            undelayed.append(json.dumps(message))
        self.invoke("Dispatch", "dispatch", self.sqs_event(undelayed, f"{PREFIX}-jobs"))

    def monitor(self, *events: dict[str, Any]) -> None:
        self.invoke("Monitor", "monitor", self.sqs_event([json.dumps(e) for e in events], f"{PREFIX}-events"))

    # the whole life of jobs

    def run(self) -> None:
        from chalicelib.domain.ecs import started_by

        ecs = self.boto.client("ecs", region_name=REGION)
        cluster = self.env["ECS_CLUSTER"]
        self.http("GET", "/healthcheck")
        self.http("GET", "/status")
        hook = {"url": "http://127.0.0.1:9/hook", "retries": 1}  # nothing listens: the hook is retried
        first = self.http("POST", "/tasks/flow", {
            "image": "ubuntu", "command": "echo hi", "retries": 1, "timeout": 1,
            "webhooks": {"starts": [hook], "finishes": [hook]}, "notify": {"finishes": ["ops@example.com"]}})
        job_id, execution_id = first["jobId"], first["executionId"]
        self.http("GET", "/tasks")
        self.http("GET", "/tasks/flow")
        self.http("GET", f"/tasks/flow/jobs/{job_id}")
        self.http("GET", f"/tasks/flow/jobs/{job_id}/executions/{execution_id}")

        # launch: RunTask on moto's ECS
        self.dispatch(self.drain("JOBS_QUEUE_URL"))
        tasks = ecs.list_tasks(cluster=cluster)["taskArns"]
        assert tasks, "the launch did not reach ECS"
        task_arn = tasks[0]
        cluster_arn = ecs.describe_clusters(clusters=[cluster])["clusters"][0]["clusterArn"]
        ecs_task_id = task_arn.rsplit("/", 1)[-1]
        for stream in ("stdout", "stderr"):
            self.logs.create_log_stream(logGroupName=self.env["LOG_GROUP"], logStreamName=f"{ecs_task_id}/{stream}")
        self.logs.put_log_events(logGroupName=self.env["LOG_GROUP"], logStreamName=f"{ecs_task_id}/stdout",
                                 logEvents=[{"timestamp": int(time.time() * 1000), "message": "hi"}])
        self.monitor(task_event(started_by(job_id, execution_id), task_arn, cluster_arn, "RUNNING"))

        # live logs: the page, $connect with its token, the subscription the logs function runs,
        # messages, a chunk through the subscription filter
        page = self.http("GET", f"/tasks/flow/jobs/{job_id}/stream")
        self.http("GET", f"/tasks/flow/jobs/{job_id}/executions/{execution_id}/stream")
        token = json.loads(re.search(r'id="config">(.*?)</script>', page).group(1))["token"]
        assert token, "the stream page carries no token"
        connection = "conn-" + uuid.uuid4().hex[:8]
        answer = self.invoke("WebsocketConnect", "ws_connect", ws_event(
            "$connect", connection, query={"taskId": "flow", "jobId": job_id, "executionId": execution_id,
                                            "token": token}))
        assert answer.get("statusCode") == 200, answer
        assert self.recorder.invoked, "$connect started no subscription"
        for payload in self.recorder.invoked:
            self.invoke("Logs", "logs", payload)
        self.recorder.invoked.clear()
        self.invoke("WebsocketMessage", "ws_message", ws_event("$default", connection, body={"action": "ping"}))
        self.invoke("WebsocketMessage", "ws_message", ws_event(
            "$default", connection, body={"action": "subscribe", "taskId": "flow", "jobId": job_id}))
        found = self.logs.filter_log_events(logGroupName=self.env["LOG_GROUP"],
                                            logStreamNames=[f"{ecs_task_id}/stdout"])["events"]
        data = {"messageType": "DATA_MESSAGE", "owner": ACCOUNT, "logGroup": self.env["LOG_GROUP"],
                "logStream": f"{ecs_task_id}/stdout", "subscriptionFilters": ["live"],
                "logEvents": [{"id": e["eventId"], "timestamp": e["timestamp"], "message": e["message"]}
                              for e in found]}
        self.invoke("Logs", "logs", {"awslogs": {"data": base64.b64encode(
            gzip.compress(json.dumps(data).encode())).decode()}})
        for which in ("stdout", "stderr", "logs"):
            self.http("GET", f"/tasks/flow/jobs/{job_id}/{which}")
            self.http("GET", f"/tasks/flow/jobs/{job_id}/executions/{execution_id}/{which}")

        # the timeout check (1 s): timed out, task stopped, a retry launched, then ECS says stopped
        time.sleep(1.2)
        self.dispatch(self.drain("JOBS_QUEUE_URL"))
        self.dispatch(self.drain("JOBS_QUEUE_URL"))
        self.monitor(task_event(started_by(job_id, execution_id), task_arn, cluster_arn, "STOPPED", exit_code=137))
        self.invoke("WebsocketDisconnect", "ws_disconnect", ws_event("$disconnect", connection))

        # notifications: webhooks (refused, retried through the queue) and e-mail; a duplicate
        notifications = self.drain("NOTIFY_QUEUE_URL")
        assert notifications, "no notification was published"
        self.invoke("Notify", "notify", self.sqs_event(notifications, f"{PREFIX}-notify"))
        self.invoke("Notify", "notify", self.sqs_event(notifications, f"{PREFIX}-notify"))

        # the reconciler: launched tasks described, a stopped one finished, overdue schedules repaired
        tick = self.client.events.generate_cw_event(source="aws.events", detail_type="Scheduled Event", detail={},
                                                     resources=[])
        self.invoke("Reconciler", "reconciler", tick)
        for arn in ecs.list_tasks(cluster=cluster)["taskArns"]:
            ecs.stop_task(cluster=cluster, task=arn)
        self.invoke("Reconciler", "reconciler", tick)

        # stop and retry by hand, the retry with an Idempotency-Key: sent twice, it starts one execution
        once = {"Idempotency-Key": str(uuid.uuid4())}
        latest = self.http("POST", f"/tasks/flow/jobs/{job_id}/retry", headers=once)["executionId"]
        assert self.http("POST", f"/tasks/flow/jobs/{job_id}/retry", headers=once)["executionId"] == latest
        self.dispatch(self.drain("JOBS_QUEUE_URL"))
        self.http("POST", f"/tasks/flow/jobs/{job_id}/executions/{latest}/stop")
        self.http("POST", f"/tasks/flow/jobs/{job_id}/stop")

        # schedules: one-shot beyond 15 minutes, cron, both replaced, fired, repaired when overdue, stopped;
        # the first post with an Idempotency-Key refused once (an error frees its key), then accepted
        first = {"Idempotency-Key": str(uuid.uuid4())}
        self.http("POST", "/tasks/later", {"image": "ubuntu", "startIn": "2h"}, headers=first)
        later = self.http("POST", "/tasks/later", {"image": "ubuntu", "command": "date", "startIn": "2h"},
                          headers=first)
        cron = self.http("POST", "/tasks/later", {"image": "ubuntu", "command": "date", "cron": "*/5 * * * *"})
        # day of month and weekday both restricted: Scheduler cannot say it, one schedule per tick
        self.http("POST", "/tasks/later", {"image": "ubuntu", "command": "date", "cron": "0 9 1 * 1"})
        self.http("PUT", f"/tasks/later/jobs/{cron['jobId']}", {"image": "ubuntu", "command": "date",
                                                               "cron": "0 9 * * 1-5", "timezone": "Europe/Paris"})
        self.http("PUT", f"/tasks/later/jobs/{later['jobId']}", {"image": "ubuntu", "command": "date",
                                                                "startIn": "3h"})
        scheduler = self.boto.client("scheduler", region_name=REGION)
        group = self.env["SCHEDULE_GROUP"]
        for listed in scheduler.list_schedules(GroupName=group)["Schedules"]:
            message = json.loads(scheduler.get_schedule(Name=listed["Name"], GroupName=group)["Target"]["Input"])
            message["scheduledAt"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            self.dispatch([json.dumps(message)])
        self.boto.client("dynamodb", region_name=REGION).update_item(
            TableName=self.env["JOBS_TABLE"], Key={"jobId": {"S": cron["jobId"]}},
            UpdateExpression="SET nextRunAt = :past",
            ExpressionAttributeValues={":past": {"N": str(time.time() - 600)}})
        self.invoke("Reconciler", "reconciler", tick)
        self.dispatch(self.drain("JOBS_QUEUE_URL"))
        self.http("POST", f"/tasks/later/jobs/{cron['jobId']}/stop")
        self.http("GET", "/status")


def record_every_call(tmp_dir: str) -> Recorder:
    """Build an emulated account like a deployment (tables, queues, cluster, schedule group, log
    group, SES sender, the stream-token secret), run the flows, return what each function called."""
    import os

    import boto3
    from moto import mock_aws

    from chalicelib import wiring
    from infra.local.provision import local_environment, provision

    keep = dict(os.environ)
    try:
        for name in [n for n in os.environ if n.startswith(("AWS_ENDPOINT_URL", "BASIC_AUTH_", "FASTLANE_"))]:
            del os.environ[name]
        os.environ.update({"AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION, "AWS_ACCESS_KEY_ID": "testing",
                           "AWS_SECRET_ACCESS_KEY": "testing", "POWERTOOLS_METRICS_DISABLED": "1",
                           "PUBLIC_BASE_URL": ""})
        with mock_aws():
            os.environ.update(local_environment(PREFIX))
            wiring.reset()
            env = dict(local_environment(PREFIX))
            env.update(provision(boto3.client("sqs", region_name=REGION), PREFIX,
                                 logs=boto3.client("logs", region_name=REGION)))
            ec2 = boto3.client("ec2", region_name=REGION)
            ecs = boto3.client("ecs", region_name=REGION)
            ecs.create_cluster(clusterName=PREFIX)
            boto3.client("ses", region_name=REGION).verify_email_identity(EmailAddress=MAIL_SENDER)
            secret = boto3.client("secretsmanager", region_name=REGION).create_secret(
                Name=f"{PREFIX}-stream-token", SecretString=json.dumps({"key": "k" * 32}))["ARN"]
            env.update({
                "ECS_CLUSTER": PREFIX,
                "SUBNETS": ec2.describe_subnets()["Subnets"][0]["SubnetId"],
                "SECURITY_GROUPS": ec2.describe_security_groups()["SecurityGroups"][0]["GroupId"],
                "LOG_ROUTER_IMAGE": "fluent-bit",
                "TASK_EXECUTION_ROLE_ARN": f"arn:aws:iam::{ACCOUNT}:role/{PREFIX}-task-execution",
                "TASK_ROLE_ARN": f"arn:aws:iam::{ACCOUNT}:role/{PREFIX}-task",
                "MAIL_SENDER": MAIL_SENDER,
                "STREAM_TOKEN_SECRET_ID": secret,
                "WEBSOCKET_URL": f"wss://{API_ID}.execute-api.{REGION}.amazonaws.com/api",
                "LOGS_FUNCTION_NAME": f"{PREFIX}-logs",
                "NOTIFY_BASE_URL": "https://fastlane.test",
                "WEBHOOK_ALLOW_PRIVATE": "true",
                "WEBHOOK_BACKOFF_MIN": "0",
                "WEBHOOK_TIMEOUT": "1",
                "RECONCILE_GRACE_SECONDS": "0",
                "RETRY_BACKOFF_MIN": "0",
            })
            os.environ.update(env)
            wiring.reset()
            recorder = Recorder(env)
            from chalice.test import Client

            from app import app

            with recording(recorder), Client(app, project_dir=tmp_dir) as client:
                Flows(client, recorder, boto3).run()
            return recorder
    finally:
        os.environ.clear()
        os.environ.update(keep)
        wiring.reset()
