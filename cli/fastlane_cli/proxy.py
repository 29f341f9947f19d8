"""The loopback signing proxy of `fastlane ui`: a browser talks to http://127.0.0.1:<port>, and
each request goes on to the service signed with the command line's credentials (SigV4 from
botocore's chain for an IAM-authorized deployment), so the browser never holds AWS keys.

It answers loopback only, and only its own origin: a request from another address, naming another
Host (DNS rebinding), carrying a foreign Origin, or marked cross-site by the browser
(Sec-Fetch-Site) is refused with 403 before anything is signed, so no other web page can use the
user's credentials through it."""
from __future__ import annotations

import ipaddress
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests

from .auth import Auth
from .errors import CliError

# Request headers passed on to the service; everything else (cookies, the browser's Origin and
# Referer, any Authorization or X-Amz-* of its own, hop-by-hop headers) stays here.
FORWARDED_REQUEST = ("accept", "accept-language", "content-type", "idempotency-key", "if-none-match",
                     "if-modified-since", "x-requested-with", "x-fastlane-client")
# Answer headers passed back to the browser.
FORWARDED_ANSWER = ("content-type", "cache-control", "content-security-policy", "etag", "last-modified",
                    "link", "location", "allow", "x-content-type-options", "referrer-policy", "retry-after")
MAX_BODY = 10 * 1024 * 1024
TIMEOUT = (10, 60)


def _loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%")[0]).is_loopback
    except ValueError:
        return False


class SigningProxy:
    """Serves on 127.0.0.1:`port` (0: a free one) and forwards to `upstream` (the service's URL,
    with its stage path), adding `auth`'s credentials to each request."""

    def __init__(self, upstream: str, auth: Auth, port: int = 0, host: str = "127.0.0.1") -> None:
        if not _loopback(host):
            raise ValueError("the signing proxy listens on a loopback address only")
        self.upstream = upstream.rstrip("/")
        self.auth = auth
        self._local = threading.local()
        proxy = self

        class Handler(_Handler):
            owner = proxy

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.origins = {f"http://127.0.0.1:{self.port}", f"http://localhost:{self.port}"}
        self.hosts = {f"127.0.0.1:{self.port}", f"localhost:{self.port}"}
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread: threading.Thread | None = None

    def session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def refusal(self, client: str, headers: Any) -> str | None:
        """Why a request may not go through, or None."""
        if not _loopback(client):
            return "the signing proxy answers loopback only"
        if (headers.get("Host") or "").lower() not in self.hosts:
            return "the signing proxy answers its own host only (127.0.0.1 or localhost, its port)"
        origin = headers.get("Origin")
        if origin is not None and origin.lower() not in self.origins:
            return "the signing proxy answers its own origin only; another site's requests are refused"
        site = (headers.get("Sec-Fetch-Site") or "").lower()
        if site and site not in ("same-origin", "none"):
            return "the signing proxy refuses requests a browser marks as cross-site"
        return None

    def rewrite(self, text: str) -> str:
        """The service's absolute URLs made to point back through the proxy."""
        return text.replace(self.upstream, self.url)

    def start(self) -> SigningProxy:
        self._thread = threading.Thread(target=self.server.serve_forever, name="fastlane-ui-proxy", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.server.serve_forever()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Handler(BaseHTTPRequestHandler):
    owner: SigningProxy
    protocol_version = "HTTP/1.1"
    server_version = "fastlane-ui-proxy"

    def log_message(self, format: str, *args: Any) -> None:
        return  # quiet: the terminal shows only what `fastlane ui` says

    def _answer(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _refuse(self, status: int, message: str) -> None:
        body = json.dumps({"error": message, "operation": "proxy"}).encode()
        self.close_connection = True
        self._answer(status, body, {"Content-Type": "application/json", "Cache-Control": "no-store"})

    def _forward(self) -> None:
        proxy = self.owner
        refused = proxy.refusal(self.client_address[0], self.headers)
        if refused:
            self._refuse(403, refused)
            return
        if not self.path.startswith("/") or self.path.startswith("//"):
            self._refuse(400, "the signing proxy takes paths only, not URLs")
            return
        length_header = self.headers.get("Content-Length") or "0"
        if self.headers.get("Transfer-Encoding") or not length_header.isdigit() or int(length_header) > MAX_BODY:
            self._refuse(411 if self.headers.get("Transfer-Encoding") else 413,
                         "send a body of at most 10 MB with its Content-Length")
            return
        body = self.rfile.read(int(length_header)) if int(length_header) else b""
        url = proxy.upstream + self.path
        headers = {name: value for name, value in self.headers.items() if name.lower() in FORWARDED_REQUEST}
        try:
            signed = proxy.auth.sign(self.command, url, headers, body)
            response = proxy.session().request(self.command, url, data=body or None, headers=signed, timeout=TIMEOUT,
                                               allow_redirects=False, stream=False, auth=lambda r: r)
        except requests.RequestException as error:
            self._refuse(502, f"the service at {proxy.upstream} could not be reached: {error.__class__.__name__}")
            return
        except CliError as error:  # e.g. no AWS credentials: the browser is told, the proxy goes on
            self._refuse(502, f"the signing proxy could not sign the request: {error.message}")
            return
        answer = {name: value for name, value in response.headers.items() if name.lower() in FORWARDED_ANSWER}
        for name in ("Link", "Location"):
            if name in answer:
                answer[name] = proxy.rewrite(answer[name])
        content = response.content
        kind = response.headers.get("Content-Type", "")
        if kind.startswith(("application/json", "text/")):
            content = proxy.rewrite(content.decode("utf-8", errors="replace")).encode("utf-8")
        for name, value in response.headers.items():
            if name.lower().startswith("fastlane-"):
                answer[name] = value
        self._answer(response.status_code, content, answer)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _forward
