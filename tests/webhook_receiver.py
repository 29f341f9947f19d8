"""A webhook receiver for tests: an HTTP server on 127.0.0.1, in a thread, that records every
request and answers each path from a script (200 when the script is empty)."""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.scripts: dict[str, list[tuple[int, dict[str, str]]]] = {}
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._lock:
                    receiver.requests.append(Received(self.path, dict(self.headers.items()), body, time.time()))
                    script = receiver.scripts.get(self.path) or []
                    status, headers = script.pop(0) if script else (200, {})
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="webhook-receiver", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def answer(self, path: str, *statuses: int, headers: dict[str, str] | None = None) -> None:
        """Answer the next requests to `path` with these statuses, then 200."""
        with self._lock:
            self.scripts[path] = [(status, dict(headers or {})) for status in statuses]

    def received(self, path: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if path is None or r.path == path]

    def start(self) -> Receiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class Stalling:
    """A receiver that holds every connection it accepts, on 127.0.0.1, each in a thread:
    `silent` reads the request and never answers; `dripping` answers its status line one byte
    every `interval` seconds; `dripping-tls` (an https URL) sends its TLS handshake one byte at a
    time, so that each read waits only `interval` but the handshake never completes. Each
    connection ends when the client closes it, when stopped, or after `longest` seconds."""

    MODES = ("silent", "dripping", "dripping-tls")

    def __init__(self, mode: str, interval: float = 0.1, longest: float = 15.0) -> None:
        import socket

        assert mode in self.MODES
        self.mode, self.interval, self.longest = mode, interval, longest
        self.accepted = 0
        self._stop = threading.Event()
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self._listener.settimeout(0.05)  # so that the acceptor sees a stop (closing does not wake accept)
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept, name="stalling-receiver", daemon=True)

    @property
    def url(self) -> str:
        scheme = "https" if self.mode == "dripping-tls" else "http"
        return f"{scheme}://127.0.0.1:{self._listener.getsockname()[1]}"

    def start(self) -> Stalling:
        self._acceptor.start()
        return self

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            thread = threading.Thread(target=self._hold, args=(connection,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _hold(self, connection: Any) -> None:
        with connection:
            connection.settimeout(self.longest)
            try:
                connection.recv(65536)  # the request, or the TLS client hello
            except OSError:
                return
            if self.mode == "silent":
                self._stop.wait(self.longest)
                return
            # A handshake record of 16 KB (type 22, TLS 1.2) or an answer that never ends its headers.
            stream = b"\x16\x03\x03\x40\x00" + b"\x02" * 16384 if self.mode == "dripping-tls" else \
                b"HTTP/1.1 200 OK\r\nX-Slow: " + b"x" * 16384
            ends = time.monotonic() + self.longest
            for byte in stream:
                if self._stop.wait(self.interval) or time.monotonic() > ends:
                    return
                try:
                    connection.sendall(bytes([byte]))
                except OSError:
                    return  # the client gave up

    def stop(self) -> None:
        self._stop.set()
        self._acceptor.join(timeout=5)
        self._listener.close()
        for thread in self._threads:
            thread.join(timeout=5)
