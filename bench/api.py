"""Small HTTP client for the service's API, as a user drives it."""
from __future__ import annotations

import time
from typing import Any

import requests

FINAL = {"done", "failed", "timedout", "expired", "stopped"}
TRIVIAL = {"image": "ubuntu", "command": "true"}


class Api:
    """One keep-alive connection; use one instance per thread."""

    def __init__(self, base: str, timeout: float = 60) -> None:
        self.base = base.rstrip("/")
        self.timeout = timeout
        self.http = requests.Session()

    def post_job(self, task_id: str, payload: dict[str, Any]) -> dict[str, Any]:
        response = self.http.post(f"{self.base}/tasks/{task_id}", json=payload, timeout=self.timeout)
        if response.status_code != 200:
            raise RuntimeError(f"POST /tasks/{task_id}: {response.status_code} {response.text[:300]}")
        return response.json()

    def get(self, url: str, **params: Any) -> requests.Response:
        absolute = url if url.startswith("http") else self.base + url
        return self.http.get(absolute, params=params or None, timeout=self.timeout)

    def execution(self, url: str) -> dict[str, Any]:
        response = self.get(url)
        response.raise_for_status()
        return response.json()["execution"]

    def wait_final(self, execution_url: str, timeout: float = 60,
                   interval: float = 0.005) -> tuple[dict[str, Any], float]:
        """Poll an execution until it has ended; returns it and the wall-clock time at which the
        answer that first showed it ended was received."""
        deadline = time.monotonic() + timeout
        while True:
            execution = self.execution(execution_url)
            seen = time.time()
            if execution["status"] in FINAL:
                return execution, seen
            if time.monotonic() > deadline:
                raise TimeoutError(f"execution still {execution['status']} after {timeout:g} s: {execution_url}")
            time.sleep(interval)

    def status(self) -> dict[str, Any]:
        response = self.get("/status")
        response.raise_for_status()
        return response.json()

    def ended_count(self) -> int:
        """Executions ended so far, from the farm status counters."""
        executions = self.status()["executions"]
        return sum(int(executions.get(s, 0)) for s in FINAL)
