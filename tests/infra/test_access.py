"""Access in AWS, as far as it can be tried here: the stream page's token when API Gateway
authorizes the REST API (STREAM_TOKEN_SECRET_ID), and pre-signed URLs for browsers."""
from __future__ import annotations

import json
import re
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from botocore.credentials import Credentials

from tests.conftest import REGION


@pytest.fixture
def token_secret(aws, monkeypatch):
    """As deployed: API Gateway authorizes (no Basic auth); the token key is a secret."""
    from chalicelib import wiring

    arn = boto3.client("secretsmanager", region_name=REGION).create_secret(
        Name="fastlane-test-stream-token", SecretString=json.dumps({"key": "x" * 64}))["ARN"]
    monkeypatch.setenv("STREAM_TOKEN_SECRET_ID", arn)
    wiring.reset()
    return arn


def _connect(query):
    from chalicelib import wiring
    from chalicelib.api.auth import websocket_connect_allowed

    event = {"requestContext": {"routeKey": "$connect", "eventType": "CONNECT", "connectionId": "c1",
                                "apiId": "abc", "stage": "api"}, "headers": {}, "queryStringParameters": query}
    return websocket_connect_allowed(wiring.get_basic_auth(), event)


def test_with_a_token_secret_the_stream_page_carries_a_token_that_opens_the_websocket(api, token_secret) -> None:
    job = api.post("/tasks/t", {"image": "ubuntu", "command": "true"}).json
    page = api.get(f"/tasks/t/jobs/{job['jobId']}/stream").body
    page = page.decode() if isinstance(page, bytes) else page
    token = json.loads(re.search(r'id="config">(.*?)</script>', page).group(1))["token"]
    assert token
    assert _connect({"token": token}) is True
    assert _connect({"token": token[:-1] + ("0" if token[-1] != "0" else "1")}) is False
    assert _connect(None) is False


def test_without_any_auth_the_websocket_stays_open_as_locally(aws) -> None:
    from chalicelib import wiring

    wiring.reset()
    assert _connect(None) is True


def test_a_presigned_url_is_signed_for_execute_api_in_the_api_region() -> None:
    from infra.presign import presign, region_of

    url = "https://abc123.execute-api.eu-west-3.amazonaws.com/api/tasks/t/jobs/j/stream"
    assert region_of(url) == "eu-west-3"
    with pytest.raises(ValueError):
        region_of("https://api.example.com/tasks")
    signed = presign(url, "eu-west-3", Credentials("AKIDEXAMPLE", "secret"), expires=600)
    query = parse_qs(urlsplit(signed).query)
    assert urlsplit(signed).path == "/api/tasks/t/jobs/j/stream"
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert query["X-Amz-Credential"][0].endswith("/eu-west-3/execute-api/aws4_request")
    assert query["X-Amz-Expires"] == ["600"] and query["X-Amz-Signature"]
