"""Request parsing and error mapping shared by every route."""
from __future__ import annotations

import base64
import binascii
import functools
import hmac
import json
from collections.abc import Callable
from typing import Any

from chalice.app import Request, Response

from ..config import Settings
from ..domain.errors import FastlaneError, TooLarge
from ..domain.payload import parse_json_object
from ..observability import logger
from . import shapes

JSON = {"Content-Type": "application/json"}


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(body=json.dumps(body), status_code=status, headers={**JSON, **(headers or {})})


def error_response(
    status: int, message: str, operation: str, field: str | None = None, headers: dict[str, str] | None = None
) -> Response:
    return json_response(shapes.error(message, operation, field=field), status, headers)


def operation(name: str) -> Callable[[Callable[..., Response]], Callable[..., Response]]:
    """Name a route for its errors, and turn every failure into a JSON error of the contract:
    the client's faults are 4xx, AWS's are 503, ours are 500 and logged."""

    def decorate(view: Callable[..., Response]) -> Callable[..., Response]:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Response:
            try:
                return view(*args, **kwargs)
            except FastlaneError as error:
                if error.status >= 500:
                    logger.exception("dependency failed", extra={"operation": name})
                return error_response(error.status, error.message, name, error.field)
            except Exception:  # noqa: BLE001 - the contract says every error is JSON
                logger.exception("unexpected error", extra={"operation": name})
                return error_response(500, "Internal error; it was logged.", name)

        return wrapper

    return decorate


def base_url(request: Request, settings: Settings) -> str:
    if settings.public_base_url:
        return settings.public_base_url.rstrip("/")
    headers = request.headers
    host = headers.get("host") or "localhost"
    proto = headers.get("x-forwarded-proto") or ("https" if host.endswith("amazonaws.com") else "http")
    stage = (request.context or {}).get("stage")
    # The default execute-api host serves the API under its stage; a custom domain does not.
    prefix = f"/{stage}" if stage and host.endswith("amazonaws.com") else ""
    return f"{proto}://{host}{prefix}"


def client_ip(request: Request) -> str | None:
    """The caller's address as API Gateway saw it (the local runtime sets it the same way)."""
    identity = (request.context or {}).get("identity") or {}
    source = identity.get("sourceIp")
    if source:
        return source
    forwarded = request.headers.get("x-forwarded-for")
    return forwarded.split(",")[0].strip() if forwarded else None


def query(request: Request, name: str) -> str | None:
    return (request.query_params or {}).get(name)


def json_body(request: Request, settings: Settings) -> dict[str, Any]:
    raw = request.raw_body or b""
    if len(raw) > settings.max_body_bytes:
        raise TooLarge(f"The request body is {len(raw)} bytes; at most {settings.max_body_bytes} are accepted.",
                       field="body")
    return parse_json_object(raw)


class BasicAuth:
    """Optional HTTP Basic authentication, as the original offered. The credentials come from
    the environment or, with BASIC_AUTH_SECRET_ID, from a Secrets Manager secret holding
    {"username": ..., "password": ...}, read once per Lambda container."""

    def __init__(self, settings: Settings, secret_reader: Callable[[str], dict[str, str]] | None = None) -> None:
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
                self._credentials = (secret["username"], secret["password"])
            else:
                self._credentials = (self._settings.basic_auth_username or "", self._settings.basic_auth_password or "")
        return self._credentials

    def allows(self, authorization: str | None) -> bool:
        if not authorization or not authorization.lower().startswith("basic "):
            return False
        try:
            decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        username, _, password = decoded.partition(":")
        expected_user, expected_password = self._expected()
        user_ok = hmac.compare_digest(username.encode(), expected_user.encode())
        password_ok = hmac.compare_digest(password.encode(), expected_password.encode())
        return user_ok and password_ok and bool(expected_user)

    def signing_key(self) -> bytes:
        """A key only this deployment knows, from the credentials (signs live-log tokens), or from
        the secret STREAM_TOKEN_SECRET_ID names, read once per Lambda container."""
        import hashlib

        if self._settings.stream_token_secret_id and self._secret_reader is not None:
            if self._token_key is None:
                secret = self._secret_reader(self._settings.stream_token_secret_id)
                self._token_key = hashlib.sha256(f"fastlane-live-logs\0{secret['key']}".encode()).digest()
            return self._token_key
        username, password = self._expected()
        return hashlib.sha256(f"fastlane-live-logs\0{username}\0{password}".encode()).digest()

    def challenge(self) -> Response:
        return error_response(
            401, "Authentication required: send HTTP Basic credentials.", "authenticate",
            headers={"WWW-Authenticate": 'Basic realm="fastlane", charset="UTF-8"'},
        )
