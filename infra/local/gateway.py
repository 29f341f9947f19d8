"""The local stand-in for API Gateway: serves the Chalice app over HTTP, building the same
proxy events that API Gateway sends to the Lambda function. It answers only its own origin:
jobs run on the developer's machine, so a request a browser marks as cross-site, or one naming
a foreign Host (DNS rebinding), is refused with 403 before the app sees it. A body is sized by
its declared length, against the app's MAX_BODY_BYTES, before a byte of it is read, and every
method, served or not, is answered with JSON."""
from __future__ import annotations

import base64
import json
import re
import socket
import threading
import time
import uuid
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from chalice.app import Chalice
from chalice.local import LambdaContext, LocalChalice, RouteMatcher

STAGE = "api"


def make_thread_safe(app: Chalice) -> None:
    """Chalice keeps the current request on the app object; under a threaded server it must be
    per thread, as `chalice local` does it."""
    if not isinstance(app, LocalChalice):
        app.__class__ = type("LocalFastlane", (LocalChalice, app.__class__), {})


def _error(status: int, message: str, field: str | None = None, headers: dict[str, str] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"error": message, "operation": "route"}
    if field is not None:
        body["field"] = field
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json", **(headers or {})},
        "body": json.dumps(body),
    }


def _not_allowed(method: str, path: str, allowed: frozenset[str]) -> dict[str, Any]:
    """405 with the Allow header HTTP requires of it: the methods served on `path`."""
    listed = ", ".join(sorted(allowed))
    return _error(405, f"{method[:20]} is not allowed on {path[:200]}; allowed: {listed}.", headers={"Allow": listed})


class BodyRefused(Exception):
    """A request refused on its framing alone: its body is never read."""

    def __init__(self, status: int, message: str, field: str) -> None:
        super().__init__(message)
        self.response = _error(status, message, field)


_DIGITS = re.compile(r"[0-9]+")


def declared_length(headers: Message, limit: int, rule: str = "MAX_BODY_BYTES") -> int:
    """The size of a request's body as its headers declare it, checked against `limit` (the app's
    MAX_BODY_BYTES, named `rule` in answers) before a byte of it is read; raises BodyRefused. No
    Content-Length is an empty body, as HTTP/1.1 defines it for a request without Transfer-Encoding."""
    if headers.get("Transfer-Encoding") is not None:
        # A chunked body's size is known only once it is read: API Gateway's limit could not be kept.
        raise BodyRefused(411, "Content-Length is required: a body sent with Transfer-Encoding is not accepted here; "
                               f"send it with its size in Content-Length (at most {limit} bytes, {rule}).",
                          "Content-Length")
    values = [part.strip() for value in headers.get_all("Content-Length") or () for part in str(value).split(",")]
    if not values:
        return 0
    if not all(_DIGITS.fullmatch(value) for value in values) or len(set(values)) > 1:
        shown = ", ".join(values)[:60]
        raise BodyRefused(400, f"Content-Length must be one number of bytes, ASCII digits only, got '{shown}'.",
                          "Content-Length")
    digits = values[0].lstrip("0") or "0"
    # Compared as text first: a header of thousands of digits is not turned into an int.
    if len(digits) > len(str(limit)) or int(digits) > limit:
        raise BodyRefused(413, f"Content-Length says the body is {digits[:40]} bytes; at most {limit} are accepted "
                               f"({rule}).", "body")
    return int(digits)


LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
# Sec-Fetch-Site values of requests the browser says come from this origin or from the user.
OWN_SITE = ("same-origin", "none")


def _host_name(value: str) -> str:
    """The name in a Host header or an origin's authority, without the port, lower-case."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class OriginPolicy:
    """Which requests are this runtime's own: Host names it answers to (loopback, the address it
    listens on, ALLOWED_HOSTS), and browser requests from its own origin only."""

    def __init__(self, listen_host: str, port: int, extra: str | None = None) -> None:
        names = {*LOOPBACK_NAMES, listen_host.lower()} - {"", "0.0.0.0", "::"}
        if extra is None:
            from .settings import RuntimeSettings

            extra = RuntimeSettings.from_environment().allowed_hosts
        names.update(part.strip().lower() for part in extra.split(",") if part.strip())
        self.names = frozenset(names)
        self.port = port

    def refusal(self, headers: dict[str, str]) -> str | None:
        """Why a request is refused, or None; `headers` have lower-case names."""
        refused = self._foreign_host(headers)
        if refused is not None:
            return refused
        site = headers.get("sec-fetch-site")
        if site is not None and site.lower() not in OWN_SITE:
            return f"Cross-site request refused (Sec-Fetch-Site: {site[:40]}): this runtime answers its own pages only."
        return self._foreign_origin(headers, "request")

    def websocket_refusal(self, headers: dict[str, str], socket_port: int) -> str | None:
        """Why a handshake with the websocket on `socket_port` is refused, or None. Browsers send no
        CORS preflight for a websocket, so any page could open one: only this runtime's own pages
        (the stream pages, whose origin is the HTTP port, not the websocket's), clients that send
        no Origin (not a browser) and clients that send the websocket's own origin, http or https
        (websocket-client does by default; no page is ever served from that port) are let in.
        Sec-Fetch-Site is not asked: the websocket's other port makes even the runtime's own pages
        `same-site`."""
        return self._foreign_host(headers) or self._foreign_origin(headers, "websocket", socket_port)

    def _foreign_origin(self, headers: dict[str, str], what: str, socket_port: int | None = None) -> str | None:
        origin = headers.get("origin")
        if origin is not None and not self._own_origin(origin, socket_port):
            return f"Cross-origin {what} refused (Origin: {origin[:100]}): this runtime answers its own pages only."
        return None

    def _foreign_host(self, headers: dict[str, str]) -> str | None:
        host = headers.get("host")
        if host is None or _host_name(host) not in self.names:
            return (f"Host '{(host or '')[:100]}' is not one this runtime answers to ({', '.join(sorted(self.names))}; "
                    "ALLOWED_HOSTS adds names).")
        return None

    def _own_origin(self, origin: str, socket_port: int | None = None) -> bool:
        parts = urlsplit(origin.strip())
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            return False
        if _host_name(parts.netloc) not in self.names:
            return False
        if parts.scheme == "http" and port == self.port:
            return True
        return socket_port is not None and parts.scheme in ("http", "https") and port == socket_port


class RestGateway:
    """Turns an HTTP request into an API Gateway proxy event and the app's answer back."""

    def __init__(self, app: Chalice, policy: OriginPolicy | None = None) -> None:
        make_thread_safe(app)
        self.app = app
        self.matcher = RouteMatcher(list(app.routes))
        self.policy = policy
        # Every method some route serves; any other (TRACE, CONNECT, made-up ones) is 405 wherever it is sent.
        self.served = frozenset(method for methods in app.routes.values() for method in methods)

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes, source_ip: str) -> dict[str, Any]:
        refusal = self.policy.refusal(headers) if self.policy is not None else None
        if refusal is not None:
            return _error(403, refusal)
        parts = urlsplit(target)
        path = parts.path or "/"
        try:
            match = self.matcher.match_route(path)
        except ValueError:
            if method not in self.served:  # CONNECT's host:port names no route either
                return _not_allowed(method, target, self.served)
            return _error(404, f"No route matches {path}.")
        methods = self.app.routes[match.route]
        if method not in methods:
            return _not_allowed(method, path, frozenset(methods))
        query = parse_qs(parts.query, keep_blank_values=True)
        request_id = str(uuid.uuid4())
        event = {
            "resource": match.route,
            "path": path,
            "httpMethod": method,
            "headers": headers,
            "multiValueHeaders": {k: [v] for k, v in headers.items()},
            "queryStringParameters": {k: v[-1] for k, v in query.items()} or None,
            "multiValueQueryStringParameters": query or None,
            "pathParameters": match.captured or None,
            "stageVariables": None,
            "requestContext": {
                "resourcePath": match.route,
                "httpMethod": method,
                "path": f"/{STAGE}{path}",
                "stage": STAGE,
                "requestId": request_id,
                "identity": {"sourceIp": source_ip},
            },
            "body": base64.b64encode(body).decode("ascii") if body else None,
            "isBase64Encoded": bool(body),
        }
        context = LambdaContext(function_name="fastlane-api", memory_size=512, max_runtime_ms=30000)
        return self.app(event, context)


class _Handler(BaseHTTPRequestHandler):
    server_version = "fastlane-local"
    protocol_version = "HTTP/1.1"
    gateway: RestGateway
    max_body_bytes = 256 * 1024  # the app's MAX_BODY_BYTES, set by LocalHttpServer
    body_timeout = 10.0  # seconds a declared body may take to arrive
    # After a refusal the unread body is let run out, within these bounds, before the socket is
    # closed: a socket closed with unread bytes is reset, and the reset can destroy the answer
    # before the client has read it.
    linger_seconds = 2.0
    linger_bytes = 16 * 1024 * 1024

    def __getattr__(self, name: str) -> Any:
        # http.server answers a method with no do_<METHOD> 501 with an HTML page: the gateway
        # answers every method itself (405 with Allow when no route serves it).
        if name.startswith("do_"):
            return self._serve
        raise AttributeError(name)

    def handle_expect_100(self) -> bool:
        """A body that will be refused is not asked for."""
        try:
            declared_length(self.headers, self.max_body_bytes)
        except BodyRefused as refused:
            self._refuse(refused.response)
            return False
        return super().handle_expect_100()

    def _serve(self) -> None:
        try:
            body = self._body()
        except BodyRefused as refused:
            self._refuse(refused.response)
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        self._respond(self.gateway.handle(self.command, self.path, headers, body, self.client_address[0]))

    def _body(self) -> bytes:
        length = declared_length(self.headers, self.max_body_bytes)
        if not length:
            return b""
        self.connection.settimeout(self.body_timeout)  # a client that never sends it does not hold a thread
        try:
            body = self.rfile.read(length)
        except TimeoutError:
            raise BodyRefused(408, f"The body did not arrive within {self.body_timeout:g} seconds "
                                   f"(Content-Length: {length}).", "body") from None
        finally:
            self.connection.settimeout(None)
        if len(body) < length:
            raise BodyRefused(400, f"The body ended after {len(body)} of the {length} bytes Content-Length declared.",
                              "Content-Length")
        return body

    def _refuse(self, response: dict[str, Any]) -> None:
        """Answer without reading the body, then close: what is left of the request cannot be told
        from the next one."""
        self._respond(response, close=True)
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + self.linger_seconds
            left = self.linger_bytes
            while left > 0 and (remaining := deadline - time.monotonic()) > 0:
                self.connection.settimeout(remaining)
                chunk = self.connection.recv(min(left, 65536))
                if not chunk:
                    break
                left -= len(chunk)
        except OSError:
            pass  # the client went first

    def _respond(self, response: dict[str, Any], close: bool = False) -> None:
        payload = response.get("body") or b""
        if response.get("isBase64Encoded"):
            payload = base64.b64decode(payload)
        elif isinstance(payload, str):
            payload = payload.encode("utf-8")
        self.send_response(int(response.get("statusCode", 200)))
        for name, value in (response.get("headers") or {}).items():
            if name.lower() not in ("content-length", "connection"):
                self.send_header(name, value)
        for name, values in (response.get("multiValueHeaders") or {}).items():
            for value in values:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        if close:
            self.send_header("Connection", "close")  # and close_connection is set
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass


def refuse_half_configured_auth() -> None:
    """The runtime does not start with half of the Basic auth pair set: it would refuse every request."""
    from chalicelib.config import get_settings

    settings = get_settings()
    if bool(settings.basic_auth_username) != bool(settings.basic_auth_password) and not settings.basic_auth_secret_id:
        missing = "BASIC_AUTH_PASSWORD" if settings.basic_auth_username else "BASIC_AUTH_USERNAME"
        raise SystemExit(f"fastlane local runtime: Basic auth needs both BASIC_AUTH_USERNAME and BASIC_AUTH_PASSWORD; "
                         f"{missing} is not set. Set both, or neither.")


# The standard backlog of 5 resets connections of a burst of clients.
BACKLOG = 512


def listen(host: str, port: int) -> socket.socket:
    """The API's listening socket (port 0: a free one), as the server binds it."""
    return socket.create_server((host, port), backlog=BACKLOG)


class _Server(ThreadingHTTPServer):
    request_queue_size = BACKLOG
    daemon_threads = True
    # On a socket shared with other processes: each connection this one holds open makes it wait
    # this long before it takes a new one, so an idle process takes it first and a burst of
    # keep-alive clients is spread over the processes, not left to whichever woke first.
    defer_per_connection = 0.0
    MAX_DEFER_SECONDS = 0.01

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.open_connections = 0
        self._counting = threading.Lock()

    def get_request(self) -> tuple[socket.socket, Any]:
        if self.defer_per_connection and self.open_connections:
            time.sleep(min(self.MAX_DEFER_SECONDS, self.defer_per_connection * self.open_connections))
        connection, address = self.socket.accept()  # BlockingIOError when another process took it: skipped
        connection.setblocking(True)  # where an accepted socket inherits the listener's O_NONBLOCK (BSDs)
        return connection, address

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._counting:
            self.open_connections += 1
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._counting:
            self.open_connections -= 1
        super().shutdown_request(request)


class LocalHttpServer:
    """The app on `host`:`port`, or on `listening`, a socket bound already (`host` is then the
    address it was bound to, for the origin rule)."""

    def __init__(self, app: Chalice, host: str, port: int, allowed_hosts: str | None = None,
                 listening: socket.socket | None = None) -> None:
        refuse_half_configured_auth()
        if listening is None:
            self.httpd = _Server((host, port), _Handler)
        else:
            self.httpd = _Server(listening.getsockname()[:2], _Handler, bind_and_activate=False)
            self.httpd.socket.close()
            # Shared with other processes, each waiting in select for a connection: all wake, one
            # takes it, and a blocking accept would hold the others' loops (and their stop) until
            # the next one. Not blocking, the others look again.
            listening.setblocking(False)
            self.httpd.defer_per_connection = 0.001
            self.httpd.socket = listening
            self.httpd.server_address = listening.getsockname()[:2]
        self.policy = OriginPolicy(host, self.httpd.server_address[1], allowed_hosts)
        from chalicelib.config import get_settings

        self.httpd.RequestHandlerClass = type("Handler", (_Handler,), {
            "gateway": RestGateway(app, self.policy), "max_body_bytes": get_settings().max_body_bytes,
            # http.server writes a response's headers and body in two sends; with Nagle's algorithm
            # the body then waits for the client's delayed ACK, 40 ms a request on Linux.
            "disable_nagle_algorithm": True})
        # Stopping waits for the loop to look up: a tenth of a second at most.
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, name="http",
                                       daemon=True)

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
