"""The Idempotency-Key header of POST /tasks/{taskId}, PUT .../jobs/{jobId} and POST .../retry:
the route runs once per key and body, and a repeat gets the first answer, marked replayed
(docs/decisions.md#idempotency-keys). Without the header a route runs as it always did."""
from __future__ import annotations

import json
from collections.abc import Callable

from chalice.app import Request, Response

from .. import wiring
from ..config import get_settings
from ..domain.errors import DependencyDown, FastlaneError
from ..domain.idempotency import (
    HEADER,
    KEEP_SECONDS,
    NO_BODY,
    REPLAYED_HEADER,
    Answer,
    KeyInProgress,
    KeyReused,
    body_fingerprint,
    scoped_key,
    validate_key,
)
from ..observability import logger
from ..ports import KeyState
from .http import json_body

# Path parameters that hold UUIDs: one job has one scope, however its id's case was written.
_UUID_PARAMETERS = ("job_id", "execution_id")


def once(request: Request, route: Callable[[], Response], *, reads_body: bool = True) -> Response:
    """Run `route` under the request's Idempotency-Key, if it has one. `reads_body` False: the
    route ignores its body, so any body is the same one (retry)."""
    raw = request.headers.get(HEADER.lower())
    if raw is None:
        return route()
    key = validate_key(raw)
    fingerprint = _fingerprint(request) if reads_body else NO_BODY
    if fingerprint is None:
        # Not a JSON object, or too large: the route refuses it before it writes anything, and
        # an error answer is never kept, so there is nothing to hold the key for.
        return route()
    keys = wiring.backend().idempotency_keys
    if keys is None:
        raise DependencyDown(f"This backend keeps no idempotency keys; send the request without {HEADER}.",
                             field=HEADER)
    ran: list[Response] = []

    def action() -> Answer:
        response = route()
        ran.append(response)
        return _answer(response)

    scope = scoped_key(request.method, _path(request), key)
    try:
        outcome = keys.run_once(scope, fingerprint, action)
    except DependencyDown:
        if not ran:
            raise
        # The route did its work and answered; only keeping the answer failed. The client gets
        # it (a 503 would make it send the request again, and a retry after the lease runs twice).
        logger.warning("the answer of an idempotent request could not be kept", extra={"status": ran[0].status_code})
        return ran[0]
    if outcome.state is KeyState.RAN:
        return ran[0]
    if outcome.state is KeyState.REUSED:
        hours = KEEP_SECONDS // 3600
        raise KeyReused(f"This {HEADER} was used with another body on {request.method} {_path(request)} in the "
                        f"last {hours} hours; a new request needs a new key.", field=HEADER)
    if outcome.state is KeyState.IN_PROGRESS:
        raise KeyInProgress(f"A request with this {HEADER} is still in progress; send it again in a moment to get "
                            "its answer.", field=HEADER)
    assert outcome.answer is not None, "a replay carries the first answer"
    return _replay(outcome.answer)


def _fingerprint(request: Request) -> str | None:
    try:
        return body_fingerprint(json_body(request, get_settings()))
    except FastlaneError:
        return None


def _path(request: Request) -> str:
    """The request's path, as its route names it: `/tasks/{task_id}` with the ids filled in."""
    path = request.path
    for name, value in (request.uri_params or {}).items():
        path = path.replace("{" + name + "}", value.lower() if name in _UUID_PARAMETERS else value)
    return path


def _answer(response: Response) -> Answer:
    body = response.body
    text = body.decode("utf-8") if isinstance(body, bytes) else body if isinstance(body, str) else json.dumps(body)
    headers = {name.lower(): value for name, value in (response.headers or {}).items()}
    content_type = headers.get("content-type", "application/json")
    return Answer(status=response.status_code, body=text,
                  content_type=content_type if isinstance(content_type, str) else "application/json")


def _replay(answer: Answer) -> Response:
    return Response(body=answer.body, status_code=answer.status,
                    headers={"Content-Type": answer.content_type, REPLAYED_HEADER: "true"})
