"""The local stand-in for API Gateway's websocket API: a websocket server whose socket events
become the app's $connect, $default and $disconnect events (built as API Gateway builds them),
and a small HTTP endpoint (websocket_management.py) that serves the management API
(PostToConnection, DeleteConnection, GetConnection) back to the sockets, plus Lambda's Invoke for
the app's own functions.

The app's management client is pointed at the endpoint with AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI
and its Lambda client with AWS_ENDPOINT_URL_LAMBDA, so the app code is the same as in AWS. As in
AWS, nothing can be posted to a connection before its $connect handler has returned (410), a
closed or unknown connection answers 410 GoneException, and a message over 128 KB is refused.
API Gateway cannot give a close reason; the app sends it as a last frame
`{"type": "close", "reason": ...}`, and this gateway closes the socket with that reason when the
connection is deleted, as a client would wish API Gateway did.
"""
from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

from chalice.local import LambdaContext

from .timestamps import iso_ms
from .websocket_management import ManagementHandler

if TYPE_CHECKING:
    from .gateway import OriginPolicy

log = logging.getLogger(__name__)

STAGE = "api"
API_ID = "local"
MAX_MESSAGE_BYTES = 128 * 1024  # API Gateway's limit on a websocket message
SEND_TIMEOUT_SECONDS = 10.0


def _bind(host: str, port: int) -> socket.socket:
    """Listen on `port`, or on a free port when it is taken (or 0)."""
    for candidate in ((port, 0) if port else (0,)):
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, candidate))
        except OSError:
            sock.close()
            continue
        sock.listen(128)
        sock.setblocking(False)
        return sock
    raise OSError(f"cannot listen on {host}")


def _connection_id() -> str:
    # API Gateway's ids are base64 of a few bytes, like "L0SM9cOFvHcCIhw=".
    return base64.b64encode(os.urandom(11)).decode()


@dataclass
class _Socket:
    connection: Any
    connected_at: float
    source_ip: str
    user_agent: str
    last_active: float = field(default_factory=time.time)
    close_reason: str = ""  # from the app's last {"type": "close"} frame


class LocalWebsocketGateway:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, stage: str = STAGE) -> None:
        self.host = host
        self.stage = stage
        self._listener = _bind(host, port)
        self.port = self._listener.getsockname()[1]
        handler = type("Handler", (ManagementHandler,), {"gateway": self})
        # Loopback whatever `host` is: only the app, in this process, calls the management API,
        # which posts to any connection and invokes the app's functions without auth.
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._http.daemon_threads = True
        self._http_thread = threading.Thread(target=self._http.serve_forever, kwargs={"poll_interval": 0.1},
                                             name="ws-management", daemon=True)
        self._loop_thread = threading.Thread(target=self._run_loop, name="ws-gateway", daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Any = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._sockets: dict[str, _Socket] = {}
        self._lock = threading.Lock()
        # Handlers run in threads, as concurrent Lambda invocations would.
        self._executor = ThreadPoolExecutor(max_workers=32, thread_name_prefix="ws-lambda")
        self._routes: dict[str, Callable[[dict[str, Any], Any], Any]] = {}
        self._policy: OriginPolicy | None = None
        self._functions: dict[str, Callable[[dict[str, Any], Any], Any]] = {}
        self.calls = {"PostToConnection": 0, "DeleteConnection": 0, "GetConnection": 0, "Invoke": 0}
        # Counts kept elsewhere (the runtime's log reads), served with the calls at /_local/calls.
        self.counters: dict[str, Callable[[], int]] = {}

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("", "0.0.0.0", "::") else self.host
        return f"ws://{host}:{self.port}"

    @property
    def management_endpoint(self) -> str:
        host, port = self._http.server_address[:2]
        return f"http://{host}:{port}"

    # lifecycle ----------------------------------------------------------------------------------

    def start(self, app: Any, functions: dict[str, Callable[[dict[str, Any], Any], Any]],
              policy: OriginPolicy | None = None) -> None:
        """Serve the app's websocket handlers, and `functions` (by the last part of their
        name: `fastlane-local-logs` -> `logs`) to Lambda's Invoke; a `policy` refuses handshakes
        from foreign pages and Host names (403) before $connect sees them."""
        self._policy = policy
        self._routes = {route: app.handler_map[config.name] for route, config in app.websocket_handlers.items()}
        self._functions = functions
        self._http_thread.start()
        self._loop_thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the local websocket gateway did not start")

    def stop(self) -> None:
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
            self._loop_thread.join(timeout=10)
        if self._http_thread.is_alive():
            self._http.shutdown()
        self._http.server_close()
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _run_loop(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve())
        finally:
            loop.close()

    async def _serve(self) -> None:
        from websockets.asyncio.server import serve

        self._stopping = asyncio.Event()
        async with serve(self._handle, sock=self._listener, process_request=self._connect,
                         max_size=MAX_MESSAGE_BYTES, ping_interval=20, ping_timeout=20) as server:
            self._server = server
            self._ready.set()
            await self._stopping.wait()
            with self._lock:
                sockets = list(self._sockets.values())
            for sock in sockets:
                await sock.connection.close(1001, "going away")

    # socket events -> the app's handlers ---------------------------------------------------------

    def _context(self, route: str, connection_id: str, sock: _Socket | None, **extra: Any) -> dict[str, Any]:
        now = time.time()
        kind = {"$connect": "CONNECT", "$disconnect": "DISCONNECT"}.get(route, "MESSAGE")
        context = {
            "routeKey": route, "eventType": kind, "messageDirection": "IN", "stage": self.stage,
            "connectedAt": int((sock.connected_at if sock else now) * 1000),
            "requestTimeEpoch": int(now * 1000), "requestTime": iso_ms(now),
            "requestId": str(uuid.uuid4()), "extendedRequestId": str(uuid.uuid4()),
            "identity": {"sourceIp": sock.source_ip if sock else "", "userAgent": sock.user_agent if sock else ""},
            "domainName": f"{self.url.split('//', 1)[1]}", "connectionId": connection_id, "apiId": API_ID,
        }
        context.update(extra)
        return context

    def _invoke(self, route: str, event: dict[str, Any]) -> dict[str, Any]:
        handler = self._routes.get(route)
        if handler is None:
            return {"statusCode": 200}
        context = LambdaContext(function_name=f"fastlane-local-{route.strip('$')}", memory_size=512,
                                max_runtime_ms=29_000)
        try:
            return handler(event, context) or {"statusCode": 200}
        except Exception:  # noqa: BLE001 - as in AWS: the route answers 500
            log.exception("websocket %s handler failed", route)
            return {"statusCode": 500}

    async def _connect(self, connection: Any, request: Any) -> Any:
        """The opening handshake waits for $connect, which accepts (2xx) or refuses it."""
        connection_id = _connection_id()
        connection.fastlane_id = connection_id
        address = connection.remote_address[0] if connection.remote_address else ""
        sock = _Socket(connection, time.time(), address, request.headers.get("User-Agent", ""))
        connection.fastlane_socket = sock
        parts = urlsplit(request.path)
        query = parse_qs(parts.query, keep_blank_values=True)
        headers = {name: value for name, value in request.headers.raw_items()}
        refused = (self._policy.websocket_refusal({k.lower(): v for k, v in headers.items()}, self.port)
                   if self._policy else None)
        if refused is not None:
            return connection.respond(403, refused)
        event = {
            "headers": headers, "multiValueHeaders": {k: request.headers.get_all(k) for k in headers},
            "queryStringParameters": {k: v[-1] for k, v in query.items()} or None,
            "multiValueQueryStringParameters": query or None,
            "requestContext": self._context("$connect", connection_id, sock),
            "isBase64Encoded": False,
        }
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(self._executor, self._invoke, "$connect", event)
        status = int((result or {}).get("statusCode") or 200)
        if 200 <= status < 300:
            return None
        body = (result or {}).get("body") or {401: "Unauthorized", 403: "Forbidden"}.get(status, "Connection refused")
        return connection.respond(status, str(body))

    async def _handle(self, connection: Any) -> None:
        from websockets.exceptions import ConnectionClosed

        connection_id: str = connection.fastlane_id
        sock: _Socket = connection.fastlane_socket
        with self._lock:
            self._sockets[connection_id] = sock  # open: the app may post to it from now on
        loop = asyncio.get_running_loop()
        try:
            async for message in connection:
                sock.last_active = time.time()
                binary = isinstance(message, bytes)
                event = {
                    "requestContext": self._context("$default", connection_id, sock, messageId=str(uuid.uuid4())),
                    "body": base64.b64encode(message).decode() if binary else message,
                    "isBase64Encoded": binary,
                }
                await loop.run_in_executor(self._executor, self._invoke, "$default", event)
        except ConnectionClosed:
            pass
        finally:
            with self._lock:
                self._sockets.pop(connection_id, None)
            event = {"requestContext": self._context(
                "$disconnect", connection_id, sock, disconnectStatusCode=connection.close_code or 1006,
                disconnectReason=connection.close_reason or ""), "isBase64Encoded": False}
            try:
                await loop.run_in_executor(self._executor, self._invoke, "$disconnect", event)
            except RuntimeError:
                pass  # shutting down

    # the management API -------------------------------------------------------------------------

    def _socket(self, connection_id: str) -> _Socket | None:
        with self._lock:
            return self._sockets.get(connection_id)

    def post(self, connection_id: str, data: bytes) -> tuple[int, dict[str, Any] | None]:
        self.calls["PostToConnection"] += 1
        sock = self._socket(connection_id)
        if sock is None or self._loop is None:
            return 410, {"__type": "GoneException", "message": f"Connection {connection_id} is not open."}
        if len(data) > MAX_MESSAGE_BYTES:
            return 413, {"__type": "PayloadTooLargeException", "message": "Message too long"}
        try:
            text: str | bytes = data.decode("utf-8")
        except UnicodeDecodeError:
            text = data
        if isinstance(text, str) and '"close"' in text:
            try:
                frame = json.loads(text)
                if isinstance(frame, dict) and frame.get("type") == "close":
                    sock.close_reason = str(frame.get("reason") or "")[:120]
            except ValueError:
                pass
        try:
            asyncio.run_coroutine_threadsafe(sock.connection.send(text), self._loop).result(SEND_TIMEOUT_SECONDS)
        except Exception:  # noqa: BLE001 - closed meanwhile, or stuck: the client is gone
            return 410, {"__type": "GoneException", "message": f"Connection {connection_id} is gone."}
        sock.last_active = time.time()
        return 200, None

    def delete(self, connection_id: str) -> tuple[int, dict[str, Any] | None]:
        self.calls["DeleteConnection"] += 1
        with self._lock:
            sock = self._sockets.pop(connection_id, None)
        if sock is None or self._loop is None:
            return 410, {"__type": "GoneException", "message": f"Connection {connection_id} is not open."}
        # A real close frame, with the reason the app sent last (API Gateway would give none).
        asyncio.run_coroutine_threadsafe(sock.connection.close(1000, sock.close_reason), self._loop)
        return 204, None

    def info(self, connection_id: str) -> tuple[int, dict[str, Any] | None]:
        self.calls["GetConnection"] += 1
        sock = self._socket(connection_id)
        if sock is None:
            return 410, {"__type": "GoneException", "message": f"Connection {connection_id} is not open."}
        return 200, {"ConnectedAt": iso_ms(sock.connected_at), "LastActiveAt": iso_ms(sock.last_active),
                     "Identity": {"SourceIp": sock.source_ip, "UserAgent": sock.user_agent}}

    def start_function(self, name: str, event: dict[str, Any]) -> None:
        """Run one of the app's functions with `event` in the background (an `Event` invoke
        made in process, by the local backend)."""
        self.calls["Invoke"] += 1
        function = self._functions.get(name)
        if function is None:
            raise LookupError(f"the local websocket gateway serves no function {name!r}")
        self._executor.submit(self._run_function, function, name, event)

    @staticmethod
    def _run_function(function: Callable[[dict[str, Any], Any], Any], name: str, event: dict[str, Any]) -> Any:
        context = LambdaContext(function_name=f"fastlane-local-{name}", memory_size=512, max_runtime_ms=60_000)
        try:
            return function(event, context)
        except Exception:  # noqa: BLE001 - as an asynchronous invoke: logged, not returned
            log.exception("function %s failed", name)
            return {"errorMessage": "failed"}

    def invoke(self, function_name: str, invocation_type: str, payload: bytes) -> tuple[int, Any]:
        """Lambda's Invoke for the app's functions; `Event` runs in the background."""
        self.calls["Invoke"] += 1
        name = unquote(function_name).rsplit(":", 1)[-1].rsplit("-", 1)[-1]
        function = self._functions.get(name)
        if function is None:
            return 404, {"__type": "ResourceNotFoundException", "Message": f"Function not found: {function_name}"}
        event = json.loads(payload or b"{}")
        context = LambdaContext(function_name=unquote(function_name), memory_size=512, max_runtime_ms=60_000)

        def run() -> Any:
            try:
                return function(event, context)
            except Exception:  # noqa: BLE001 - as an asynchronous invoke: logged, not returned
                log.exception("function %s failed", function_name)
                return {"errorMessage": "failed"}

        if invocation_type == "Event":
            self._executor.submit(run)
            return 202, None
        return 200, run()
