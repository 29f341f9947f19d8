"""No drift between the code and the template: every environment variable the app reads is set
for the functions, and the tables and queues are the ones the adapters create locally."""
from __future__ import annotations

import ast
import json
from typing import Any

import pytest
import yaml

from tests.infra.cfn import references
from tests.infra.conftest import ROOT

# One worker packages the template once for all of these (make test runs pytest -n 2 --dist loadgroup).
pytestmark = pytest.mark.xdist_group("infra")

ENVIRONMENT = yaml.safe_load((ROOT / "infra" / "environment.yaml").read_text())


def variables_read() -> dict[str, set[str]]:
    """Environment variable -> the files reading it (os.environ.get/[...], os.getenv, and the
    settings' table of variables in chalicelib/config.py)."""
    from chalicelib.config import VARIABLES

    found: dict[str, set[str]] = {name: {"chalicelib/config.py"} for name in VARIABLES.values()}
    paths = [ROOT / "app.py", *(ROOT / "chalicelib").rglob("*.py")]
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            name = None
            if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
                func = node.func
                if isinstance(func, ast.Attribute) and func.attr in ("get", "getenv") and (
                        ast.unparse(func.value) in ("os.environ", "os")):
                    name = node.args[0].value
            elif isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ" and isinstance(
                    node.slice, ast.Constant):
                name = node.slice.value
            if isinstance(name, str):
                found.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    return found


def effective_environment(template: dict[str, Any], function: str) -> dict[str, Any]:
    variables = dict(template["Globals"]["Function"]["Environment"]["Variables"])
    own = template["Resources"][function]["Properties"].get("Environment", {}).get("Variables", {})
    variables.update(own)
    return variables


def test_the_scan_finds_the_settings() -> None:
    read = variables_read()
    assert {"TASKS_TABLE", "JOBS_QUEUE_URL", "POOLS", "MAX_RUNNING", "JOBS_QUEUE_NAME"} <= set(read)


def tunables() -> set[str]:
    """Variables of settings that chalicelib/config.py gives a default of their own (not empty,
    not named after the deployment): the deployment leaves them unset unless it chooses otherwise
    (docs/deploy.md, tests/infra/test_settings.py)."""
    import dataclasses

    from chalicelib.config import PER_PREFIX, VARIABLES, Settings

    return {VARIABLES[field.name] for field in dataclasses.fields(Settings)
            if field.name in VARIABLES and field.name not in PER_PREFIX
            and field.default is not dataclasses.MISSING and field.default not in ("", None)}


def test_every_variable_the_app_reads_is_set_for_every_function(template, functions) -> None:
    """Every variable the app reads without a default of its own (resources, switches)."""
    missing = []
    for name, files in sorted(variables_read().items()):
        if name in ENVIRONMENT["not_in_template"] or name in tunables():
            continue
        exempt = set(ENVIRONMENT["not_on"].get(name, {}).get("functions", []))
        for function in sorted(set(functions) - exempt):
            if name not in effective_environment(template, function):
                missing.append(f"{name} (read in {sorted(files)}) is not set for {function}")
    assert not missing, "\n".join(missing)


def test_the_template_sets_no_variable_that_nothing_reads(template, functions) -> None:
    read = set(variables_read())
    for function in functions:
        unread = set(effective_environment(template, function)) - read
        assert unread == set(), f"{function}: {sorted(unread)} are set but never read"


def test_the_exceptions_name_variables_the_app_still_reads() -> None:
    read = set(variables_read())
    assert set(ENVIRONMENT["not_in_template"]) | set(ENVIRONMENT["not_on"]) <= read


def test_every_reference_of_the_environment_is_a_resource_or_parameter_of_the_template(template) -> None:
    known = set(template["Resources"]) | set(template.get("Parameters", {}))
    for name, value in template["Globals"]["Function"]["Environment"]["Variables"].items():
        assert references(value) <= known, name


# what the local runtime creates (infra/local/provision.py, from the adapters' own models) -------


@pytest.fixture(scope="module")
def provisioned() -> dict[str, Any]:
    """The CreateTable, UpdateTimeToLive and CreateQueue requests of provision(), and its env."""
    import os

    import boto3
    from botocore.client import BaseClient
    from moto import mock_aws

    from chalicelib import wiring
    from infra.local.provision import local_environment, provision

    requests: dict[str, list[dict[str, Any]]] = {}
    original = BaseClient._make_api_call

    def make_api_call(client: Any, operation: str, params: dict[str, Any]) -> Any:
        requests.setdefault(operation, []).append(params)
        return original(client, operation, params)

    keep = dict(os.environ)
    os.environ.update({"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing", **local_environment("drift")})
    for name in [n for n in os.environ if n.startswith("AWS_ENDPOINT_URL")]:
        del os.environ[name]
    BaseClient._make_api_call = make_api_call  # type: ignore[method-assign]
    try:
        with mock_aws():
            wiring.reset()
            env = provision(boto3.client("sqs", region_name="us-east-1"), "drift",
                            logs=boto3.client("logs", region_name="us-east-1"))
    finally:
        BaseClient._make_api_call = original  # type: ignore[method-assign]
        os.environ.clear()
        os.environ.update(keep)
        wiring.reset()
    return {"requests": requests, "env": {**local_environment("drift"), **env}}


def _table_resource(template: dict[str, Any], local_name: str) -> dict[str, Any]:
    suffix = local_name[len("drift-"):]
    for resource in template["Resources"].values():
        if resource.get("Type") == "AWS::DynamoDB::Table" and \
                resource["Properties"]["TableName"] == {"Fn::Sub": f"fastlane-${{Stage}}-{suffix}"}:
            return resource["Properties"]
    raise AssertionError(f"no table fastlane-<stage>-{suffix} in the template")


def _indexes(indexes: list[dict[str, Any]] | None) -> dict[str, Any]:
    return {i["IndexName"]: (i["KeySchema"], i["Projection"]) for i in indexes or []}


def test_every_table_the_adapters_create_is_in_the_template_with_the_same_keys_and_indexes(template,
                                                                                          provisioned) -> None:
    created = provisioned["requests"]["CreateTable"]
    assert len(created) == 6
    for request in created:
        table = _table_resource(template, request["TableName"])
        assert table["BillingMode"] == request.get("BillingMode") == "PAY_PER_REQUEST"
        assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
        assert table["KeySchema"] == request["KeySchema"], request["TableName"]
        assert sorted(table["AttributeDefinitions"], key=json.dumps) == \
            sorted(request["AttributeDefinitions"], key=json.dumps), request["TableName"]
        assert _indexes(table.get("GlobalSecondaryIndexes")) == _indexes(request.get("GlobalSecondaryIndexes"))
        assert _indexes(table.get("LocalSecondaryIndexes")) == _indexes(request.get("LocalSecondaryIndexes"))


def test_tables_whose_records_expire_have_the_same_ttl_attribute(template, provisioned) -> None:
    from chalicelib.adapters.connections import build_model
    from chalicelib.config import Settings

    expiring = {r["TableName"]: r["TimeToLiveSpecification"]["AttributeName"]
                for r in provisioned["requests"].get("UpdateTimeToLive", [])}
    # PynamoDB models declare theirs with a TTLAttribute
    model = build_model(Settings.from_environment())
    ttl = [a.attr_name for a in model.get_attributes().values() if type(a).__name__ == "TTLAttribute"]
    expiring.setdefault("drift-connections", ttl[0])
    for name, attribute in expiring.items():
        assert _table_resource(template, name)["TimeToLiveSpecification"] == {"AttributeName": attribute,
                                                                             "Enabled": True}
    with_ttl = [r for r in template["Resources"].values() if r.get("Type") == "AWS::DynamoDB::Table"
                and "TimeToLiveSpecification" in r["Properties"]]
    assert len(with_ttl) == len(expiring)


def test_every_queue_has_a_dead_letter_queue_and_redrive_as_provisioned(template, provisioned) -> None:
    resources = template["Resources"]
    queues = {r["Properties"]["QueueName"]["Fn::Sub"]: (name, r) for name, r in resources.items()
              if r.get("Type") == "AWS::SQS::Queue"}
    for request in provisioned["requests"]["CreateQueue"]:
        local = request["QueueName"][len("drift-"):]
        assert f"fastlane-${{Stage}}-{local}" in queues, local
        if not local.endswith("-dlq"):
            _, queue = queues[f"fastlane-${{Stage}}-{local}"]
            dlq_name, _ = queues[f"fastlane-${{Stage}}-{local}-dlq"]
            redrive = queue["Properties"]["RedrivePolicy"]
            assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": [dlq_name, "Arn"]}
            assert queue["Properties"]["VisibilityTimeout"] >= 6 * 60  # Lambda: six times the function timeout
    assert len(queues) == len(provisioned["requests"]["CreateQueue"])


def test_notification_messages_get_more_receives_than_launches_and_events_in_both(template, provisioned) -> None:
    """Launches and task events lost to a dead-letter queue are made good by the reconciler;
    notification messages only by their redeliveries, so their queue redrives later."""
    from infra.local.sqlite.queues import NOTIFY_MAX_RECEIVE_COUNT

    parameters = template["Parameters"]
    assert parameters["NotifyMaxReceiveCount"]["Default"] == NOTIFY_MAX_RECEIVE_COUNT
    assert NOTIFY_MAX_RECEIVE_COUNT > parameters["MaxReceiveCount"]["Default"]
    redrives = {name: template["Resources"][name]["Properties"]["RedrivePolicy"]["maxReceiveCount"]
                for name in ("JobsQueue", "EventsQueue", "NotifyQueue")}
    assert redrives == {"JobsQueue": {"Ref": "MaxReceiveCount"}, "EventsQueue": {"Ref": "MaxReceiveCount"},
                        "NotifyQueue": {"Ref": "NotifyMaxReceiveCount"}}
    local = {request["QueueName"][len("drift-"):]: json.loads(request["Attributes"]["RedrivePolicy"])["maxReceiveCount"]
             for request in provisioned["requests"]["CreateQueue"] if "RedrivePolicy" in request.get("Attributes", {})}
    assert local == {"jobs": "5", "events": "5", "notify": str(NOTIFY_MAX_RECEIVE_COUNT)}


def test_the_local_queues_redrive_as_the_template_says(tmp_path) -> None:
    from infra.local.sqlite.db import Database
    from infra.local.sqlite.queues import DEAD_LETTER_SUFFIX, NOTIFY_MAX_RECEIVE_COUNT, ROLES, LocalQueues, create_queues

    queues = LocalQueues(Database(str(tmp_path / "local.db")))
    create_queues(queues, visibility_timeout=30, max_receive_count=5)
    receives = {}
    for role, name in ROLES.items():
        queues.send(name, "{}")
        count = 0
        while queues.receive(name, visibility_timeout=0):
            count += 1
        assert queues.depth(name + DEAD_LETTER_SUFFIX)["visible"] == 1
        receives[role] = count
    assert receives == {"jobs": 5, "events": 5, "notify": NOTIFY_MAX_RECEIVE_COUNT}


def test_every_resource_the_local_deployment_names_is_named_by_the_template_too(template, provisioned) -> None:
    """The variables provision() sets locally (tables, queues, group, roles) that the app reads
    are all set in AWS."""
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    assert (set(provisioned["env"]) & set(variables_read())) - set(variables) == set()


def test_the_sqs_handlers_are_subscribed_to_the_template_queues(template) -> None:
    for function, queue in (("Dispatch", "JobsQueue"), ("Monitor", "EventsQueue"), ("Notify", "NotifyQueue")):
        (event,) = template["Resources"][function]["Properties"]["Events"].values()
        assert event["Type"] == "SQS"
        assert references(event["Properties"]["Queue"]) == {queue}
        assert event["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
