"""Figure 6: how late a job posted with `startIn` starts, against its due time."""
from __future__ import annotations

import time
from functools import partial
from typing import Any

from .api import Api
from .processes import Runtime, wait_until

PROBE_WAIT_SECONDS = 4.0


def probe(runtime: Runtime) -> str | None:
    """None when a `startIn` job runs; otherwise why the figure cannot be measured."""
    api = Api(runtime.api)
    try:
        accepted = api.post_job("schedule-probe", {"image": "ubuntu", "command": "true", "startIn": "1s"})
    except RuntimeError as error:
        return f"posting a startIn job was refused ({error})"
    if accepted.get("executionId"):
        return None
    time.sleep(PROBE_WAIT_SECONDS)
    if runtime.job_state(accepted["jobId"]).get("executionCount", 0) > 0:
        return None
    return "scheduling not implemented (a startIn job is stored with executionId null and never runs)"


def _started(runtime: Runtime, job_id: str) -> tuple[float, float] | None:
    """(the job's createdAt, its first execution's startedAt) once it has started."""
    state = runtime.job_state(job_id)
    for execution in state.get("executions", []):
        if execution.get("startedAt"):
            return state["createdAt"], execution["startedAt"]
    return None


def lateness(runtime: Runtime, delays: tuple[int, ...], samples: int, spacing: float = 0.05,
             grace: float = 30) -> dict[str, Any]:
    """`samples` jobs per delay, posted `spacing` s apart (interleaved, so their starts do not all
    fall at once); each one's startedAt minus its due time (the job's createdAt + startIn), in ms.
    A job not started `grace` s after the last one was due is counted as not started."""
    api = Api(runtime.api)
    posted: list[tuple[int, str]] = []
    for _ in range(samples):
        for delay in delays:
            accepted = api.post_job(f"schedule-{delay}s", {"image": "ubuntu", "command": "true",
                                                            "startIn": f"{delay}s"})
            posted.append((delay, accepted["jobId"]))
            time.sleep(spacing)
    late: dict[str, list[float]] = {f"{delay}s": [] for delay in delays}
    not_started: dict[str, int] = {f"{delay}s": 0 for delay in delays}
    deadline = time.monotonic() + max(delays) + grace
    for delay, job_id in posted:
        try:
            created, started = wait_until(partial(_started, runtime, job_id),
                                   timeout=max(0.5, deadline - time.monotonic()), interval=0.2,
                                   what=f"scheduled job {job_id} to start")
        except TimeoutError:
            not_started[f"{delay}s"] += 1
            continue
        late[f"{delay}s"].append((started - (created + delay)) * 1000)
    return {"lateMs": late, "notStarted": not_started, "graceSeconds": grace}
