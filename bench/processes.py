"""The processes the bench starts (the instrumented runtime, redis-server, RQ workers), each on free
loopback ports and each stopped by its own pid."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import requests

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def wait_until(check: Callable[[], T | None], timeout: float, interval: float = 0.05, what: str = "a condition") -> T:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


@dataclass
class Started:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def tail(self, size: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-size:]
        except OSError:
            return ""

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM to this pid, then SIGKILL if it has not ended within `grace` seconds."""
        if self.process.poll() is not None:
            return
        try:
            os.kill(self.pid, signal.SIGTERM)
            self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.kill(self.pid, signal.SIGKILL)
            self.process.wait(timeout=5)
        except ProcessLookupError:
            pass


def spawn(name: str, argv: list[str], log_dir: Path, env: dict[str, str] | None = None) -> Started:
    log = log_dir / f"{name}.log"
    process = subprocess.Popen(argv, cwd=ROOT, env=env or dict(os.environ), stdin=subprocess.DEVNULL,
                               stdout=log.open("wb"), stderr=subprocess.STDOUT)
    return Started(name, process, log)


@dataclass
class Runtime:
    """The instrumented local runtime: the API and the control server of bench.instrumented_runtime."""

    started: Started
    api: str
    control: str
    backend: str = "local"

    def counts(self) -> dict[str, Any]:
        response = requests.get(f"{self.control}/counts", timeout=30)
        response.raise_for_status()
        return response.json()

    def reset_counts(self) -> None:
        requests.post(f"{self.control}/reset", timeout=30).raise_for_status()

    def job_state(self, job_id: str) -> dict[str, Any]:
        response = requests.get(f"{self.control}/job", params={"jobId": job_id}, timeout=30)
        response.raise_for_status()
        return response.json()

    def control_post(self, path: str, timeout: float = 300, **params: Any) -> dict[str, Any]:
        response = requests.post(f"{self.control}{path}", params=params, timeout=timeout)
        if response.status_code != 200:
            raise RuntimeError(f"control {path}: {response.text}")
        return response.json()

    def pids(self) -> list[int]:
        """The runtime's own processes: its engine and the HTTP fronts it started (not the jobs')."""
        found = [self.started.pid]
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                if parent == self.started.pid and b"infra.local.fronts" in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue  # gone meanwhile
        return found

    def rss_kib(self, field: str = "VmRSS") -> int:
        """`field` of /proc/<pid>/status summed over the runtime's processes (VmHWM: the sum of
        each one's peak, at least the peak of the sum)."""
        total = 0
        for pid in self.pids():
            try:
                lines = Path(f"/proc/{pid}/status").read_text().splitlines()
            except OSError:
                continue
            total += next(int(line.split()[1]) for line in lines if line.startswith(field + ":"))
        return total

    def reset_peak_rss(self) -> bool:
        """Reset VmHWM to the current RSS (Linux: write 5 to clear_refs) in each of the runtime's
        processes; False where not allowed."""
        try:
            for pid in self.pids():
                Path(f"/proc/{pid}/clear_refs").write_text("5")
            return True
        except OSError:
            return False


# A pool with a limit for the throughput figure; every other task runs unbounded.
POOLS = '[{"name": "bench", "match": "bench-.*", "maxRunning": 16}, {"name": "default", "match": ".*"}]'


def start_runtime(log_dir: Path, name: str = "runtime", backend: str = "local",
                  count_sqlite: bool = False) -> Runtime:
    """A fresh instrumented runtime (empty tables and queues: a new state file in `log_dir` for
    the local backend, moto's server started by the runtime for the aws one), with the bench's
    pools and every other setting at its default but the local cron tick (the reconciler runs: its
    calls are counted apart)."""
    port, control = free_port(), free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "POOLS": POOLS,
           # The cron figure waits for one tick: every 30 s locally instead of on the minute (the
           # app's path for a tick is the same; docs/scheduling.md).
           "LOCAL_CRON_TICK_SECONDS": "30"}
    env.pop("AWS_ENDPOINT_URL", None)
    argv = [sys.executable, "-m", "bench.instrumented_runtime", "--port", str(port), "--control-port", str(control),
            "--backend", backend]
    if backend == "local":
        argv += ["--state", str(log_dir / f"{name}.db")]
    if count_sqlite:
        argv.append("--count-sqlite")
        # Counted in this one process: the routes' statements too, which HTTP fronts would run elsewhere.
        env["LOCAL_HTTP_PROCESSES"] = "0"
    started = spawn(name, argv, log_dir, env)
    runtime = Runtime(started, f"http://{HOST}:{port}", f"http://{HOST}:{control}", backend)
    wait_healthy(started, runtime.api, "the local runtime", timeout=90, interval=0.2)
    return runtime


def wait_healthy(started: Started, base: str, what: str, timeout: float, interval: float) -> None:
    """Until `base`/healthcheck answers 200; a process that exits first, or never answers, is
    stopped and the failure raised with the end of its log."""

    def healthy() -> bool:
        if not started.alive():
            raise RuntimeError(f"{what} exited: {started.tail()}")
        try:
            return requests.get(f"{base}/healthcheck", timeout=5).status_code == 200
        except requests.RequestException:
            return False

    try:
        wait_until(healthy, timeout=timeout, interval=interval, what=f"{what} to answer")
    except BaseException:
        started.stop()
        raise


def start_redis(log_dir: Path) -> tuple[Started, str]:
    """redis-server on a free loopback port, nothing persisted."""
    import redis

    port = free_port()
    started = spawn("redis", ["redis-server", "--port", str(port), "--bind", HOST, "--save", "",
                              "--appendonly", "no", "--protected-mode", "yes"], log_dir)
    url = f"redis://{HOST}:{port}/0"

    def answers() -> bool:
        if not started.alive():
            raise RuntimeError(f"redis-server exited: {started.tail()}")
        try:
            return bool(redis.Redis.from_url(url).ping())
        except redis.RedisError:
            return False

    try:
        wait_until(answers, timeout=20, interval=0.1, what="redis-server")
    except BaseException:
        started.stop()
        raise
    return started, url
