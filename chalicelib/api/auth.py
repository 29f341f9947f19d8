"""Who may call the API and watch live logs, in one place: HTTP Basic auth, the stream pages'
tokens (bound to what they were issued for, minutes long, renewed by the page for at most 12
hours), and the websocket's authorisation. docs/live-logs.md#authorisation, docs/deploy.md#access."""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable
from typing import Any

from chalice.app import Response

from ..config import Settings
from ..domain import contract
from ..domain.errors import FastlaneError

# A token opens the live logs of what it was issued for, for this long; the page renews its own.
TOKEN_SECONDS = 10 * 60
# Renewals carry the first token's issue time, and none reaches past this long after it: a token
# that leaks (a shared screen, a proxy's log of the websocket URL) is not renewed for ever.
MAX_TOKEN_LIFETIME = 12 * 3600
NOT_RENEWABLE = ("token is not a live-log token this service gave out for this page, or it has expired; "
                 "reload the page.")
LIFETIME_OVER = (f"token reached the {MAX_TOKEN_LIFETIME // 3600}-hour limit of a stream page's live-log "
                 "tokens and is not renewed again; reload the page for a new one.")
_TOKEN = re.compile(r"([0-9]{1,12})\.([A-Za-z0-9_-]{1,1400})\.([0-9a-f]{40})")

SecretReader = Callable[[str], dict[str, str]]


def _json_error(status: int, message: str, operation: str, headers: dict[str, str] | None = None) -> Response:
    return Response(body=json.dumps(contract.error(message, operation)), status_code=status,
                    headers={"Content-Type": "application/json", **(headers or {})})


class BasicAuth:
    """Optional HTTP Basic authentication, as the original offered. The credentials come from
    the environment or, with BASIC_AUTH_SECRET_ID, from a Secrets Manager secret holding
    {"username": ..., "password": ...}, read once per Lambda container. Half of a pair (a
    username without a password, or the reverse) is refused: every request is answered 503
    saying so, rather than letting an empty password in."""

    def __init__(self, settings: Settings, secret_reader: SecretReader | None = None) -> None:
        self._settings = settings
        self._secret_reader = secret_reader
        self._credentials: tuple[str, str] | None = None
        self._token_key: bytes | None = None

    @property
    def enabled(self) -> bool:
        return self._settings.basic_auth_enabled

    @property
    def tokens_required(self) -> bool:
        """Live-log websocket connections need Basic credentials or a stream page's token: with
        Basic auth on, or when API Gateway authorizes the REST API (STREAM_TOKEN_SECRET_ID)."""
        return self.enabled or bool(self._settings.stream_token_secret_id)

    def _expected(self) -> tuple[str, str]:
        if self._credentials is None:
            if self._settings.basic_auth_secret_id and self._secret_reader is not None:
                secret = self._secret_reader(self._settings.basic_auth_secret_id)
                self._credentials = (str(secret.get("username") or ""), str(secret.get("password") or ""))
            else:
                self._credentials = (self._settings.basic_auth_username or "", self._settings.basic_auth_password or "")
        return self._credentials

    def misconfiguration(self) -> str | None:
        """Why Basic auth cannot work as configured, or None."""
        if not self.enabled:
            return None
        username, password = self._expected()
        where = (f"the secret {self._settings.basic_auth_secret_id}" if self._settings.basic_auth_secret_id
                 else "BASIC_AUTH_USERNAME and BASIC_AUTH_PASSWORD")
        if not username or not password:
            missing = "password" if username else "username"
            return (f"Basic auth is misconfigured: {where} must give both a username and a password, and the "
                    f"{missing} is missing. Every request is refused until it is set.")
        return None

    def allows(self, authorization: str | None) -> bool:
        if not authorization or not authorization.lower().startswith("basic ") or len(authorization) > 4096:
            return False
        try:
            decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        username, _, password = decoded.partition(":")
        expected_user, expected_password = self._expected()
        user_ok = hmac.compare_digest(username.encode(), expected_user.encode())
        password_ok = hmac.compare_digest(password.encode(), expected_password.encode())
        return user_ok and password_ok and bool(expected_user) and bool(expected_password)

    def signing_key(self) -> bytes:
        """A key only this deployment knows, from the credentials (signs live-log tokens), or from
        the secret STREAM_TOKEN_SECRET_ID names, read once per Lambda container."""
        if self._settings.stream_token_secret_id and self._secret_reader is not None:
            if self._token_key is None:
                secret = self._secret_reader(self._settings.stream_token_secret_id)
                self._token_key = hashlib.sha256(f"fastlane-live-logs\0{secret['key']}".encode()).digest()
            return self._token_key
        username, password = self._expected()
        return hashlib.sha256(f"fastlane-live-logs\0{username}\0{password}".encode()).digest()

    def challenge(self) -> Response:
        return _json_error(401, "Authentication required: send HTTP Basic credentials.", "authenticate",
                           headers={"WWW-Authenticate": 'Basic realm="fastlane", charset="UTF-8"'})

    def refuse_misconfigured(self, problem: str) -> Response:
        return _json_error(503, problem, "authenticate")


def guard(auth: BasicAuth, authorization: str | None) -> Response | None:
    """The answer that refuses a request, or None when it may go on."""
    if not auth.enabled:
        return None
    problem = auth.misconfiguration()
    if problem is not None:
        return auth.refuse_misconfigured(problem)
    return None if auth.allows(authorization) else auth.challenge()


# stream page tokens ---------------------------------------------------------------------------
#
# `<expiry>.<target>.<mac>`: the epoch second it expires, base64url of
# "task\njob\nexecution\nissued" (execution empty for a job's page; issued: the epoch second the
# page's first token was issued, which renewals keep), and an HMAC of both under a key only the
# deployment knows. The target travels in the token so that a connection that names no
# subscription yet can be checked too; what it may subscribe to is still only that target.

Target = tuple[str, str, str | None]  # task, job, execution (None: any of the job's)


class TokenRefused(FastlaneError):
    """A stream page's token that is not renewed; the message says why, for the page's reader."""

    status = 403


def _mac(key: bytes, expiry: str, target: str) -> str:
    return hmac.new(key, f"{expiry}.{target}".encode("ascii"), hashlib.sha256).hexdigest()[:40]


def issue_token(key: bytes, task_id: str, job_id: str, execution_id: str | None = None,
                now: float | None = None, issued_at: float | None = None) -> tuple[str, int]:
    """A token that opens the live logs of one job (any of its executions) or, with an
    execution id, of that execution only; and when it expires (epoch seconds). Proof that the
    page was served to an authorized client (browsers cannot send Authorization on a websocket).
    `issued_at`: when the page's first token was issued (a renewal's), else now."""
    at = now if now is not None else time.time()
    expiry = str(int(at + TOKEN_SECONDS))
    fields = (task_id, job_id, execution_id or "", str(int(at if issued_at is None else issued_at)))
    target = base64.urlsafe_b64encode("\n".join(fields).encode()).decode().rstrip("=")
    return f"{expiry}.{target}.{_mac(key, expiry, target)}", int(expiry)


def _read(key: bytes, token: Any, now: float | None) -> tuple[Target, int] | None:
    """What a genuine, unexpired token opens, and when its page's first token was issued."""
    match = _TOKEN.fullmatch(token) if isinstance(token, str) else None
    if match is None:
        return None
    expiry, target, mac = match.groups()
    if int(expiry) < (now if now is not None else time.time()) or not hmac.compare_digest(mac, _mac(key, expiry, target)):
        return None
    try:
        fields = base64.urlsafe_b64decode(target + "=" * (-len(target) % 4)).decode().split("\n")
    except (binascii.Error, UnicodeDecodeError):
        return None
    if len(fields) == 3:  # given out before tokens carried their issue time: as if issued fresh
        fields.append(str(int(expiry) - TOKEN_SECONDS))
    if len(fields) != 4 or not fields[3].isascii() or not fields[3].isdigit():
        return None
    task_id, job_id, execution_id, issued = fields
    return (task_id, job_id, execution_id or None), int(issued)


def token_target(key: bytes, token: Any, now: float | None = None) -> Target | None:
    """The task, job and execution (None: any of the job's) a genuine, unexpired token opens."""
    read = _read(key, token, now)
    return None if read is None else read[0]


def token_valid(key: bytes, token: Any, task_id: Any, job_id: Any, execution_id: Any = None,
                now: float | None = None) -> bool:
    """Whether a token opens the live logs of that task, job and (optional) execution now. A
    job's token opens any execution of the job; an execution's token that execution only."""
    target = token_target(key, token, now)
    if target is None:
        return False
    granted_task, granted_job, granted_execution = target
    if (task_id, job_id) != (granted_task, granted_job):
        return False
    return granted_execution is None or execution_id == granted_execution


def renew_token(key: bytes, token: Any, now: float | None = None, target: Target | None = None) -> tuple[str, int]:
    """A fresh token for what `token` opens (which must be `target`, when given), and when it
    expires. It keeps the issue time of the page's first token, and none is given that would
    outlive MAX_TOKEN_LIFETIME from then. Raises TokenRefused."""
    at = now if now is not None else time.time()
    read = _read(key, token, at)
    if read is None or (target is not None and read[0] != target):
        raise TokenRefused(NOT_RENEWABLE, field="token")
    granted, issued = read
    if at + TOKEN_SECONDS > issued + MAX_TOKEN_LIFETIME:
        raise TokenRefused(LIFETIME_OVER, field="token")
    return issue_token(key, *granted, now=at, issued_at=issued)


def renewal_frame(key: bytes, token: Any, now: float | None = None) -> str:
    """The websocket frame that answers a page's renewal: a fresh token for what its current one
    opens, or an error frame saying why there is none."""
    from ..domain.live import error_frame, token_frame

    try:
        fresh, expires = renew_token(key, token, now)
    except TokenRefused as refused:
        return error_frame(refused.message, refused.field)
    return token_frame(fresh, expires)


# the websocket --------------------------------------------------------------------------------


def _lower(headers: Any) -> dict[str, str]:
    return {str(k).lower(): v for k, v in (headers or {}).items()} if isinstance(headers, dict) else {}


def websocket_connect_allowed(auth: BasicAuth, event: dict[str, Any]) -> bool:
    """$connect: with Basic auth on, a websocket client shows credentials (a CLI) or a stream
    page's token for what the query string subscribes to. When API Gateway authorizes the REST
    API (IAM or API keys), only the token: it proves an authorized request for the page."""
    if not auth.tokens_required:
        return True
    if auth.enabled and auth.misconfiguration() is None and auth.allows(_lower(event.get("headers")).get("authorization")):
        return True
    query = event.get("queryStringParameters") or {}
    if not query.get("taskId") and not query.get("jobId"):
        # Nothing subscribed yet: any genuine token; its subscribe message is checked again.
        return token_target(auth.signing_key(), query.get("token")) is not None
    return token_valid(auth.signing_key(), query.get("token"), query.get("taskId"), query.get("jobId"),
                       query.get("executionId") or None)


def websocket_subscribe_allowed(auth: BasicAuth, message: dict[str, Any]) -> bool:
    """A subscribe message: API Gateway passes no headers nor the connection's query string
    with messages, so the message itself carries a token for what it subscribes to, or Basic
    credentials under `authorization`."""
    if not auth.tokens_required:
        return True
    authorization = message.get("authorization")
    if auth.enabled and auth.misconfiguration() is None and isinstance(authorization, str) and auth.allows(authorization):
        return True
    return token_valid(auth.signing_key(), message.get("token"), message.get("taskId"), message.get("jobId"),
                       message.get("executionId") or None)
