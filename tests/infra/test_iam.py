"""Least privilege: each Lambda function's role grants exactly what infra/permissions.yaml
declares, the declared map covers every AWS call the code makes, and nothing in it is unused."""
from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.infra.cfn import as_list, grants, references, statements
from tests.infra.conftest import ROOT

# One worker packages the template once for all of these (make test runs pytest -n 2 --dist loadgroup).
pytestmark = pytest.mark.xdist_group("infra")

PERMISSIONS = yaml.safe_load((ROOT / "infra" / "permissions.yaml").read_text())
# Actions that have no resource-level permissions, so "*" is the only resource they take.
NO_RESOURCE_LEVEL = {"ecs:RegisterTaskDefinition", "ecs:DescribeTaskDefinition", "ecr:GetAuthorizationToken"}


def declared(function: str, platform: bool | None = None) -> set[tuple[str, str]]:
    return {(action, resource)
            for entry in PERMISSIONS["functions"][function]
            if platform is None or bool(entry.get("platform")) == platform
            for action in entry["actions"] for resource in entry["resources"]}


def role_of(template: dict[str, Any], function: str) -> tuple[str, dict[str, Any]]:
    role = template["Resources"][function]["Properties"]["Role"]
    assert isinstance(role, dict) and "Fn::GetAtt" in role, f"{function} must use a role of the template, not {role}"
    name = role["Fn::GetAtt"][0]
    return name, template["Resources"][name]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from tests.infra.flows import record_every_call

    return record_every_call(str(tmp_path_factory.mktemp("flows")))


def test_every_function_of_the_app_is_in_the_map_and_has_a_role_of_its_own(template, functions) -> None:
    assert set(functions) == set(PERMISSIONS["functions"])
    roles = [role_of(template, name)[0] for name in functions]
    assert len(set(roles)) == len(roles), "functions share a role"
    assert "DefaultRole" not in template["Resources"], "Chalice's generated role is still there"


@pytest.mark.parametrize("function", sorted(PERMISSIONS["functions"]))
def test_the_role_grants_exactly_what_the_map_declares(template, function: str) -> None:
    _, role = role_of(template, function)
    granted = grants(role)
    expected = declared(function)
    assert granted - expected == set(), f"{function}'s role grants more than infra/permissions.yaml"
    assert expected - granted == set(), f"{function}'s role lacks what infra/permissions.yaml declares"


def test_no_role_grants_every_action_or_every_resource_of_an_action_that_can_be_scoped(template) -> None:
    for name, resource in template["Resources"].items():
        if resource.get("Type") != "AWS::IAM::Role":
            continue
        for policy in resource["Properties"].get("Policies", []):
            for statement in statements(policy["PolicyDocument"]):
                actions = as_list(statement["Action"])
                assert not [a for a in actions if a == "*" or a.endswith(":*")], (name, actions)
                if statement.get("Resource") == "*" or "*" in as_list(statement.get("Resource")):
                    assert set(actions) <= NO_RESOURCE_LEVEL, f"{name}: {actions} on every resource"
        assert not resource["Properties"].get("ManagedPolicyArns"), f"{name}: managed policies are not checked"


def test_each_function_is_granted_every_call_it_makes_on_the_resource_it_touches(template, recorded) -> None:
    """The flows of tests/infra/flows.py ran every function on moto; each call must be granted
    to the function that made it, on the template resource its environment variable names."""
    env = template["Globals"]["Function"]["Environment"]["Variables"]
    names = {resource["Properties"].get("FunctionName", {}).get("Fn::Sub"): logical
             for logical, resource in template["Resources"].items()
             if resource.get("Type") == "AWS::Serverless::Function"}
    missing = []
    for function, calls in sorted(recorded.calls.items()):
        granted = declared(function)
        for call in sorted(calls, key=lambda c: (c.action, c.resource)):
            targets = {t for a, t in granted if a == call.action}
            if not targets:
                missing.append(f"{function}: {call.action} ({call.operation})")
                continue
            if "*" in targets or not call.resource:
                continue
            value = env[call.resource]
            touched = references(value) | ({names[value["Fn::Sub"]]} if isinstance(value, dict)
                                           and value.get("Fn::Sub") in names else set())
            if not touched & targets:
                missing.append(f"{function}: {call.action} on {call.resource} ({sorted(touched)}), granted on "
                               f"{sorted(targets)}")
    assert not missing, "calls not granted:\n" + "\n".join(missing)
    assert set(recorded.calls) == set(PERMISSIONS["functions"]), "a function was not run by the flows"


# Calls found by reading the code ------------------------------------------------------------------

CLIENT_SERVICE = re.compile(r"""client\(\s*["']([a-z0-9-]+)["']""")
RENAMED = {"lambda:Invoke": "lambda:InvokeFunction", "sqs:SendMessageBatch": "sqs:SendMessage",
           "sqs:DeleteMessageBatch": "sqs:DeleteMessage", "sqs:ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility"}


def services_used() -> set[str]:
    found = {"dynamodb"}  # PynamoDB
    for path in (ROOT / "chalicelib").rglob("*.py"):
        found |= set(CLIENT_SERVICE.findall(path.read_text()))
    return found


TALKS_TO_AWS = re.compile(r"import boto3|from botocore|import botocore|from pynamodb|\.client\(|\bclient\(")


def aws_modules() -> list[Path]:
    """The modules that talk to AWS (the adapters and the wiring, by design): those that import
    boto3, botocore or PynamoDB, or build clients. Elsewhere, method names like list_tasks are the
    domain's, not ECS's."""
    return [path for path in (ROOT / "chalicelib").rglob("*.py") if TALKS_TO_AWS.search(path.read_text())]


def called_methods() -> dict[str, set[str]]:
    """Method name -> the modules talking to AWS that call `<something>.<method>(...)`."""
    found: dict[str, set[str]] = {}
    for path in aws_modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                found.setdefault(node.func.attr, set()).add(str(path.relative_to(ROOT)))
    return found


def actions_called_in_code() -> dict[str, set[str]]:
    """IAM action -> modules, for every call of a boto3 client method of a service the code uses
    (apigatewaymanagementapi's calls all need execute-api:ManageConnections)."""
    import botocore.session
    from botocore import xform_name

    session = botocore.session.get_session()
    methods = called_methods()
    actions: dict[str, set[str]] = {}
    for service in services_used():
        model = session.get_service_model(service)
        for operation in model.operation_names:
            method = xform_name(operation)
            if method in methods:
                if service == "apigatewaymanagementapi":
                    action = "execute-api:ManageConnections"
                else:
                    action = f"{model.signing_name}:{operation}"
                actions.setdefault(RENAMED.get(action, action), set()).update(methods[method])
    return actions


def test_every_call_in_the_code_is_granted_to_some_function_or_declared_not_granted() -> None:
    granted = {action for function in PERMISSIONS["functions"] for action, _ in declared(function)}
    ungranted = {action: modules for action, modules in actions_called_in_code().items()
                 if action not in granted and action not in PERMISSIONS["not_granted"]}
    assert not ungranted, f"calls in chalicelib/ that no role grants: {ungranted}"


# Actions no code names: they come with another call (passing a role, tagging on create).
IMPLIED = {"iam:PassRole", "ecs:TagResource"}


def test_every_granted_action_is_called_by_the_function_or_somewhere_in_the_code(recorded) -> None:
    """No stale permission: each non-platform action of a function was called by it in the flows,
    or is called somewhere in chalicelib/ (a path the flows do not reach). DynamoDB's actions are
    checked below; IMPLIED ones come with the calls that need them."""
    in_code = set(actions_called_in_code())
    stale = []
    for function in PERMISSIONS["functions"]:
        called = {call.action for call in recorded.calls.get(function, ())}
        for action in sorted({a for a, _ in declared(function, platform=False)}):
            if action in IMPLIED or action.startswith("dynamodb:"):
                continue
            if action not in called and action not in in_code:
                stale.append(f"{function}: {action}")
    assert not stale, f"granted but never called: {stale}"


def test_dynamodb_actions_granted_are_ones_the_store_makes(recorded) -> None:
    """PynamoDB's calls cannot be read off the code: they must have been seen in the flows, by
    some function, or be a raw client call in chalicelib/."""
    seen = {call.action for calls in recorded.calls.values() for call in calls} | set(actions_called_in_code())
    granted = {action for function in PERMISSIONS["functions"] for action, _ in declared(function, platform=False)
               if action.startswith("dynamodb:")}
    assert granted - seen == set()


def test_declared_not_granted_calls_are_still_in_the_code() -> None:
    assert set(PERMISSIONS["not_granted"]) <= set(actions_called_in_code())


def test_the_scheduler_role_may_only_send_to_the_jobs_queue(template) -> None:
    role = template["Resources"]["SchedulerRole"]
    assert grants(role) == {("sqs:SendMessage", "JobsQueue")}
    trust = role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]
    assert trust["Principal"] == {"Service": "scheduler.amazonaws.com"}


def test_the_task_role_only_writes_job_output(template) -> None:
    """Jobs hold the task role too: it may not list or read the job log group, so a job cannot
    learn another execution's streams (named by ECS task ids) to forge their output."""
    assert grants(template["Resources"]["TaskRole"]) == {
        ("logs:CreateLogStream", "JobLogGroup"), ("logs:PutLogEvents", "JobLogGroup")}
    actions = {action for action, _ in grants(template["Resources"]["TaskRole"])}
    assert not actions & {"logs:DescribeLogStreams", "logs:GetLogEvents", "logs:FilterLogEvents", "logs:StartQuery",
                          "ecs:ListTasks", "ecs:DescribeTasks"}
