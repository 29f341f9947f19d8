"""API Gateway websockets: frames are posted to connections and connections closed through the
management API (PostToConnection, DeleteConnection); a subscription made on connect is started
by an asynchronous Lambda invoke, since nothing can be posted before $connect has returned."""
from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from ..observability import logger

# GoneException: the client left. ForbiddenException: the connection is not open (yet).
NOT_CONNECTED = {"GoneException", "ForbiddenException"}


def management_endpoint(request_context: dict[str, Any], region: str) -> str:
    """The management API of the websocket API a connection came through (custom domains do not
    serve it, so it is always the execute-api host)."""
    api_id = request_context.get("apiId") or ""
    stage = request_context.get("stage") or ""
    return f"https://{api_id}.execute-api.{region}.amazonaws.com/{stage}"


class ApiGatewaySockets:
    """Posts to and closes connections. `override` (set by the local runtime) replaces every
    connection's endpoint, so the same code reaches the local stand-in."""

    def __init__(self, make_client: Callable[[str], Any], override: str = "") -> None:
        self._make_client = make_client
        self._override = override
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _client(self, endpoint: str) -> Any:
        endpoint = self._override or endpoint
        client = self._clients.get(endpoint)
        if client is None:
            with self._lock:  # one client per endpoint, even when the first calls come together
                client = self._clients.get(endpoint) or self._make_client(endpoint)
                self._clients[endpoint] = client
        return client

    def warm(self) -> None:
        if self._override:
            self._client(self._override)

    def post(self, endpoint: str, connection_id: str, data: str) -> bool:
        """False when the connection is not open (gone, or not open yet)."""
        try:
            self._client(endpoint).post_to_connection(ConnectionId=connection_id, Data=data.encode("utf-8"))
            return True
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code in NOT_CONNECTED:
                return False
            raise

    def close(self, endpoint: str, connection_id: str) -> None:
        try:
            self._client(endpoint).delete_connection(ConnectionId=connection_id)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code", "") not in NOT_CONNECTED:
                raise


class LambdaStarter:
    """Runs a subscription made on $connect in the logs function, asynchronously."""

    def __init__(self, client: Any, function_name: str) -> None:
        self._lambda = client
        self._function = function_name

    def start(self, payload: dict[str, Any]) -> None:
        self._lambda.invoke(FunctionName=self._function, InvocationType="Event",
                            Payload=json.dumps(payload).encode("utf-8"))
        logger.debug("subscription start requested", extra={"function": self._function})
