"""Auth rules: Basic auth refuses half a pair, stream tokens open only what they were issued for
and only for minutes, and the websocket checks both on connect and on subscribe."""
from __future__ import annotations

import base64
import json

import pytest

from chalicelib.api.auth import (
    LIFETIME_OVER,
    MAX_TOKEN_LIFETIME,
    NOT_RENEWABLE,
    TOKEN_SECONDS,
    BasicAuth,
    TokenRefused,
    guard,
    issue_token,
    renew_token,
    renewal_frame,
    token_target,
    token_valid,
    websocket_connect_allowed,
    websocket_subscribe_allowed,
)
from chalicelib.config import Settings

KEY = b"k" * 32
JOB, OTHER_JOB = "5a023792-1445-44e9-8a8b-cfe5ad05d1c6", "6b023792-1445-44e9-8a8b-cfe5ad05d1c6"
EXECUTION, OTHER_EXECUTION = "7c023792-1445-44e9-8a8b-cfe5ad05d1c6", "8d023792-1445-44e9-8a8b-cfe5ad05d1c6"


def settings(**auth: str) -> Settings:
    return Settings(region="us-east-1", tasks_table="t", jobs_table="j", executions_table="e", jobs_queue_url="q",
                    **auth)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize("pair,missing", [({"basic_auth_username": "ana"}, "password"),
                                          ({"basic_auth_password": "s3cret"}, "username")])
def test_half_a_basic_auth_pair_refuses_every_request_saying_why(pair, missing):
    auth = BasicAuth(settings(**pair))
    refused = guard(auth, basic("ana", ""))
    assert refused is not None and refused.status_code == 503
    assert f"the {missing} is missing" in json.loads(refused.body)["error"]
    assert not auth.allows(basic("ana", "")) and not auth.allows(basic("", "s3cret"))


def test_a_secret_without_a_password_refuses_too():
    auth = BasicAuth(settings(basic_auth_secret_id="fastlane-auth"), lambda _: {"username": "ops"})
    refused = guard(auth, basic("ops", ""))
    assert refused is not None and refused.status_code == 503 and "fastlane-auth" in json.loads(refused.body)["error"]


def test_a_whole_pair_lets_its_credentials_in_only():
    auth = BasicAuth(settings(basic_auth_username="ana", basic_auth_password="s3cret"))
    assert guard(auth, basic("ana", "s3cret")) is None
    assert guard(auth, basic("ana", "wrong")).status_code == 401
    assert guard(BasicAuth(settings()), None) is None  # off by default


def test_a_job_token_opens_that_job_and_any_of_its_executions_only():
    token, expires = issue_token(KEY, "t", JOB, now=1000.0)
    assert expires == 1000 + TOKEN_SECONDS
    assert token_valid(KEY, token, "t", JOB, now=1001.0)
    assert token_valid(KEY, token, "t", JOB, EXECUTION, now=1001.0)
    assert not token_valid(KEY, token, "t", OTHER_JOB, now=1001.0)
    assert not token_valid(KEY, token, "other", JOB, now=1001.0)


def test_an_execution_token_opens_that_execution_only():
    token, _ = issue_token(KEY, "t", JOB, EXECUTION, now=1000.0)
    assert token_valid(KEY, token, "t", JOB, EXECUTION, now=1001.0)
    assert not token_valid(KEY, token, "t", JOB, OTHER_EXECUTION, now=1001.0)
    assert not token_valid(KEY, token, "t", JOB, None, now=1001.0)  # not the job's other executions


def test_tokens_expire_within_minutes_and_cannot_be_forged():
    assert TOKEN_SECONDS <= 15 * 60
    token, _ = issue_token(KEY, "t", JOB, now=1000.0)
    assert not token_valid(KEY, token, "t", JOB, now=1000.0 + TOKEN_SECONDS + 1)
    assert not token_valid(b"x" * 32, token, "t", JOB, now=1001.0)
    expiry, target, mac = token.split(".")
    assert not token_valid(KEY, f"99999999999.{target}.{mac}", "t", JOB, now=1001.0)
    other_target = issue_token(KEY, "t", OTHER_JOB, now=1000.0)[0].split(".")[1]
    assert not token_valid(KEY, f"{expiry}.{other_target}.{mac}", "t", OTHER_JOB, now=1001.0)
    for junk in (None, "", "junk", 42, "1.2.3", token + "0"):
        assert not token_valid(KEY, junk, "t", JOB, now=1001.0)


def test_a_page_renews_its_token_for_the_same_target_only_while_it_is_valid():
    token, _ = issue_token(KEY, "t", JOB, EXECUTION)
    frame = json.loads(renewal_frame(KEY, token))
    assert frame["type"] == "token" and token_target(KEY, frame["token"]) == ("t", JOB, EXECUTION)
    expired, _ = issue_token(KEY, "t", JOB, now=1000.0)
    for refused in (expired, "junk", None):
        assert json.loads(renewal_frame(KEY, refused)) == {"type": "error", "error": NOT_RENEWABLE, "field": "token"}


def renewed_until_refused(token: str, expires: int) -> tuple[str, int, float]:
    """Renew as the stream page does, two minutes before each expiry, until refused; the last
    token, its expiry and when the refusal came."""
    target = token_target(KEY, token, now=expires - 1)
    for _ in range(MAX_TOKEN_LIFETIME // 60):  # bounded: never renewed for ever
        now = expires - 120
        try:
            token, expires = renew_token(KEY, token, now=now)
        except TokenRefused as refused:
            assert (refused.status, refused.message, refused.field) == (403, LIFETIME_OVER, "token")
            return token, expires, now
        assert token_target(KEY, token, now=now) == target
    raise AssertionError("renewed for ever")


def test_renewals_keep_the_first_issue_time_and_stop_at_the_lifetime_limit():
    """A page that renews its token every few minutes, as the stream page does, holds tokens for
    at most MAX_TOKEN_LIFETIME after its first: then it is told, and must be served again."""
    first = 1_800_000_000.0
    token, expires = issue_token(KEY, "t", JOB, EXECUTION, now=first)
    token, expires, now = renewed_until_refused(token, expires)
    assert expires <= first + MAX_TOKEN_LIFETIME < now + TOKEN_SECONDS
    assert token_valid(KEY, token, "t", JOB, EXECUTION, now=now)  # the last one lives out its minutes
    frame = json.loads(renewal_frame(KEY, token, now=now))
    assert frame == {"type": "error", "error": LIFETIME_OVER, "field": "token"}
    assert "12-hour" in LIFETIME_OVER and "reload the page" in LIFETIME_OVER


def test_a_renewal_is_for_the_target_the_token_opens_only():
    token, _ = issue_token(KEY, "t", JOB, now=1000.0)
    assert token_target(KEY, renew_token(KEY, token, now=1001.0, target=("t", JOB, None))[0], now=1001.0) == \
        ("t", JOB, None)
    with pytest.raises(TokenRefused, match="not a live-log token"):
        renew_token(KEY, token, now=1001.0, target=("t", JOB, EXECUTION))


def test_a_token_given_out_before_tokens_carried_their_issue_time_counts_from_then():
    import base64
    import hashlib
    import hmac

    expiry = "1000600"  # issued at 1000000, in the earlier form: no issue time in the target
    target = base64.urlsafe_b64encode(f"t\n{JOB}\n".encode()).decode().rstrip("=")
    mac = hmac.new(KEY, f"{expiry}.{target}".encode(), hashlib.sha256).hexdigest()[:40]
    token = f"{expiry}.{target}.{mac}"
    assert token_valid(KEY, token, "t", JOB, now=1000001.0)
    _, _, refused_at = renewed_until_refused(token, int(expiry))
    assert 1000000 + MAX_TOKEN_LIFETIME - TOKEN_SECONDS < refused_at <= 1000000 + MAX_TOKEN_LIFETIME


def connect_event(query: dict | None = None, headers: dict | None = None) -> dict:
    return {"queryStringParameters": query, "headers": headers or {}}


def test_a_websocket_needs_credentials_or_a_token_for_what_it_subscribes_to():
    auth = BasicAuth(settings(basic_auth_username="ana", basic_auth_password="s3cret"))
    key = auth.signing_key()
    token, _ = issue_token(key, "t", JOB)
    assert websocket_connect_allowed(auth, connect_event(headers={"Authorization": basic("ana", "s3cret")}))
    assert websocket_connect_allowed(auth, connect_event({"taskId": "t", "jobId": JOB, "token": token}))
    assert websocket_connect_allowed(auth, connect_event({"token": token}))  # subscribes by message later
    assert not websocket_connect_allowed(auth, connect_event({"taskId": "t", "jobId": OTHER_JOB, "token": token}))
    assert not websocket_connect_allowed(auth, connect_event({"taskId": "t", "jobId": JOB}))
    assert websocket_subscribe_allowed(auth, {"action": "subscribe", "taskId": "t", "jobId": JOB, "token": token})
    assert not websocket_subscribe_allowed(auth, {"action": "subscribe", "taskId": "t", "jobId": OTHER_JOB,
                                                  "token": token})
    assert websocket_subscribe_allowed(auth, {"action": "subscribe", "taskId": "t", "jobId": OTHER_JOB,
                                              "authorization": basic("ana", "s3cret")})
    assert websocket_connect_allowed(BasicAuth(settings()), connect_event())  # auth off
