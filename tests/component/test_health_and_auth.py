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
    # the service's own words (here the table's name) stay in the log
    assert "test-jobs" not in response.body.decode() and "DynamoDB" in response.json["errors"][0]["message"]


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


def test_a_username_without_a_password_refuses_every_request_saying_why(api, monkeypatch):
    from chalicelib import wiring

    monkeypatch.setenv("BASIC_AUTH_USERNAME", "ana")
    monkeypatch.delenv("BASIC_AUTH_PASSWORD", raising=False)
    wiring.reset()
    for headers in ({}, _basic("ana", ""), _basic("ana", "anything")):
        refused = api.get("/tasks", headers=headers)
        assert refused.status_code == 503
        assert "BASIC_AUTH_PASSWORD" in refused.json["error"] and "password is missing" in refused.json["error"]


def test_a_password_without_a_username_is_not_auth_off(api, monkeypatch):
    from chalicelib import wiring

    monkeypatch.setenv("BASIC_AUTH_PASSWORD", "s3cret")
    wiring.reset()
    assert api.get("/tasks").status_code == 503
    assert api.get("/tasks", headers=_basic("", "s3cret")).status_code == 503


def test_a_secret_without_a_password_refuses_every_request(api, monkeypatch):
    from chalicelib import wiring

    secrets = boto3.client("secretsmanager", region_name=REGION)
    secrets.create_secret(Name="half-auth", SecretString='{"username": "ops", "password": ""}')
    monkeypatch.setenv("BASIC_AUTH_SECRET_ID", "half-auth")
    wiring.reset()
    refused = api.get("/tasks", headers=_basic("ops", ""))
    assert refused.status_code == 503 and "half-auth" in refused.json["error"]


def test_a_stream_page_renews_its_token_for_the_same_job(api, monkeypatch):
    from chalicelib import wiring
    from chalicelib.api.auth import token_target

    monkeypatch.setenv("BASIC_AUTH_USERNAME", "ana")
    monkeypatch.setenv("BASIC_AUTH_PASSWORD", "s3cret")
    wiring.reset()
    created = api.post("/tasks/t", {"image": "ubuntu", "command": "true"}, headers=_basic("ana", "s3cret")).json
    assert api.post(f"/tasks/t/jobs/{created['jobId']}/stream/token").status_code == 401
    renewed = api.post(f"/tasks/t/jobs/{created['jobId']}/stream/token", headers=_basic("ana", "s3cret")).json
    key = wiring.get_basic_auth().signing_key()
    assert token_target(key, renewed["token"]) == ("t", created["jobId"], None)
    path = f"/tasks/t/jobs/{created['jobId']}/executions/{created['executionId']}/stream/token"
    renewed = api.post(path, headers=_basic("ana", "s3cret")).json
    assert token_target(key, renewed["token"]) == ("t", created["jobId"], created["executionId"])
    assert renewed["expiresAt"] > 0
