"""The Sockets and Starter ports of the local backend, in process: frames go straight to the
local websocket gateway's sockets and a subscription made on $connect runs in the gateway's
handler threads, as API Gateway's management API and Lambda's asynchronous invoke do in AWS,
without an HTTP round trip per frame. The gateway's rules hold as they are: nothing can be
posted to a connection before $connect returned, a closed one is gone."""
from __future__ import annotations

from typing import Any

from ..websocket import LocalWebsocketGateway


class GatewaySockets:
    def __init__(self, gateway: LocalWebsocketGateway) -> None:
        self._gateway = gateway

    def post(self, endpoint: str, connection_id: str, data: str) -> bool:
        status, body = self._gateway.post(connection_id, data.encode("utf-8"))
        if status == 410:
            return False
        if status != 200:
            raise RuntimeError(f"the local websocket gateway refused a frame: {status} {body}")
        return True

    def close(self, endpoint: str, connection_id: str) -> None:
        self._gateway.delete(connection_id)

    def warm(self) -> None:
        """Nothing to open: the gateway is in this process."""


class GatewayStarter:
    """Runs the logs function with a payload in the background, as an `Event` invoke."""

    def __init__(self, gateway: LocalWebsocketGateway, function: str = "logs") -> None:
        self._gateway = gateway
        self._function = function

    def start(self, payload: dict[str, Any]) -> None:
        self._gateway.start_function(self._function, payload)
