"""IAM in every test: each AWS call made while a Lambda function's handler runs is checked against
that function's role as infra/fastlane.yaml writes it (action, the ARN the call touches, the
condition keys AWS would supply), with the template's expressions resolved against the resources
of the test's own emulated account; a call the deployed role would refuse is refused here too.

moto enforces no roles this precise (PLATFORM-NOTES.md: its IAM passes the resource `*` for most
services), so the check is the project's own. It sits under botocore's client, where boto3 and
PynamoDB both pass, and attributes a call to the function whose handler runs in the same thread or
context: the app's handlers are wrapped by a Chalice middleware (`install`), and code that drives a
service as a handler would (the fault harness) says which with `acting_as`. A call made by
chalicelib outside any handler (a contract test driving a port) must be granted to some function,
or be one the deployment never makes (`not_granted` in infra/permissions.yaml). Calls of test code
itself (creating tables, reading queues back) are not checked."""
from __future__ import annotations

import contextvars
import fnmatch
import json
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]
ACCOUNT = "123456789012"  # moto's default account
CHALICELIB = str(ROOT / "chalicelib") + os.sep
INFRA = str(ROOT / "infra") + os.sep  # provisioning and the stand-ins of AWS: the deployment's side, not a function's

_function: contextvars.ContextVar[str | None] = contextvars.ContextVar("lambda_function", default=None)
TEST = ""  # what `as_test` sets: the test itself acts, as a container or an operator would, unchecked
_lock = threading.Lock()
_violations: list[str] = []
_installed = False


@dataclass(frozen=True)
class Request:
    """What IAM authorizes for one call: an action on one resource, with the condition keys the
    service supplies for it."""

    action: str
    resource: str
    context: tuple[tuple[str, str], ...] = ()


# the template ------------------------------------------------------------------------------------


@cache
def template() -> dict[str, Any]:
    """infra/fastlane.yaml with its short-form intrinsics as Fn:: dicts."""
    from chalice.package import YAMLTemplateSerializer

    path = ROOT / "infra" / "fastlane.yaml"
    loaded: dict[str, Any] = YAMLTemplateSerializer().load_template(path.read_text(), str(path))
    return loaded


@cache
def functions() -> dict[str, str]:
    """Function logical id -> its role's logical id."""
    found = {}
    for name, resource in template()["Resources"].items():
        role = (resource.get("Properties") or {}).get("Role")
        if isinstance(role, dict) and "Fn::GetAtt" in role:
            found[name] = role["Fn::GetAtt"][0] if isinstance(role["Fn::GetAtt"], list) else role["Fn::GetAtt"].split(".")[0]
    return found


@cache
def not_granted() -> frozenset[str]:
    import yaml

    return frozenset(yaml.safe_load((ROOT / "infra" / "permissions.yaml").read_text())["not_granted"])


@cache
def _environment_names() -> tuple[dict[str, str], dict[tuple[str, str], str]]:
    """Which environment variable holds each `Ref X` and `GetAtt X.Attr` of the functions' settings."""
    refs: dict[str, str] = {}
    attributes: dict[tuple[str, str], str] = {}
    for variable, value in template()["Globals"]["Function"]["Environment"]["Variables"].items():
        if isinstance(value, dict) and "Ref" in value:
            refs[value["Ref"]] = variable
        elif isinstance(value, dict) and "Fn::GetAtt" in value:
            target = value["Fn::GetAtt"]
            name, attribute = target if isinstance(target, list) else target.split(".", 1)
            attributes[(name, attribute)] = variable
    return refs, attributes


class Resolver:
    """The template's expressions, evaluated as CloudFormation would for a deployment whose
    resources are the ones the test's environment names."""

    def __init__(self, env: dict[str, str], region: str) -> None:
        self.env, self.region = env, region

    def arn(self, service: str, rest: str) -> str:
        return f"arn:aws:{service}:{self.region}:{ACCOUNT}:{rest}"

    def pools_clusters(self) -> list[str]:
        default = self.ref("Cluster")
        clusters = []
        for pool in json.loads(self.env.get("POOLS") or "[]"):
            cluster = pool.get("cluster")
            if cluster and cluster != default:
                clusters.append(cluster if cluster.startswith("arn:") else self.arn("ecs", f"cluster/{cluster}"))
        return clusters

    def ref(self, name: str) -> Any:
        pseudo = {"AWS::Partition": "aws", "AWS::Region": self.region, "AWS::AccountId": ACCOUNT,
                  "AWS::URLSuffix": "amazonaws.com", "AWS::NoValue": None}
        if name in pseudo:
            return pseudo[name]
        if name == "PoolClusterArns":
            return self.pools_clusters()
        if name == "WebsocketAPI":
            return _api_id(self.env.get("WEBSOCKET_URL", ""))
        if name in ("StreamTokenSecret", "BasicAuthSecretArn"):
            secret = self.env.get({"StreamTokenSecret": "STREAM_TOKEN_SECRET_ID"}.get(name, "BASIC_AUTH_SECRET_ID"))
            return _secret_arn(secret, self) if secret else ""
        refs, _ = _environment_names()
        if name in refs:
            return self.env.get(refs[name]) or None
        parameter = template().get("Parameters", {}).get(name)
        if parameter is not None:
            return parameter.get("Default", "")
        return None  # a resource the test's account does not have (the functions' own log groups)

    def get_att(self, name: str, attribute: str) -> Any:
        _, attributes = _environment_names()
        if (name, attribute) in attributes and self.env.get(attributes[(name, attribute)]):
            return self.env[attributes[(name, attribute)]]
        if attribute != "Arn":
            return None
        if name in functions():
            function = self.env.get("LOGS_FUNCTION_NAME") if name == "Logs" else None
            return self.arn("lambda", f"function:{function}") if function else None
        kind = template()["Resources"].get(name, {}).get("Type")
        ref = self.ref(name)
        if ref is None:
            return None
        return {"AWS::DynamoDB::Table": lambda: self.arn("dynamodb", f"table/{ref}"),
                "AWS::SQS::Queue": lambda: self.arn("sqs", ref.rsplit("/", 1)[-1]),
                "AWS::ECS::Cluster": lambda: self.arn("ecs", f"cluster/{ref}"),
                "AWS::Logs::LogGroup": lambda: self.arn("logs", f"log-group:{ref}:*")}.get(kind, lambda: None)()

    def condition(self, name: str) -> bool:
        return bool(self.value(template()["Conditions"][name]))

    def value(self, expression: Any) -> Any:
        if isinstance(expression, list):
            return [self.value(item) for item in expression]
        if not isinstance(expression, dict):
            return expression
        if len(expression) != 1 or not next(iter(expression)).startswith(("Fn::", "Ref", "Condition")):
            return {key: self.value(inner) for key, inner in expression.items()}
        (key, inner), = expression.items()
        if key == "Ref":
            return self.ref(inner)
        if key == "Fn::GetAtt":
            name, attribute = inner if isinstance(inner, list) else inner.split(".", 1)
            return self.get_att(name, attribute)
        if key == "Fn::Sub":
            return self._sub(inner)
        if key == "Fn::Join":
            parts = self.value(inner[1])
            flat = [p for part in parts for p in (part if isinstance(part, list) else [part])]
            return None if any(p is None for p in flat) else inner[0].join(flat)
        if key == "Fn::Split":
            joined = self.value(inner[1])
            return None if joined is None else joined.split(inner[0])
        if key == "Fn::If":
            return self.value(inner[1] if self.condition(inner[0]) else inner[2])
        if key == "Fn::Not":
            return not self.value(inner[0])
        if key == "Fn::Equals":
            left, right = self.value(inner)
            return left == right
        if key == "Fn::And":
            return all(self.value(inner))
        if key == "Condition":
            return self.condition(inner)
        return expression

    def _sub(self, inner: Any) -> Any:
        text, variables = (inner, {}) if isinstance(inner, str) else (inner[0], inner[1])
        out, rest = [], text
        while "${" in rest:
            before, _, after = rest.partition("${")
            name, _, rest = after.partition("}")
            if name in variables:
                value = self.value(variables[name])
            elif "." in name and not name.startswith("AWS::"):
                value = self.get_att(*name.split(".", 1))
            else:
                value = self.ref(name)
            if value is None:
                return None
            out += [before, str(value)]
        return "".join(out + [rest])


@dataclass(frozen=True)
class Statement:
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    conditions: tuple[tuple[str, str, tuple[str, ...]], ...]  # (operator, key, values)

    def allows(self, request: Request) -> bool:
        if not any(fnmatch.fnmatchcase(request.action.lower(), action.lower()) for action in self.actions):
            return False
        if not any(fnmatch.fnmatchcase(request.resource, pattern) for pattern in self.resources):
            return False
        context = dict(request.context)
        for operator, key, values in self.conditions:
            supplied = context.get(key)
            if supplied is None:
                return False
            if operator in ("StringEquals", "ArnEquals"):
                if supplied not in values:
                    return False
            elif operator in ("StringLike", "ArnLike"):
                if not any(fnmatch.fnmatchcase(supplied, value) for value in values):
                    return False
            else:
                raise AssertionError(f"tests/iam.py does not evaluate the condition operator {operator}")
        return True


def _as_tuple(value: Any) -> tuple[str, ...]:
    items = value if isinstance(value, list) else [value]
    flat = [i for item in items for i in (item if isinstance(item, list) else [item])]
    return tuple(str(item) for item in flat if item is not None)


def role_statements(function: str, resolver: Resolver) -> list[Statement]:
    """The Allow statements of a function's role, resolved."""
    role = template()["Resources"][functions()[function]]
    found = []
    for policy in role["Properties"].get("Policies", []):
        listed = resolver.value(policy["PolicyDocument"].get("Statement", []))
        for statement in listed if isinstance(listed, list) else [listed]:
            if not isinstance(statement, dict) or statement.get("Effect") != "Allow":
                continue
            conditions = tuple((operator, key, _as_tuple(values))
                               for operator, keys in (statement.get("Condition") or {}).items()
                               for key, values in keys.items())
            found.append(Statement(_as_tuple(statement["Action"]), _as_tuple(statement["Resource"]), conditions))
    return found


# calls -> requests -------------------------------------------------------------------------------

TRANSACT_ACTIONS = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem",
                    "ConditionCheck": "ConditionCheckItem", "Get": "GetItem"}
# SQS authorizes a batch call with the action of its single form.
SQS_ACTIONS = {"SendMessageBatch": "SendMessage", "DeleteMessageBatch": "DeleteMessage",
               "ChangeMessageVisibilityBatch": "ChangeMessageVisibility"}


def _api_id(url: str) -> str | None:
    host = urlparse(url).hostname or ""
    return host.split(".", 1)[0] if ".execute-api." in host else None


def _secret_arn(secret: str, r: Resolver) -> str:
    """A secret named by its name is authorized as its ARN (AWS adds a random suffix; tests name
    theirs)."""
    return secret if secret.startswith("arn:") else r.arn("secretsmanager", f"secret:{secret}")


def _cluster_arn(cluster: str | None, r: Resolver) -> str:
    cluster = cluster or "default"
    return cluster if cluster.startswith("arn:") else r.arn("ecs", f"cluster/{cluster}")


def _task_arn(task: str, cluster_arn: str, r: Resolver) -> str:
    return task if task.startswith("arn:") else r.arn("ecs", f"task/{cluster_arn.rsplit('/', 1)[-1]}/{task}")


def requests_of(service: str, operation: str, params: dict[str, Any], r: Resolver,
                endpoint: str = "") -> list[Request]:
    """The IAM requests one botocore call makes."""
    if service == "dynamodb":
        if operation in ("TransactWriteItems", "TransactGetItems"):
            out = []
            for item in params.get("TransactItems") or []:
                kind, body = next(iter(item.items()))
                out.append(Request(f"dynamodb:{TRANSACT_ACTIONS[kind]}", r.arn("dynamodb", f"table/{body['TableName']}")))
            return out
        if operation in ("BatchGetItem", "BatchWriteItem"):
            return [Request(f"dynamodb:{operation}", r.arn("dynamodb", f"table/{table}"))
                    for table in params.get("RequestItems") or {}]
        table = params.get("TableName")
        if table is None:
            return [Request(f"dynamodb:{operation}", "*")]
        index = f"/index/{params['IndexName']}" if params.get("IndexName") else ""
        return [Request(f"dynamodb:{operation}", r.arn("dynamodb", f"table/{table}{index}"))]
    if service == "sqs":
        url = params.get("QueueUrl", "")
        resource = r.arn("sqs", url.rsplit("/", 1)[-1]) if url else "*"
        return [Request(f"sqs:{SQS_ACTIONS.get(operation, operation)}", resource)]
    if service == "ecs":
        return _ecs_requests(operation, params, r)
    if service == "scheduler":
        group = params.get("GroupName") or "default"
        resource = r.arn("scheduler", f"schedule/{group}/{params.get('Name', '*')}")
        out = [Request(f"scheduler:{operation}", resource)]
        role = (params.get("Target") or {}).get("RoleArn")
        if operation in ("CreateSchedule", "UpdateSchedule") and role:
            out.append(Request("iam:PassRole", role, (("iam:PassedToService", "scheduler.amazonaws.com"),)))
        return out
    if service == "logs":
        group = params.get("logGroupName", "")
        stream = params.get("logStreamName")
        resource = r.arn("logs", f"log-group:{group}:log-stream:{stream}" if stream else f"log-group:{group}:*")
        return [Request(f"logs:{operation}", resource)]
    if service == "lambda":
        name = params.get("FunctionName", "")
        resource = name if name.startswith("arn:") else r.arn("lambda", f"function:{name}")
        return [Request("lambda:InvokeFunction" if operation == "Invoke" else f"lambda:{operation}", resource)]
    if service == "ses":
        source = params.get("Source", "")
        address = source.rsplit("<", 1)[-1].rstrip(">").strip()
        return [Request(f"ses:{operation}", r.arn("ses", f"identity/{address.split('@')[-1]}"),
                        (("ses:FromAddress", address),))]
    if service == "secretsmanager":
        return [Request(f"secretsmanager:{operation}", _secret_arn(params.get("SecretId", ""), r))]
    if service == "apigatewaymanagementapi":
        parsed = urlparse(endpoint)
        api = _api_id(endpoint) or _api_id(r.env.get("WEBSOCKET_URL", "")) or "*"
        stage = parsed.path.strip("/").split("/")[0] if _api_id(endpoint) else "api"
        method = {"PostToConnection": "POST", "DeleteConnection": "DELETE", "GetConnection": "GET"}[operation]
        return [Request("execute-api:ManageConnections",
                        r.arn("execute-api", f"{api}/{stage}/{method}/@connections/{params.get('ConnectionId')}"))]
    return [Request(f"{service}:{operation}", "*")]


def _ecs_requests(operation: str, params: dict[str, Any], r: Resolver) -> list[Request]:
    cluster = _cluster_arn(params.get("cluster"), r)
    on_cluster = (("ecs:cluster", cluster),)
    if operation == "RunTask":
        definition = params.get("taskDefinition", "")
        resource = definition if definition.startswith("arn:") else r.arn("ecs", f"task-definition/{definition}")
        out = [Request("ecs:RunTask", resource, on_cluster)]
        if params.get("tags"):
            out.append(Request("ecs:TagResource", r.arn("ecs", f"task/{cluster.rsplit('/', 1)[-1]}/*"),
                               (("ecs:CreateAction", "RunTask"),)))
        return out
    if operation == "RegisterTaskDefinition":
        family = params.get("family", "")
        out = [Request("ecs:RegisterTaskDefinition", "*")]
        if params.get("tags"):
            out.append(Request("ecs:TagResource", r.arn("ecs", f"task-definition/{family}:*"),
                               (("ecs:CreateAction", "RegisterTaskDefinition"),)))
        for key in ("executionRoleArn", "taskRoleArn"):
            if params.get(key):
                out.append(Request("iam:PassRole", params[key], (("iam:PassedToService", "ecs-tasks.amazonaws.com"),)))
        return out
    if operation in ("StopTask", "DescribeTasks"):
        tasks = params.get("tasks") or [params.get("task", "")]
        return [Request(f"ecs:{operation}", _task_arn(task, cluster, r), on_cluster) for task in tasks]
    if operation == "ListTasks":
        return [Request("ecs:ListTasks", r.arn("ecs", f"container-instance/{cluster.rsplit('/', 1)[-1]}/*"), on_cluster)]
    return [Request(f"ecs:{operation}", "*")]


# the check ---------------------------------------------------------------------------------------


# Variables the app gives a default when the environment leaves them out (chalicelib/config.py):
# the resources it then touches are the ones those defaults name.
DEFAULTED = {"TASKS_TABLE": "tasks_table", "JOBS_TABLE": "jobs_table", "EXECUTIONS_TABLE": "executions_table",
             "CONNECTIONS_TABLE": "connections_table", "DELIVERIES_TABLE": "deliveries_table",
             "IDEMPOTENCY_TABLE": "idempotency_table", "LOG_GROUP": "log_group", "ECS_CLUSTER": "ecs_cluster",
             "SCHEDULE_GROUP": "schedule_group", "LOGS_FUNCTION_NAME": "logs_function_name"}


def _region_env() -> tuple[dict[str, str], str]:
    from chalicelib.config import Settings

    settings = Settings.from_environment()
    env = {**{name: str(getattr(settings, attribute)) for name, attribute in DEFAULTED.items()}, **os.environ}
    return env, settings.region


_resolved: dict[tuple[str, tuple[tuple[str, str], ...]], list[Statement]] = {}
RELEVANT = ("TABLE", "QUEUE", "LOG_GROUP", "ECS_CLUSTER", "PREFIX", "WEBSOCKET", "POOLS", "SCHEDULE", "ROLE_ARN",
            "SECRET", "MAIL_SENDER", "LOGS_FUNCTION_NAME", "AWS_REGION", "AWS_DEFAULT_REGION")


def statements_of(function: str, env: dict[str, str], region: str) -> list[Statement]:
    key = (function, tuple(sorted((k, v) for k, v in env.items() if any(part in k for part in RELEVANT))))
    if key not in _resolved:
        _resolved[key] = role_statements(function, Resolver(env, region))
    return _resolved[key]


def refusal(function: str | None, service: str, operation: str, params: dict[str, Any],
            endpoint: str = "") -> str | None:
    """Why the call would be refused (None when it would be allowed). Outside a function, a call
    is allowed when some function's role allows it, or the deployment never makes it."""
    env, region = _region_env()
    resolver = Resolver(env, region)
    for request in requests_of(service, operation, params, resolver, endpoint):
        if function is not None:
            if not any(s.allows(request) for s in statements_of(function, env, region)):
                return f"{function} may not call {request.action} on {request.resource} ({operation}{_context(request)})"
        elif request.action not in not_granted() and not any(
                s.allows(request) for name in functions() for s in statements_of(name, env, region)):
            return (f"no function may call {request.action} on {request.resource} "
                    f"({operation}{_context(request)}, made by chalicelib outside a handler)")
    return None


def _context(request: Request) -> str:
    return "".join(f", {key}={value}" for key, value in request.context)


def _from_chalicelib() -> bool:
    """Whether chalicelib made the call, and not on behalf of provisioning (tables the template
    creates in AWS, created by the local runtime and the tests' fixtures)."""
    frame = sys._getframe(2)
    found = False
    while frame is not None:
        name = frame.f_code.co_filename
        if name.startswith(INFRA):
            return False
        found = found or name.startswith(CHALICELIB)
        frame = frame.f_back  # type: ignore[assignment]
    return found


def _refuse(message: str, operation: str) -> None:
    from botocore.exceptions import ClientError

    with _lock:
        _violations.append(message)
    raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": f"(tests/iam.py) {message}"},
                       "ResponseMetadata": {"HTTPStatusCode": 400}}, operation)


def install() -> None:
    """Check every AWS call of this process from now on (idempotent), and attribute each handler
    of the app to its function."""
    global _installed
    if _installed:
        return
    _installed = True
    from botocore.client import BaseClient

    original = BaseClient._make_api_call

    def make_api_call(client: Any, operation: str, params: dict[str, Any]) -> Any:
        function = _function.get()
        if function == TEST:
            return original(client, operation, params)
        if function is not None or _from_chalicelib():
            model = client.meta.service_model
            why = refusal(function, model.service_name, operation, params, client.meta.endpoint_url or "")
            if why is not None:
                _refuse(why, operation)
        return original(client, operation, params)

    BaseClient._make_api_call = make_api_call  # type: ignore[method-assign]
    _attribute_handlers()


def _attribute_handlers() -> None:
    import app as app_module

    # Outermost, before the app's own HTTP middleware: what that does (Basic auth's secret) is the API's call too.
    app_module.app.middleware_handlers.insert(0, (_middleware, "all"))


def _middleware(event: Any, get_response: Any) -> Any:
    with acting_as(function_of(event)):
        return get_response(event)


def function_of(event: Any) -> str:
    """The function a Chalice event object's handler is deployed as."""
    kind = type(event).__name__
    if kind == "Request":
        return "APIHandler"
    if kind == "CloudWatchEvent":
        return "Reconciler"
    if kind == "LambdaFunctionEvent":
        return "Logs"
    if kind == "WebsocketEvent":
        route = event.to_dict()["requestContext"]["routeKey"]
        return {"$connect": "WebsocketConnect", "$disconnect": "WebsocketDisconnect"}.get(route, "WebsocketMessage")
    if kind == "SQSEvent":
        records = event.to_dict().get("Records") or [{}]
        queue = str(records[0].get("eventSourceARN", "")).rsplit(":", 1)[-1]
        for variable, function in (("JOBS_QUEUE_URL", "Dispatch"), ("EVENTS_QUEUE_URL", "Monitor"),
                                   ("NOTIFY_QUEUE_URL", "Notify")):
            if os.environ.get(variable, "").rsplit("/", 1)[-1] == queue or queue.endswith(variable.split("_")[0].lower()):
                return function
    raise AssertionError(f"tests/iam.py cannot tell which function handles a {kind}")


@contextmanager
def acting_as(function: str) -> Iterator[None]:
    """AWS calls made inside run as `function` (a logical id of infra/fastlane.yaml) would."""
    assert function in functions(), f"{function} is not a function of the template"
    token = _function.set(function)
    try:
        yield
    finally:
        _function.reset(token)


@contextmanager
def as_test() -> Iterator[None]:
    """AWS calls made inside are the test's own (a container writing its output while a handler
    runs), not the running function's."""
    token = _function.set(TEST)
    try:
        yield
    finally:
        _function.reset(token)


def take_violations() -> list[str]:
    """The refusals recorded since the last call, forgotten."""
    with _lock:
        taken = list(_violations)
        _violations.clear()
    return taken
