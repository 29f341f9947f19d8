"""The bodies of the live-log handlers: the websocket routes ($connect, $default, $disconnect),
the logs function (CloudWatch Logs subscription events, and subscriptions made on $connect), and
the end of a stopped task's streams. Each decodes its transport (API Gateway's websocket events,
the subscription's base64 of gzipped JSON, a message body, parsed once) into the typed values of
domain/live.py, which is all the service sees. docs/live-logs.md."""
from __future__ import annotations

import base64
import gzip
import json
from typing import Any

from . import wiring
from .domain.ecs import TaskStateChange
from .domain.lifecycle import ECS_STOPPED
from .domain.live import (
    Connection,
    DeferredSubscription,
    LogChunk,
    LogEvent,
    SubscribeRequest,
    error_frame,
    log_stream_of,
)
from .domain.model import Execution
from .observability import logger

MALFORMED = ('Messages are JSON objects: {"action": "subscribe", "taskId": ..., "jobId": ..., '
             '"executionId"?: ..., "after"?: ...} or {"action": "ping"}.')
REFUSED = ("Not authorized: with auth on, a subscribe message carries the stream page's token for what it "
           "subscribes to (`token`) or Basic credentials (`authorization`).")
MAX_MESSAGE_CHARS = 32 * 1024
SUBSCRIPTION_FIELDS = ("taskId", "jobId", "executionId")


def _connection(event: dict[str, Any]) -> Connection:
    from .adapters.websocket import management_endpoint
    from .config import get_settings

    context = event["requestContext"]
    return Connection(context["connectionId"], management_endpoint(context, get_settings().region))


def _message(event: dict[str, Any]) -> dict[str, Any] | None:
    """A message's body, parsed once; None for anything no subscription or ping can be: not a JSON
    object, or too long or too deeply nested to parse safely."""
    from .domain.json_text import json_depth

    body = event.get("body") or ""
    if not isinstance(body, str) or len(body) > MAX_MESSAGE_CHARS or json_depth(body) > 2:
        return None
    try:
        message = json.loads(body)
    except ValueError:
        return None
    return message if isinstance(message, dict) else None


def subscription_payload(event: dict[str, Any]) -> dict[str, Any]:
    """What a CloudWatch Logs subscription event carries, as CloudWatch sends it: base64 of gzipped JSON."""
    payload: dict[str, Any] = json.loads(gzip.decompress(base64.b64decode(event["awslogs"]["data"])))
    return payload


def log_chunk(event: dict[str, Any]) -> LogChunk | None:
    """The chunk a CloudWatch Logs subscription event delivers, its events in stream order; None
    when it delivers no job output."""
    data = subscription_payload(event)
    if data.get("messageType") != "DATA_MESSAGE":
        return None  # CloudWatch's CONTROL_MESSAGE, which checks that the function is reachable
    named = log_stream_of(data.get("logStream", ""))
    if named is None:
        return None
    ecs_task_id, stream = named
    events = sorted((LogEvent(stream, int(e["timestamp"]), str(e["id"]), e.get("message", ""))
                     for e in data.get("logEvents", [])), key=lambda e: e.position.key)
    return LogChunk(ecs_task_id, stream, tuple(events)) if events else None


def ws_connect(event: dict[str, Any]) -> dict[str, Any]:
    try:
        from .api.auth import websocket_connect_allowed

        if not websocket_connect_allowed(wiring.get_basic_auth(), event):
            return {"statusCode": 401}
        query = event.get("queryStringParameters") or {}
        if any(query.get(name) for name in SUBSCRIPTION_FIELDS):  # else the client will send a subscribe message
            wiring.get_live_logs().connect(_connection(event), SubscribeRequest.of(query))
        return {"statusCode": 200}
    except Exception:  # noqa: BLE001 - the client sees the connection refused, the log says why
        logger.exception("live logs: connect failed")
        return {"statusCode": 500}


def ws_message(event: dict[str, Any]) -> dict[str, Any]:
    """{"action": "subscribe", ...}, {"action": "ping"} or {"action": "renew", "token"}."""
    live = wiring.get_live_logs()
    connection = None
    try:
        from .api.auth import renewal_frame, websocket_subscribe_allowed

        connection = _connection(event)
        message = _message(event)
        action = message.get("action") if message is not None else None
        if message is None or action not in ("subscribe", "ping", "renew"):
            live.send(connection, error_frame(MALFORMED, "action"))
        elif action == "renew":
            # A stream page's fresh token for what its token opens, or an error frame (not genuine,
            # expired, or past its page's lifetime).
            live.send(connection, renewal_frame(wiring.get_basic_auth().signing_key(), message.get("token")))
        elif action == "ping":
            live.ping(connection)
        elif not websocket_subscribe_allowed(wiring.get_basic_auth(), message):
            live.send(connection, error_frame(REFUSED, "token"))  # auth.py: a message carries its own proof
        else:
            live.subscribe(connection, SubscribeRequest.of(message))
        return {"statusCode": 200}
    except Exception:  # noqa: BLE001 - the client is told, the log says why
        logger.exception("live logs: message failed")
        try:
            if connection is not None:
                live.send(connection, error_frame("Internal error; it was logged. Try again."))
        except Exception:  # noqa: BLE001 - the socket may be gone too
            pass
        return {"statusCode": 500}


def ws_disconnect(event: dict[str, Any]) -> dict[str, Any]:
    try:
        wiring.get_live_logs().disconnect(event["requestContext"]["connectionId"])
    except Exception:  # noqa: BLE001 - an item left behind expires with its TTL
        logger.exception("live logs: disconnect failed")
    return {"statusCode": 200}


def logs(event: dict[str, Any]) -> dict[str, Any]:
    """The logs function: CloudWatch Logs subscription events, and subscriptions made on
    $connect. A failed delivery is logged, not raised: Lambda would retry it and the subscribers
    would get the chunk twice."""
    try:
        if "awslogs" in event:
            chunk = log_chunk(event)
            return {"subscribers": wiring.get_live_logs().deliver(chunk) if chunk is not None else 0}
        if event.get("liveLogs") == "subscribe":
            wiring.get_live_logs().start(DeferredSubscription.from_payload(event))
            return {"started": True}
        logger.warning("logs function: unknown event", extra={"keys": sorted(event)[:10]})
        return {"ignored": True}
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
