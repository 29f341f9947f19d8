"""Figures 2 and 3 on the service: control-plane latency of a trivial job, and throughput of a batch."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .api import TRIVIAL, Api
from .processes import Runtime

# Pause between two polls of an execution. Each poll of the service is two emulated DynamoDB reads,
# and polling harder slows the very job being watched; RQ is polled the same way.
POLL_SECONDS = 0.02


def latency(runtime: Runtime, samples: int, streams: int = 2, task_id: str = "latency") -> dict[str, Any]:
    """Trivial jobs, `streams` at a time, each polled back to back until it has ended. In ms:
    createdAt -> startedAt, and finishedAt (the process exit, as the ECS stand-in reports it) -> the
    first API answer showing `done`."""
    to_running: list[float] = []
    to_visible: list[float] = []
    not_done: list[str] = []
    lock = threading.Lock()

    def stream(count: int) -> None:
        api = Api(runtime.api)
        for _ in range(count):
            accepted = api.post_job(task_id, TRIVIAL)
            execution, seen = api.wait_final(accepted["executionUrl"], interval=POLL_SECONDS)
            with lock:
                if execution["status"] != "done" or not execution["startedAt"] or not execution["finishedAt"]:
                    not_done.append(execution["status"])
                    continue
                to_running.append((execution["startedAt"] - execution["createdAt"]) * 1000)
                to_visible.append((seen - execution["finishedAt"]) * 1000)

    run_streams(stream, samples, streams)
    return {"acceptedToRunningMs": to_running, "exitToDoneVisibleMs": to_visible, "notDone": not_done,
            "streams": streams}


def run_streams(work: Callable[[int], None], samples: int, streams: int) -> None:
    """`samples` split over `streams` threads; the first error of any of them is raised."""
    errors: list[BaseException] = []

    def guarded(count: int) -> None:
        try:
            work(count)
        except BaseException as error:  # noqa: BLE001 - raised below, in the caller's thread
            errors.append(error)

    threads = [threading.Thread(target=guarded, args=(samples // streams + (1 if n < samples % streams else 0),))
               for n in range(streams)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def throughput(runtime: Runtime, jobs: int, clients: int, cap_seconds: float) -> dict[str, Any]:
    """`jobs` trivial jobs posted by `clients` threads, each to its own task (`bench-tp-<n>`, in the
    pool limited to 16 running), so the clients do not contend on one task's counter. Completion is
    read from the farm status counters; past `cap_seconds` from the first post the bench stops
    waiting and reports the rate of what had ended (the bench must end in minutes)."""
    watcher = Api(runtime.api)
    base = watcher.ended_count()
    posted = post_batch(runtime.api, jobs, clients)
    started, accepted = posted.started, len(posted.post_ms)
    ended = 0
    while True:
        ended = watcher.ended_count() - base
        if ended >= accepted or time.monotonic() - started > cap_seconds:
            break
        time.sleep(0.1)
    done = time.monotonic()
    return {"jobs": jobs, "clients": clients, "accepted": accepted, "postErrors": posted.errors[:5],
            "postErrorCount": len(posted.errors), "ended": ended, "capped": ended < accepted,
            "capSeconds": cap_seconds, "enqueueSeconds": posted.seconds, "completeSeconds": done - started,
            "enqueuesPerSecond": accepted / posted.seconds, "jobsPerSecond": ended / (done - started),
            "postMs": posted.post_ms, "executionsAfter": watcher.status()["executions"]}


@dataclass
class Posted:
    """What a batch of posts came to: each accepted post's latency (ms), the refused or failed
    ones' errors, and the monotonic times of the first post and of the last answer."""

    post_ms: list[float]
    errors: list[str]
    started: float
    ended: float

    @property
    def seconds(self) -> float:
        return self.ended - self.started


def post_batch(base: str, jobs: int, clients: int, body: dict[str, Any] | None = None) -> Posted:
    """`jobs` jobs (TRIVIAL unless `body`) posted to `base` by `clients` threads, a keep-alive
    session each, each client to its own task (`bench-tp-<n>`); a post answered other than 200 or
    not answered is counted, not fatal. The same loop posts to the service (figure 3a) and to the
    peer (bench.peer), so both rates are measured alike."""
    payload = TRIVIAL if body is None else body
    shares = [jobs // clients + (1 if n < jobs % clients else 0) for n in range(clients)]
    errors: list[str] = []
    post_ms: list[float] = []
    lock = threading.Lock()

    def client(n: int, count: int) -> None:
        api = Api(base)
        for _ in range(count):
            sent = time.monotonic()
            try:
                api.post_job(f"bench-tp-{n}", payload)
            except Exception as error:  # noqa: BLE001 - a refused or timed-out post is counted, not fatal
                with lock:
                    errors.append(f"{type(error).__name__}: {error}"[:200])
                continue
            with lock:
                post_ms.append((time.monotonic() - sent) * 1000)

    threads = [threading.Thread(target=client, args=(n, share)) for n, share in enumerate(shares)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return Posted(post_ms, errors, started, time.monotonic())


def bounds(runtime: Runtime, requests: int, clients: int) -> dict[str, Any]:
    """What bounds the enqueue rate, measured the same way from the same `clients` threads: a GET
    of a path no route has (the HTTP stand-in, the app's router, the 404: no store touched), and
    posts of jobs that start in two hours (the post's durable write and schedule, with no job
    launched meanwhile). Each a rate over its whole batch."""

    def rate(call: Callable[[Api, int], None]) -> float:
        def work(count: int) -> None:
            api = Api(runtime.api)
            for n in range(count):
                call(api, n)

        started = time.monotonic()
        run_streams(work, requests, clients)
        return requests / (time.monotonic() - started)

    def unknown(api: Api, n: int) -> None:
        response = api.get(f"/no-such-route-{n % 10}")
        if response.status_code != 404:
            raise RuntimeError(f"GET of an unknown path: {response.status_code}")

    later = {**TRIVIAL, "startIn": "2h"}
    return {"requests": requests, "clients": clients,
            "notFoundPerSecond": rate(unknown),
            "laterPostsPerSecond": rate(lambda api, n: api.post_job(f"bench-later-{n % clients}", later))}
