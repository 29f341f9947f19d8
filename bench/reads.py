"""Figure 5: pages of large lists (10,000 tasks; a job with 1,000 executions), with the work each
request did, counted in the runtime: DynamoDB items read on the aws backend, SQLite
virtual-machine steps on the local one."""
from __future__ import annotations

import time
from typing import Any

from .api import TRIVIAL, Api
from .cost import app_calls
from .processes import Runtime


def seed(runtime: Runtime, tasks: int, executions: int) -> dict[str, Any]:
    """One real job (run through the API) given `executions - 1` more finished executions, and
    `tasks` tasks, both written through the app's store code inside the runtime."""
    api = Api(runtime.api)
    accepted = api.post_job("reads", TRIVIAL)
    api.wait_final(accepted["executionUrl"])
    started = time.monotonic()
    seeded_executions = runtime.control_post("/seed-executions", jobId=accepted["jobId"], count=executions - 1)
    seeded_tasks = runtime.control_post("/seed-tasks", count=tasks)
    return {"jobUrl": accepted["jobUrl"], "jobId": accepted["jobId"], "tasks": seeded_tasks,
            "executions": seeded_executions, "seedSeconds": time.monotonic() - started}


def measure_page(runtime: Runtime, api: Api, url: str, samples: int) -> dict[str, Any]:
    """`samples` GETs of one page, one at a time, each with its own count of the app's work
    (`itemsRead`: DynamoDB items, or SQLite steps on the local backend)."""
    latencies: list[float] = []
    items: list[int] = []
    calls: list[int] = []
    for _ in range(samples):
        runtime.reset_counts()
        sent = time.perf_counter()
        response = api.get(url)
        elapsed = (time.perf_counter() - sent) * 1000
        response.raise_for_status()
        counts = runtime.counts()
        counted = app_calls(counts)
        latencies.append(elapsed)
        items.append(counts.get("sqliteSteps", {}).get("app", 0) if runtime.backend == "local"
                     else counted["itemsRead"])
        calls.append(counted["calls"])
    return {"url": url, "latencyMs": latencies, "itemsRead": items, "calls": calls}


def pages(runtime: Runtime, seeded: dict[str, Any], samples: int) -> dict[str, dict[str, Any]]:
    api = Api(runtime.api)
    results: dict[str, dict[str, Any]] = {}
    task_pages = api.get("/tasks").json()["pages"]
    job_pages = api.get(seeded["jobUrl"]).json()["pages"]
    for name, url, count in (("tasks", "/tasks", task_pages), ("job", seeded["jobUrl"], job_pages)):
        for where, page in (("first", 1), ("middle", max(1, count // 2)), ("last", count)):
            results[f"{name}:{where}"] = {"page": page, "pages": count,
                                          **measure_page(runtime, api, f"{url}?page={page}", samples)}
    return results
