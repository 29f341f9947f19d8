"""The deployable template: it lints, SAM translates it, it wires what the app expects (access,
event sources, FireLens, the task state rule, live logs), and operators get names, tags, alarms
and a dashboard that match the code."""
from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.infra.cfn import as_list, references
from tests.infra.conftest import MODES, ROOT

# One worker packages the template once for all of these (make test runs pytest -n 2 --dist loadgroup).
pytestmark = pytest.mark.xdist_group("infra")

TAG = {"service": "fastlane", "stage": {"Ref": "Stage"}}


def test_the_packaged_template_passes_cfn_lint(packaged_paths: dict[str, Path]) -> None:
    """The default (IAM) template; the others differ only in their routes' `security` (below)."""
    lint = subprocess.run([str(Path(sys.executable).with_name("cfn-lint")), str(packaged_paths["iam"])],
                          capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr


@pytest.fixture(scope="module")
def translated(template: dict[str, Any], monkeypatch_module: Any) -> dict[str, Any]:
    """The template as CloudFormation runs it: after `aws cloudformation package` (code in S3)
    and the SAM transform."""
    from samtranslator.translator.transform import transform

    monkeypatch_module.setenv("AWS_DEFAULT_REGION", "us-east-1")
    packaged = copy.deepcopy(template)
    for resource in packaged["Resources"].values():
        if resource.get("Type") == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = "s3://artifacts/fastlane/deployment.zip"

    class NoManagedPolicies:
        def load(self) -> dict[str, str]:
            return {}

    return transform(packaged, {"Stage": "dev"}, NoManagedPolicies())


@pytest.fixture(scope="module")
def monkeypatch_module() -> Any:
    patch = pytest.MonkeyPatch()
    yield patch
    patch.undo()


def test_sam_translates_it_and_each_queue_feeds_its_handler_with_partial_batch_failures(translated) -> None:
    mappings = {r["Properties"]["FunctionName"]["Ref"]: r["Properties"] for r in translated["Resources"].values()
                if r["Type"] == "AWS::Lambda::EventSourceMapping"}
    assert set(mappings) == {"Dispatch", "Monitor", "Notify"}
    for function, queue in (("Dispatch", "JobsQueue"), ("Monitor", "EventsQueue"), ("Notify", "NotifyQueue")):
        assert mappings[function]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        # a reference to the queue resource: the mapping is created after the queue, and matches it
        assert references(mappings[function]["EventSourceArn"]) == {queue}


@pytest.mark.parametrize("mode", MODES)
def test_every_route_is_authorized_as_packaged(templates, mode: str) -> None:
    body = templates[mode]["Resources"]["RestAPI"]["Properties"]["DefinitionBody"]
    expected = {"iam": [{"sigv4": []}], "api_key": [{"api_key": []}], "none": None}[mode]
    without = copy.deepcopy(body)
    for methods in without["paths"].values():
        for operation in methods.values():
            operation.pop("security", None)
    without.pop("securityDefinitions", None)
    plain = copy.deepcopy(templates["none"]["Resources"]["RestAPI"]["Properties"]["DefinitionBody"])
    assert without == plain, "the templates differ in more than authorization"
    rest = {name: r for name, r in templates[mode]["Resources"].items() if name != "RestAPI"}
    assert rest == {name: r for name, r in templates["none"]["Resources"].items() if name != "RestAPI"}
    for path, methods in body["paths"].items():
        # A browser cannot send an API key when it opens a page: the job browser's page and files
        # are served without one (docs/ui.md#access), and the page sends it with each call.
        wanted = None if mode == "api_key" and (path == "/ui" or path.startswith("/ui/")) else expected
        for method, operation in methods.items():
            assert operation.get("security") == wanted, (mode, method, path)
    if mode == "iam":
        assert body["securityDefinitions"]["sigv4"]["x-amazon-apigateway-authtype"] == "awsSigv4"


def test_api_keys_come_with_a_usage_plan_that_throttles_and_sets_a_quota(template) -> None:
    resources = template["Resources"]
    plan = resources["ApiUsagePlan"]
    assert plan["Condition"] == "UsesApiKeys" == resources["ApiKey"]["Condition"]
    assert set(plan["Properties"]["Throttle"]) == {"RateLimit", "BurstLimit"}
    assert plan["Properties"]["Quota"]["Period"] == "DAY"
    assert references(plan["Properties"]["ApiStages"]) == {"RestAPI"}
    assert template["Conditions"]["UsesApiKeys"] == {"Fn::Equals": [{"Ref": "ApiAuth"}, "api_key"]}


def test_unknown_routes_answer_in_the_app_error_shape(template) -> None:
    responses = template["Resources"]["RestAPI"]["Properties"]["DefinitionBody"][
        "x-amazon-apigateway-gateway-responses"]
    bodies = responses["MISSING_AUTHENTICATION_TOKEN"]["responseTemplates"]["application/json"]["Fn::If"][1:]
    for body in bodies:
        assert set(json.loads(body)) == {"error", "operation"} and json.loads(body)["operation"] == "route"


TYPES_NAMED_BY = {
    "AWS::DynamoDB::Table": "TableName", "AWS::SQS::Queue": "QueueName", "AWS::ECS::Cluster": "ClusterName",
    "AWS::IAM::Role": "RoleName", "AWS::Logs::LogGroup": "LogGroupName", "AWS::Events::Rule": "Name",
    "AWS::Scheduler::ScheduleGroup": "Name", "AWS::SecretsManager::Secret": "Name", "AWS::SNS::Topic": "TopicName",
    "AWS::CloudWatch::Alarm": "AlarmName", "AWS::CloudWatch::Dashboard": "DashboardName",
    "AWS::Logs::MetricFilter": "FilterName", "AWS::Logs::SubscriptionFilter": "FilterName",
    "AWS::Serverless::Function": "FunctionName", "AWS::Serverless::Api": "Name", "AWS::ApiGatewayV2::Api": "Name",
    "AWS::ApiGateway::UsagePlan": "UsagePlanName", "AWS::ApiGateway::ApiKey": "Name",
}


def test_every_resource_that_has_a_name_is_named_for_the_service_and_stage(template) -> None:
    for logical, resource in template["Resources"].items():
        key = TYPES_NAMED_BY.get(resource["Type"])
        if key is None:
            continue
        name = resource["Properties"].get(key)
        assert isinstance(name, dict) and "Fn::Sub" in name, f"{logical} has no {key} naming its stage"
        assert re.search(r"fastlane[-/]\$\{Stage\}", name["Fn::Sub"]), (logical, name)


def _schema_has_tags(resource_type: str) -> bool:
    from cfnlint.schema import PROVIDER_SCHEMA_MANAGER

    return "Tags" in PROVIDER_SCHEMA_MANAGER.get_resource_schema("us-east-1", resource_type).schema.get(
        "properties", {})


def _tags(value: Any) -> dict[str, Any]:
    if isinstance(value, list):
        return {tag["Key"]: tag["Value"] for tag in value}
    return dict(value or {})


# SAM offers no way to tag these (Api's Tags go to its stage; PropagateTags skips schedule rules):
# they get the stack's tags, which `make deploy` sets (--tags) and CloudFormation propagates.
TAGGED_BY_THE_STACK = {"RestAPI", "ReconcilerReconcilerEvent"}


def test_every_resource_that_can_be_tagged_is_tagged_with_the_service_and_stage(translated) -> None:
    untagged = []
    for logical, resource in translated["Resources"].items():
        if logical in TAGGED_BY_THE_STACK or not _schema_has_tags(resource["Type"]):
            continue
        if resource["Type"] == "AWS::Lambda::EventSourceMapping":
            continue  # their function is tagged; SAM does not propagate tags to them
        tags = _tags(resource["Properties"].get("Tags"))
        if {k: tags.get(k) for k in TAG} != TAG:
            untagged.append(f"{logical} ({resource['Type']})")
    assert not untagged, untagged


def test_only_ecs_task_state_changes_of_our_clusters_reach_the_events_queue(template) -> None:
    resources = template["Resources"]
    rule = resources["EcsTaskStateRule"]["Properties"]
    assert rule["EventPattern"]["source"] == ["aws.ecs"]
    assert rule["EventPattern"]["detail-type"] == ["ECS Task State Change"]
    assert rule["EventPattern"]["detail"]["lastStatus"] == ["RUNNING", "STOPPED"]  # only what the monitor records
    clusters = rule["EventPattern"]["detail"]["clusterArn"]["Fn::If"]
    assert clusters[2] == [{"Fn::GetAtt": ["Cluster", "Arn"]}]
    assert references(clusters[1]) == {"Cluster", "PoolClusterArns"}
    assert [references(t["Arn"]) for t in rule["Targets"]] == [{"EventsQueue"}]
    (statement,) = resources["EventsQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Condition"]["ArnEquals"]["aws:SourceArn"] == {"Fn::GetAtt": ["EcsTaskStateRule", "Arn"]}


def test_the_cluster_has_fargate_and_fargate_spot(template) -> None:
    cluster = template["Resources"]["Cluster"]["Properties"]
    assert cluster["CapacityProviders"] == ["FARGATE", "FARGATE_SPOT"]


def test_the_job_log_group_feeds_the_logs_function(template) -> None:
    resources = template["Resources"]
    subscription = resources["JobLogSubscription"]["Properties"]
    assert subscription["LogGroupName"] == {"Ref": "JobLogGroup"}
    assert subscription["DestinationArn"] == {"Fn::GetAtt": ["Logs", "Arn"]}
    assert subscription["FilterPattern"] == ""
    permission = resources["LogsInvokePermission"]["Properties"]
    assert permission["Principal"] == "logs.amazonaws.com"
    assert references(permission["SourceArn"]) == {"JobLogGroup"}
    assert resources["JobLogGroup"]["Properties"]["RetentionInDays"] == {"Ref": "JobLogRetentionDays"}


def test_the_log_router_writes_stdout_and_stderr_to_the_streams_the_app_reads() -> None:
    """FireLens options of the task definitions the app registers (chalicelib/adapters/ecs.py):
    the `cloudwatch` output names streams `<task id>/<source>`, `source` being what FireLens
    records carry (stdout, stderr), and sends only the line (`log`)."""
    from chalicelib.adapters.ecs import EcsRunner
    from chalicelib.config import Settings
    from chalicelib.domain.ecs import log_streams

    class Ecs:
        registered: dict[str, Any] = {}

        def describe_task_definition(self, **kwargs: Any) -> Any:
            from botocore.exceptions import ClientError

            raise ClientError({"Error": {"Code": "ClientException", "Message": "none"}}, "DescribeTaskDefinition")

        def register_task_definition(self, **kwargs: Any) -> Any:
            self.registered.update(kwargs)
            return {"taskDefinition": {"taskDefinitionArn": "arn:aws:ecs:us-east-1:1:task-definition/x:1"}}

    settings = Settings(region="eu-west-1", tasks_table="t", jobs_table="j", executions_table="e",
                        jobs_queue_url="q", log_group="/fastlane/prod/jobs", log_router_image="fluent-bit:stable")
    ecs = Ecs()
    EcsRunner(ecs, settings).task_definition("ubuntu")
    job, router = ecs.registered["containerDefinitions"]
    options = job["logConfiguration"]["options"]
    assert job["logConfiguration"]["logDriver"] == "awsfirelens"
    assert router["firelensConfiguration"]["type"] == "fluentbit"
    assert options["Name"] == "cloudwatch"
    assert (options["region"], options["log_group_name"]) == ("eu-west-1", "/fastlane/prod/jobs")
    assert options["log_key"] == "log"
    assert options["auto_create_group"] == "false"  # the template creates the group, with its retention
    arn = "arn:aws:ecs:eu-west-1:123456789012:task/fastlane-prod/0123456789abcdef0123456789abcdef"
    task_id = arn.rsplit("/", 1)[-1]
    named = tuple(options["log_stream_name"].replace("$(ecs_task_id)", task_id).replace("$(source)", source)
                  for source in ("stdout", "stderr"))
    assert named == log_streams(arn)


def test_the_task_roles_are_the_ones_the_task_definitions_name(template) -> None:
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["TASK_ROLE_ARN"] == {"Fn::GetAtt": ["TaskRole", "Arn"]}
    assert variables["TASK_EXECUTION_ROLE_ARN"] == {"Fn::GetAtt": ["TaskExecutionRole", "Arn"]}
    assert references(variables["LOG_ROUTER_IMAGE"]) == {"LogRouterImage", "LogRouterImageParameter"}
    assert variables["WEBSOCKET_URL"]["Fn::If"][0] == "HasWebSocketDomain"


# operators -----------------------------------------------------------------------------------


def _alarms(template: dict[str, Any]) -> list[dict[str, Any]]:
    return [r["Properties"] for r in template["Resources"].values() if r["Type"] == "AWS::CloudWatch::Alarm"]


def test_every_dead_letter_queue_has_an_alarm(template) -> None:
    dlqs = {name for name, r in template["Resources"].items()
            if r["Type"] == "AWS::SQS::Queue" and r["Properties"]["QueueName"]["Fn::Sub"].endswith("-dlq")}
    alarmed = {references(a["Dimensions"]).pop() for a in _alarms(template)
               if a["MetricName"] == "ApproximateNumberOfMessagesVisible"}
    assert dlqs and dlqs == alarmed


def test_every_function_has_an_errors_alarm(template, functions) -> None:
    alarmed = {references(a["Dimensions"]).pop() for a in _alarms(template) if a["MetricName"] == "Errors"}
    assert alarmed == set(functions)


def test_every_alarm_notifies_the_alarm_topic(template) -> None:
    for alarm in _alarms(template):
        assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}], alarm["AlarmName"]


def test_executions_stuck_past_their_timeout_raise_an_alarm_from_what_the_reconciler_logs(template) -> None:
    resources = template["Resources"]
    (stuck,) = [a for a in _alarms(template) if a["MetricName"] == "ReconcilerTimedOut"]
    assert stuck["Namespace"] == "Fastlane"
    metric_filter = resources["ReconcilerTimedOutMetric"]["Properties"]
    assert metric_filter["LogGroupName"] == {"Ref": "ReconcilerLogGroup"}
    (transformation,) = metric_filter["MetricTransformations"]
    assert transformation["MetricName"] == "ReconcilerTimedOut"
    # the pattern matches what the reconciler logs (chalicelib/handlers.py) with its counts (Reconciler.reconcile)
    message = re.search(r'\$\.message = "([^"]+)"', metric_filter["FilterPattern"]).group(1)
    assert f'"{message}"' in (ROOT / "chalicelib" / "handlers.py").read_text()
    engine = (ROOT / "chalicelib" / "services" / "engine" / "reconciler.py").read_text()
    for name in ("ReconcilerTimedOutMetric", "ReconcilerResentMetric", "ReconcilerFinalisedMetric"):
        key = re.search(r"\$\.(\w+) > 0", resources[name]["Properties"]["FilterPattern"]).group(1)
        assert f'"{key}"' in engine, key
    assert any(a["MetricName"] == "ApproximateAgeOfOldestMessage" for a in _alarms(template))


def _dashboard_metrics(template: dict[str, Any]) -> list[tuple[str, str]]:
    body, variables = template["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    assert set(variables) == {"Service"}
    widgets = json.loads(re.sub(r"\$\{[^}]+\}", "X", body))["widgets"]
    found: list[tuple[str, str]] = []
    for widget in widgets:
        previous: list[Any] = []
        for row in widget.get("properties", {}).get("metrics", []):
            if row[0] == "...":
                namespace, name = previous[0], previous[1]
            else:
                namespace = previous[0] if row[0] == "." else row[0]
                name = previous[1] if row[1] == "." else row[1]
            previous = [namespace, name]
            found.append((namespace, name))
    return found


def _metrics_in_code() -> set[str]:
    from chalicelib.domain.model import FINAL_STATUSES

    names: set[str] = set()
    for path in (ROOT / "chalicelib").rglob("*.py"):
        names |= set(re.findall(r'add_metric\(name="(\w+)"', path.read_text()))
    ending = (ROOT / "chalicelib" / "services" / "engine" / "ending.py").read_text()
    assert 'name=f"Executions{status.value.capitalize()}"' in ending
    return names | {f"Executions{status.value.capitalize()}" for status in FINAL_STATUSES}


def test_the_dashboard_shows_the_service_metrics_the_code_emits_and_the_queues(template) -> None:
    from chalicelib.domain.model import FINAL_STATUSES

    metrics = _dashboard_metrics(template)
    ours = {name for namespace, name in metrics if namespace == "Fastlane"}
    from_logs = {r["Properties"]["MetricTransformations"][0]["MetricName"]
                 for r in template["Resources"].values() if r["Type"] == "AWS::Logs::MetricFilter"}
    assert ours - _metrics_in_code() - from_logs == set(), "the dashboard shows metrics nothing emits"
    assert {"JobsEnqueued", "LaunchLatency", "QueueWait"} | {f"Executions{s.value.capitalize()}"
                                                              for s in FINAL_STATUSES} <= ours
    assert ("AWS/SQS", "ApproximateNumberOfMessagesVisible") in metrics
    assert ("AWS/Lambda", "Errors") in metrics
    body = template["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"][0]
    for queue in ("JobsQueue", "EventsQueue", "NotifyQueue", "JobsDeadLetterQueue"):
        assert f"${{{queue}.QueueName}}" in body


def test_metrics_of_each_stage_are_kept_apart(template) -> None:
    """The `service` dimension the app's metrics carry is the stage's (chalicelib/observability.py)."""
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["POWERTOOLS_SERVICE_NAME"] == {"Fn::Sub": "fastlane-${Stage}"}
    assert "POWERTOOLS_SERVICE_NAME" in (ROOT / "chalicelib" / "observability.py").read_text()
    assert template["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"][1] == {
        "Service": {"Fn::Sub": "fastlane-${Stage}"}}


def test_the_merge_template_only_completes_resources_chalice_generates(template) -> None:
    """A resource the merge template gives no Type must be one Chalice generated (else it would be
    a typo that CloudFormation rejects late)."""
    from tests.infra.conftest import load_merge_template

    merged = load_merge_template()["Resources"]
    completed = {name for name, resource in merged.items() if "Type" not in resource}
    assert completed <= {name for name, r in template["Resources"].items() if "aws-chalice" in json.dumps(r)
                         or r["Type"].startswith(("AWS::Serverless", "AWS::ApiGatewayV2"))}
    for name in completed:
        assert "Type" in template["Resources"][name], name
    assert as_list(template["Transform"]) == ["AWS::Serverless-2016-10-31"]


def test_a_key_in_progress_is_held_as_long_as_the_api_function_may_run(template) -> None:
    """A request with an Idempotency-Key holds it until it answers or its lease ends; a lease shorter
    than the function's timeout would let a repeat run while the first still works."""
    from chalicelib.domain.idempotency import LEASE_SECONDS

    assert template["Resources"]["APIHandler"]["Properties"]["Timeout"] <= LEASE_SECONDS
