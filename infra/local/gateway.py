"""The local stand-in for API Gateway: serves the Chalice app over HTTP, building the same
proxy events that API Gateway sends to the Lambda function."""
from __future__ import annotations

import base64
import json
import threading
import uuid
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


def _error(status: int, message: str) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps({"error": message, "operation": "route"}),
    }


class RestGateway:
    """Turns an HTTP request into an API Gateway proxy event and the app's answer back."""

    def __init__(self, app: Chalice) -> None:
        make_thread_safe(app)
        self.app = app
        self.matcher = RouteMatcher(list(app.routes))

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes, source_ip: str) -> dict[str, Any]:
        parts = urlsplit(target)
        path = parts.path or "/"
        try:
            match = self.matcher.match_route(path)
        except ValueError:
            return _error(404, f"No route matches {path}.")
        methods = self.app.routes[match.route]
        if method not in methods:
            return _error(405, f"{method} is not allowed on {path}; allowed: {', '.join(sorted(methods))}.")
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

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        response = self.gateway.handle(self.command, self.path, headers, body, self.client_address[0])
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
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _serve

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass


class LocalHttpServer:
    def __init__(self, app: Chalice, host: str, port: int) -> None:
        handler = type("Handler", (_Handler,), {"gateway": RestGateway(app)})
        self.httpd = type("Server", (ThreadingHTTPServer,), {"request_queue_size": 512})((host, port), handler)  # 5 resets bursts
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="http", daemon=True)

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
