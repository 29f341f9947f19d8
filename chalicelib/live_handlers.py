"""The bodies of the live-log handlers: the websocket routes ($connect, $default, $disconnect),
the logs function (CloudWatch Logs subscription events, and subscriptions made on $connect), and
the end of a stopped task's streams. docs/live-logs.md."""
from __future__ import annotations

from typing import Any

from . import wiring
from .domain.ecs import TaskStateChange
from .domain.lifecycle import ECS_STOPPED
from .domain.live import error_frame
from .domain.model import Execution
from .observability import logger

MALFORMED = 'Messages are small JSON objects: {"action": "subscribe", ...} or {"action": "ping"}.'
REFUSED = ("Not authorized: with auth on, a subscribe message carries the stream page's token for what it "
           "subscribes to (`token`) or Basic credentials (`authorization`).")


MAX_MESSAGE_CHARS = 32 * 1024


def _malformed(event: dict[str, Any]) -> bool:
    """A message no subscription or ping can be: too long or too deeply nested to parse safely."""
    from .domain.payload import json_depth

    body = event.get("body") or ""
    return not isinstance(body, str) or len(body) > MAX_MESSAGE_CHARS or json_depth(body) > 2


def _message(event: dict[str, Any]) -> dict[str, Any] | None:
    import json

    try:
        body = json.loads(event.get("body") or "")
    except ValueError:
        return None  # the service answers what messages are
    return body if isinstance(body, dict) else None


def _subscribe_refused(body: dict[str, Any] | None) -> bool:
    """A subscribe message that does not show the right to watch what it asks for (auth.py)."""
    from .api.auth import websocket_subscribe_allowed

    if body is None or body.get("action") != "subscribe":
        return False
    return not websocket_subscribe_allowed(wiring.get_basic_auth(), body)


def _renewal(body: dict[str, Any]) -> str:
    """{"action": "renew", "token": ...}: a stream page's fresh token for what its token opens, or
    an error frame (not genuine, expired, or past its page's lifetime)."""
    from .api.auth import renewal_frame

    return renewal_frame(wiring.get_basic_auth().signing_key(), body.get("token"))


def ws_connect(event: dict[str, Any]) -> dict[str, Any]:
    try:
        from .api.auth import websocket_connect_allowed

        if not websocket_connect_allowed(wiring.get_basic_auth(), event):
            return {"statusCode": 401}
        answer: dict[str, Any] = wiring.get_live_logs().connect(event)
        return answer
    except Exception:  # noqa: BLE001 - the client sees the connection refused, the log says why
        logger.exception("live logs: connect failed")
        return {"statusCode": 500}


def ws_message(event: dict[str, Any]) -> dict[str, Any]:
    live = wiring.get_live_logs()
    try:
        if _malformed(event):
            live.tell(event, error_frame(MALFORMED, "action"))
            return {"statusCode": 200}
        body = _message(event)
        if body is not None and body.get("action") == "renew":
            live.tell(event, _renewal(body))
            return {"statusCode": 200}
        if _subscribe_refused(body):
            live.tell(event, error_frame(REFUSED, "token"))
            return {"statusCode": 200}
        answer = live.message(event)
        return answer if isinstance(answer, dict) else {"statusCode": 200}
    except Exception:  # noqa: BLE001 - the client is told, the log says why
        logger.exception("live logs: message failed")
        try:
            live.tell(event, error_frame("Internal error; it was logged. Try again."))
        except Exception:  # noqa: BLE001 - the socket may be gone too
            pass
        return {"statusCode": 500}


def ws_disconnect(event: dict[str, Any]) -> dict[str, Any]:
    try:
        gone: dict[str, Any] = wiring.get_live_logs().disconnect(event)
        return gone
    except Exception:  # noqa: BLE001 - an item left behind expires with its TTL
        logger.exception("live logs: disconnect failed")
        return {"statusCode": 200}


def logs(event: dict[str, Any]) -> dict[str, Any]:
    """A failed delivery is logged, not raised: Lambda would retry it and the subscribers would
    get the chunk twice."""
    try:
        handled: dict[str, Any] = wiring.get_live_logs().handle(event)
        return handled
    except Exception:  # noqa: BLE001
        logger.exception("live logs: logs function failed")
        return {"failed": True}


def task_event(change: TaskStateChange, execution: Execution | None = None) -> None:
    """After the monitor handled an ECS task state change: a stopped task's output is complete,
    so its execution's live streams end. `execution` is the execution as the monitor left it
    (its `watched` flag saves a read when nobody watched it). Never fails the monitor's batch."""
    if change.state.last_status != ECS_STOPPED:
        return
    execution_id, task_arn = change.execution_id, change.state.arn
    try:
        wiring.get_live_logs().task_stopped(change.job_id, execution_id, task_arn, execution)
    except Exception:  # noqa: BLE001 - a subscriber's ping ends its stream later
        logger.exception("live logs: ending the streams failed", extra={"execution_id": execution_id})
