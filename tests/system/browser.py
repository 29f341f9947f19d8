"""Headless Chromium driven over its DevTools protocol (with the websockets library), for the
tests of the HTML pages. `ensure_chromium` installs Debian's `chromium` when it is missing and
this machine can (root with apt-get), as `make test` does; the tests skip only when it cannot."""
from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser")


def find_chromium() -> str | None:
    for candidate in CANDIDATES:
        path = candidate if os.path.isabs(candidate) and os.access(candidate, os.X_OK) else shutil.which(candidate)
        if path:
            return path
    return None


def ensure_chromium() -> tuple[str | None, str]:
    """The browser's path, or None and why it could not be installed."""
    found = find_chromium()
    if found:
        return found, ""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return None, "chromium is not installed and this user cannot install it with apt-get (not root, or no apt)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    steps = (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", "chromium"])
    for step in steps:
        done = subprocess.run(step, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            return None, f"`{' '.join(step)}` failed: {(done.stderr or done.stdout).strip()[-300:]}"
    found = find_chromium()
    return (found, "") if found else (None, "apt-get installed chromium but no chromium binary was found")


class Browser:
    """One headless Chromium with one page; stopped by its process group id."""

    def __init__(self, executable: str, url: str) -> None:
        self.profile = Path(tempfile.mkdtemp(prefix="fastlane-chromium-"))
        self.process = subprocess.Popen(
            [executable, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-dev-shm-usage", f"--user-data-dir={self.profile}", "--remote-debugging-port=0",
             "--remote-debugging-address=127.0.0.1", url],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        self._ids = itertools.count(1)
        self._socket: Any = None

    def _devtools_port(self, timeout: float = 30.0) -> int:
        marker = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"chromium exited with {self.process.returncode}")
            if marker.exists():
                text = marker.read_text().split()
                if text:
                    return int(text[0])
            time.sleep(0.1)
        raise RuntimeError("chromium did not open its DevTools port")

    def attach(self) -> None:
        from websockets.sync.client import connect

        port = self._devtools_port()
        deadline = time.monotonic() + 30
        while True:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as answer:
                pages = [t for t in json.load(answer) if t.get("type") == "page"]
            if pages or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        if not pages:
            raise RuntimeError("chromium has no page")
        self._socket = connect(pages[0]["webSocketDebuggerUrl"], max_size=None, open_timeout=10)

    def evaluate(self, expression: str) -> Any:
        """The JSON value of a JavaScript expression in the page."""
        call_id = next(self._ids)
        self._socket.send(json.dumps({"id": call_id, "method": "Runtime.evaluate",
                                      "params": {"expression": expression, "returnByValue": True}}))
        while True:
            message = json.loads(self._socket.recv(timeout=10))
            if message.get("id") == call_id:
                result = message.get("result", {})
                if "exceptionDetails" in result:
                    details = result["exceptionDetails"]
                    raise RuntimeError((details.get("exception") or {}).get("description") or details.get("text"))
                return result.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float = 30.0) -> Any:
        """Until the expression is true (the page may still be loading: errors are retried)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = self.evaluate(expression)
                if value:
                    return value
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out waiting for {expression}")
            time.sleep(0.1)

    def close(self) -> None:
        if self._socket is not None:
            try:
                self._socket.close()
            except Exception:  # noqa: BLE001 - the browser is killed next anyway
                pass
        # Chromium's helpers (zygote, renderers) share its process group, which is its pid.
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.process.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # helpers that outlived the browser
        except ProcessLookupError:
            pass
        shutil.rmtree(self.profile, ignore_errors=True)
