"""Healthcheck against real dependencies, and optional Basic auth."""
from __future__ import annotations

import base64

import boto3

from tests.conftest import REGION


def test_healthcheck_reports_each_dependency(api):
    for path in ("/healthcheck", "/"):
        response = api.get(path)
        assert response.status_code == 200
        assert response.json == {"healthy": True, "checks": {"dynamodb": "ok", "sqs": "ok"}, "errors": []}


def test_healthcheck_is_503_naming_the_failing_source(api, aws):
    boto3.client("sqs", region_name=REGION).delete_queue(QueueUrl=aws["JOBS_QUEUE_URL"])
    response = api.get("/healthcheck")
    assert response.status_code == 503
    assert response.json["healthy"] is False
    assert response.json["checks"] == {"dynamodb": "ok", "sqs": "failed"}
    assert [e["source"] for e in response.json["errors"]] == ["sqs"]


def test_healthcheck_names_dynamodb_when_a_table_is_gone(api):
    boto3.client("dynamodb", region_name=REGION).delete_table(TableName="test-jobs")
    response = api.get("/healthcheck")
    assert response.status_code == 503 and response.json["errors"][0]["source"] == "dynamodb"


def _basic(user: str, password: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_basic_auth_when_configured(api, monkeypatch):
    from chalicelib import wiring

    monkeypatch.setenv("BASIC_AUTH_USERNAME", "ana")
    monkeypatch.setenv("BASIC_AUTH_PASSWORD", "s3cret")
    wiring.reset()
    missing = api.get("/tasks")
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"].startswith("Basic")
    assert missing.json["error"].startswith("Authentication required")
    assert api.get("/tasks", headers=_basic("ana", "wrong")).status_code == 401
    assert api.get("/tasks", headers={"authorization": "Basic !!!"}).status_code == 401
    assert api.get("/tasks", headers=_basic("ana", "s3cret")).status_code == 200


def test_basic_auth_credentials_from_a_secret(api, monkeypatch):
    from chalicelib import wiring

    secrets = boto3.client("secretsmanager", region_name=REGION)
    secrets.create_secret(Name="fastlane-auth", SecretString='{"username": "ops", "password": "pw"}')
    monkeypatch.setenv("BASIC_AUTH_SECRET_ID", "fastlane-auth")
    wiring.reset()
    assert api.get("/tasks", headers=_basic("ops", "pw")).status_code == 200
    assert api.get("/tasks", headers=_basic("ops", "nope")).status_code == 401


def test_auth_is_off_by_default(api):
    assert api.get("/tasks").status_code == 200
