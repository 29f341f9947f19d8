"""The HTTP side of the local websocket API: the management API and Lambda's Invoke, for the app's own calls only."""
from __future__ import annotations

import json
import uuid
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:
    from .websocket import LocalWebsocketGateway

MAX_PAYLOAD_BYTES = 6 * 1024 * 1024  # Lambda's limit on a synchronous invocation's payload


class ManagementHandler(BaseHTTPRequestHandler):
    server_version = "fastlane-local-apigateway"
    disable_nagle_algorithm = True  # headers and body go in two sends: no 40 ms wait between them
    protocol_version = "HTTP/1.1"
    gateway: LocalWebsocketGateway

    def _reply(self, status: int, body: Any) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        if isinstance(body, dict) and "__type" in body:
            self.send_header("x-amzn-ErrorType", body["__type"])
        self.send_header("Content-Type", "application/json")
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _route(self) -> tuple[str, str] | None:
        path = urlsplit(self.path).path
        if "/@connections/" in path:
            return "connection", unquote(path.rsplit("/@connections/", 1)[1])
        if path.startswith("/2015-03-31/functions/") and path.endswith("/invocations"):
            return "function", path[len("/2015-03-31/functions/"):-len("/invocations")]
        return None

    def _body(self) -> bytes | None:
        """The request's body, or None once it is refused unread (a length that is not a number of
        bytes, or over Lambda's payload limit)."""
        from .gateway import BodyRefused, declared_length

        try:
            length = declared_length(self.headers, MAX_PAYLOAD_BYTES, "Lambda's payload limit")
        except BodyRefused as refused:
            self.close_connection = True
            self._reply(refused.response["statusCode"], {"__type": "BadRequestException", "message": str(refused)})
            return None
        return self.rfile.read(length) if length else b""

    def _foreign(self) -> bool:
        """Refuses (403) what a browser sends, or names another Host: only the app, in this
        process, calls the management API, and it sends neither. A page the developer visits could
        otherwise post frames into another client's live logs or invoke the logs function (a
        browser sends cross-site POSTs without a preflight when they look like forms)."""
        from .gateway import LOOPBACK_NAMES

        host = urlsplit(f"//{self.headers.get('Host') or ''}").hostname or ""
        site = self.headers.get("Sec-Fetch-Site")
        if self.headers.get("Origin") is None and site in (None, "none") and host in LOOPBACK_NAMES:
            return False
        self.close_connection = True  # a refused body is never read
        self._reply(403, {"__type": "AccessDeniedException",
                          "message": "The websocket management API answers the local runtime's own calls only."})
        return True

    def do_POST(self) -> None:  # noqa: N802 - the base class's naming
        if self._foreign():
            return
        route, body = self._route(), self._body()
        if body is None:
            return
        if route and route[0] == "connection":
            self._reply(*self.gateway.post(route[1], body))
        elif route and route[0] == "function":
            self._reply(*self.gateway.invoke(route[1], self.headers.get("X-Amz-Invocation-Type", "RequestResponse"),
                                             body))
        else:
            self._reply(404, {"__type": "NotFoundException", "message": f"No route for {self.path}"})

    def do_DELETE(self) -> None:  # noqa: N802
        if self._foreign() or self._body() is None:
            return
        route = self._route()
        if route and route[0] == "connection":
            self._reply(*self.gateway.delete(route[1]))
        else:
            self._reply(404, {"__type": "NotFoundException", "message": f"No route for {self.path}"})

    def do_GET(self) -> None:  # noqa: N802
        if self._foreign():
            return
        route = self._route()
        if route and route[0] == "connection":
            self._reply(*self.gateway.info(route[1]))
        elif urlsplit(self.path).path == "/_local/calls":
            self._reply(200, {**self.gateway.calls, **{name: count() for name, count in self.gateway.counters.items()}})
        else:
            self._reply(404, {"__type": "NotFoundException", "message": f"No route for {self.path}"})

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass
