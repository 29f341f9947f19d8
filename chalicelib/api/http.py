"""Request parsing and error mapping shared by every route: bodies, ids, pages and page
tokens are checked here before any service sees them."""
from __future__ import annotations

import base64
import binascii
import functools
import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from chalice.app import Request, Response

from ..config import Settings
from ..domain import contract as shapes
from ..domain.errors import FastlaneError, NotFound, TooLarge, ValidationError
from ..domain.json_text import json_depth, parse_json_object
from ..domain.payload import validate_task_id, validate_uuid
from ..observability import logger

JSON = {"Content-Type": "application/json"}


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(body=json.dumps(body, allow_nan=False), status_code=status, headers={**JSON, **(headers or {})})


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
                    logger.exception("dependency failed", extra={"operation": name,
                                                                 "detail": getattr(error, "detail", None)})
                return error_response(error.status, error.message, name, error.field, error.headers or None)
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
    context: dict[str, Any] = request.context or {}
    identity = context.get("identity") or {}
    source = identity.get("sourceIp")
    if isinstance(source, str) and source:
        return source
    forwarded = request.headers.get("x-forwarded-for")
    return forwarded.split(",")[0].strip()[:64] if isinstance(forwarded, str) and forwarded else None


def query(request: Request, name: str) -> str | None:
    params = request.query_params
    value = params.get(name) if params is not None else None
    return value if isinstance(value, str) else None


def json_body(request: Request, settings: Settings) -> dict[str, Any]:
    raw = request.raw_body or b""
    if len(raw) > settings.max_body_bytes:
        raise TooLarge(f"The request body is {len(raw)} bytes; at most {settings.max_body_bytes} are accepted.",
                       field="body")
    return parse_json_object(raw)


MAX_PAGE_DIGITS = 9


def page_number(request: Request) -> int:
    """`page`: ASCII digits, 1 or more (int() would also take ' 2', '+2', '1_0' and other scripts' digits)."""
    raw = query(request, "page")
    if raw is None or raw == "":
        return 1
    if not re.fullmatch(f"[0-9]{{1,{MAX_PAGE_DIGITS}}}", raw) or int(raw) < 1:
        raise ValidationError(f"page must be an integer from 1 to {10 ** MAX_PAGE_DIGITS - 1}, got '{raw[:32]}'.",
                              field="page")
    return int(raw)


_PAGE_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,2048}")
NOT_A_TOKEN = "token is not a page token this service gave out."


def page_token(request: Request) -> str | None:
    """`token` of an output page: the reader decodes it; here it is only made safe to decode
    (bounded, base64url, JSON of the shape the reader writes, never deeply nested)."""
    raw = query(request, "token")
    if raw is None or raw == "":
        return None
    if not _PAGE_TOKEN.fullmatch(raw):
        raise ValidationError(NOT_A_TOKEN, field="token")
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode("utf-8")
    except (binascii.Error, ValueError):
        raise ValidationError(NOT_A_TOKEN, field="token") from None
    if json_depth(text) > 1:
        raise ValidationError(NOT_A_TOKEN, field="token")
    return raw


def task_id_of(task_id: str) -> str:
    return validate_task_id(task_id)


def job_id_of(job_id: str) -> str:
    """A job id that is not a UUID names no job: 404, as any unknown job."""
    try:
        return validate_uuid(job_id, "jobId")
    except ValidationError:
        raise NotFound(f"Job '{job_id[:64]}' was not found.", field="jobId") from None


def execution_id_of(execution_id: str) -> str:
    try:
        return validate_uuid(execution_id, "executionId")
    except ValidationError:
        raise NotFound(f"Execution '{execution_id[:64]}' was not found.", field="executionId") from None


# pages ---------------------------------------------------------------------------------------------

def script_json(value: object) -> str:
    """JSON that cannot end the <script> element it sits in, nor open a comment or CDATA."""
    text = json.dumps(value)
    for raw, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                         ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(raw, escaped)
    return text


def websocket_origin(url: str) -> str:
    """The origin a page may open a websocket to (its Content-Security-Policy connect-src), or "" for another scheme."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme in ("ws", "wss") and parts.netloc else ""
