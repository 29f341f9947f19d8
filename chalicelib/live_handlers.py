"""The bodies of the live-log handlers: the websocket routes ($connect, $default, $disconnect),
the logs function (CloudWatch Logs subscription events, and subscriptions made on $connect), and
the end of a stopped task's streams. docs/live-logs.md."""
from __future__ import annotations

from typing import Any

from . import wiring
from .domain.live import error_frame
from .observability import logger


def _authorized(event: dict[str, Any]) -> bool:
    """With Basic auth on, a websocket client shows credentials (a CLI) or the token a stream
    page was served with (a browser cannot send Authorization on a websocket). When API Gateway
    authorizes the REST API (IAM or API keys), only the token: it proves an authorized request
    for the page (docs/deploy.md#access)."""
    from .api.stream_page import token_valid

    auth = wiring.get_basic_auth()
    if not auth.tokens_required:
        return True
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    token = (event.get("queryStringParameters") or {}).get("token")
    return auth.allows(headers.get("authorization")) or token_valid(auth.signing_key(), token)


def ws_connect(event: dict[str, Any]) -> dict[str, Any]:
    try:
        if not _authorized(event):
            return {"statusCode": 401}
        return wiring.get_live_logs().connect(event)
    except Exception:  # noqa: BLE001 - the client sees the connection refused, the log says why
        logger.exception("live logs: connect failed")
        return {"statusCode": 500}


def ws_message(event: dict[str, Any]) -> dict[str, Any]:
    live = wiring.get_live_logs()
    try:
        return live.message(event)
    except Exception:  # noqa: BLE001 - the client is told, the log says why
        logger.exception("live logs: message failed")
        try:
            live.tell(event, error_frame("Internal error; it was logged. Try again."))
        except Exception:  # noqa: BLE001 - the socket may be gone too
            pass
        return {"statusCode": 500}


def ws_disconnect(event: dict[str, Any]) -> dict[str, Any]:
    try:
        return wiring.get_live_logs().disconnect(event)
    except Exception:  # noqa: BLE001 - an item left behind expires with its TTL
        logger.exception("live logs: disconnect failed")
        return {"statusCode": 200}


def logs(event: dict[str, Any]) -> dict[str, Any]:
    """A failed delivery is logged, not raised: Lambda would retry it and the subscribers would
    get the chunk twice."""
    try:
        return wiring.get_live_logs().handle(event)
    except Exception:  # noqa: BLE001
        logger.exception("live logs: logs function failed")
        return {"failed": True}


def task_event(event: dict[str, Any]) -> None:
    """After the monitor handled an ECS task state change: a stopped task's output is complete,
    so its execution's live streams end. Never fails the monitor's batch."""
    detail = event.get("detail") or {}
    execution_id, task_arn = detail.get("startedBy") or "", detail.get("taskArn") or ""
    if detail.get("lastStatus") != "STOPPED" or len(execution_id) != 36 or not task_arn:
        return
    try:
        wiring.get_live_logs().task_stopped(execution_id, task_arn)
    except Exception:  # noqa: BLE001 - a subscriber's ping ends its stream later
        logger.exception("live logs: ending the streams failed", extra={"execution_id": execution_id})
