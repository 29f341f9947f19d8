"""Shared fixtures: each component test gets its own in-process moto account."""
from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from infra.local.botocore_models import share_botocore_models

REGION = "us-east-1"


share_botocore_models()  # each test's fresh emulated account then costs a tenth of what it did


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """A fresh emulated AWS account with the service's tables and queues; yields the
    environment that points the app at them."""
    for name in ("AWS_ENDPOINT_URL", "BASIC_AUTH_USERNAME", "BASIC_AUTH_PASSWORD", "BASIC_AUTH_SECRET_ID",
                 "PUBLIC_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "1")
    from chalicelib import wiring
    from infra.local.moto_server import serialize_dynamodb
    from infra.local.provision import local_environment, provision

    serialize_dynamodb()  # some component tests write from several threads at once
    with mock_aws():
        for key, value in local_environment("test").items():
            monkeypatch.setenv(key, value)
        wiring.reset()
        env = provision(boto3.client("sqs", region_name=REGION), "test")
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        wiring.reset()
        yield env
    wiring.reset()


class Api:
    """A chalice test client that speaks JSON, the way a client of the service does."""

    def __init__(self, client: Any) -> None:
        self._http = client.http

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
        if body is not None and not isinstance(body, (str, bytes)):
            body = json.dumps(body)
        all_headers = {"host": "fastlane.test", "content-type": "application/json", **(headers or {})}
        response = getattr(self._http, method.lower())(path, body=body, headers=all_headers)
        is_json = response.headers.get("Content-Type", "").startswith("application/json")
        response.json = json.loads(response.body) if response.body and is_json else None
        return response

    def get(self, path: str, **kw: Any) -> Any:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> Any:
        return self.request("POST", path, body, **kw)

    def put(self, path: str, body: Any = None, **kw: Any) -> Any:
        return self.request("PUT", path, body, **kw)


@pytest.fixture
def api(aws: dict[str, str], tmp_path: Any) -> Iterator[Api]:
    from chalice.test import Client

    from app import app

    # An empty project folder: the environment comes from the fixture, not .chalice/config.json.
    with Client(app, project_dir=str(tmp_path)) as client:
        yield Api(client)


@pytest.fixture
def sqs(aws: dict[str, str]) -> Any:
    return boto3.client("sqs", region_name=REGION)


def queued_messages(sqs: Any, url: str) -> list[dict[str, Any]]:
    response = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
    return [json.loads(m["Body"]) for m in response.get("Messages", [])]


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The fault harness's parts (tests/faults) add up to one line: schedules of each backend,
    faults, violations."""
    schedules: dict[str, int] = {}
    faults = violations = 0
    for reports in terminalreporter.stats.values():
        for report in reports:
            if getattr(report, "when", None) != "call":
                continue
            for name, value in getattr(report, "user_properties", ()):
                if name == "faults":
                    backend, count, injected, broken = value
                    schedules[backend] = schedules.get(backend, 0) + count
                    faults += injected
                    violations += broken
    if schedules:
        ran = ", ".join(f"{count} schedules ({backend})" for backend, count in
                        sorted(schedules.items(), key=lambda item: (item[0] != "local", item[0])))
        terminalreporter.write_line(f"faults: {ran}, {faults} faults injected, {violations} invariant violations")
