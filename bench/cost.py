"""Figure 4: AWS calls the app makes per job, counted in the runtime by the botocore hook of
bench.instrumented_runtime (never estimated)."""
from __future__ import annotations

import time
from collections import Counter
from typing import Any

from .api import FINAL, Api
from .processes import Runtime, wait_until

# Trailing calls of a job (a deferred timeout check's read) land within this long after what they follow.
SETTLE_SECONDS = 2.0
# A job with the default timeout (30 minutes) that ends before it gets no timeout check at all: the
# reconciler sends one on its last pass before the deadline. A timeout of at most two reconcile
# intervals gets its check when the job starts (one SQS message, one read when it is due): the
# short-timeout figure counts those two calls, with this timeout.
SHORT_TIMEOUT = 3
# The counted jobs run a second: on Fargate a task's RUNNING and STOPPED events are seconds apart
# even for a command that exits at once, where the local stand-in of ECS sends both within a few
# milliseconds; handled at the same moment, they cost a refused transaction and a read more.
ONE_SECOND = "sleep 1"


def app_calls(counts: dict[str, Any]) -> dict[str, Any]:
    """The app's calls from a /counts snapshot: total, by service and operation, DynamoDB items."""
    by_operation: Counter[str] = Counter()
    by_entry: Counter[str] = Counter()
    detailed: Counter[str] = Counter()
    errors = items_read = items_written = 0
    read_units = write_units = 0.0
    local: Counter[str] = Counter()
    for row in counts["calls"]:
        name = f"{row['service']}:{row['operation']}"
        if row["origin"] == "app":
            by_operation[name] += row["calls"]
            by_entry[row.get("entry", "-")] += row["calls"]
            detailed[f"{row.get('entry', '-')} {name}"] += row["calls"]
            errors += row["errors"]
            items_read += row["itemsRead"]
            items_written += row["itemsWritten"]
            read_units += row.get("readUnits", 0.0)
            write_units += row.get("writeUnits", 0.0)
        elif row["origin"] == "local":
            local[name] += row["calls"]
    return {"calls": sum(by_operation.values()), "byOperation": dict(sorted(by_operation.items())),
            "byEntry": dict(by_entry.most_common()), "byEntryAndOperation": dict(sorted(detailed.items())),
            "errors": errors, "itemsRead": items_read, "itemsWritten": items_written,
            "readUnits": round(read_units, 2), "writeUnits": round(write_units, 2),
            "localStandInCalls": dict(sorted(local.items()))}


def _idle(runtime: Runtime, job_id: str, executions: int) -> dict[str, Any] | None:
    state = runtime.job_state(job_id)
    if not state.get("found") or state["executionCount"] < executions or state["active"]:
        return None
    if any(e["status"] not in FINAL for e in state["executions"]):
        return None
    return state


def count_job(runtime: Runtime, api: Api, task_id: str, payload: dict[str, Any], executions: int,
              timeout: float = 60) -> dict[str, Any]:
    """Post one job and count the app's calls until it and everything it left pending are done.
    The bench waits through the control server, whose reads are not the app's."""
    runtime.reset_counts()
    accepted = api.post_job(task_id, payload)
    state = wait_until(lambda: _idle(runtime, accepted["jobId"], executions), timeout=timeout, interval=0.1,
                       what=f"job {accepted['jobId']} to end")
    starts = [e["startedAt"] for e in state["executions"] if e["startedAt"]]
    quiet_at = max(starts, default=time.time()) + float(payload.get("timeout", 0)) + SETTLE_SECONDS
    time.sleep(max(SETTLE_SECONDS, quiet_at - time.time()))
    result = app_calls(runtime.counts())
    result["executions"] = [e["status"] for e in state["executions"]]
    result["itemBytes"] = max((e.get("itemBytes") or 0 for e in state["executions"]), default=0)
    result["timelineEntries"] = max((e.get("timelineEntries") or 0 for e in state["executions"]), default=0)
    result["timelineBytes"] = max((e.get("timelineBytes") or 0 for e in state["executions"]), default=0)
    return result


def _task_listed(api: Api, task_id: str) -> None:
    """A task's first job also lists the task (one more atomic ADD, once per task): posted
    before counting, so every counted job is an ordinary one."""
    api.wait_final(api.post_job(task_id, {"image": "ubuntu", "command": "true"})["executionUrl"])


def job_runs_once(runtime: Runtime, samples: int) -> list[dict[str, Any]]:
    api = Api(runtime.api)
    _task_listed(api, "cost-once")
    payload = {"image": "ubuntu", "command": ONE_SECOND}
    return [count_job(runtime, api, "cost-once", payload, executions=1) for _ in range(samples)]


def job_with_short_timeout(runtime: Runtime) -> dict[str, Any]:
    api = Api(runtime.api)
    _task_listed(api, "cost-short")
    payload = {"image": "ubuntu", "command": ONE_SECOND, "timeout": SHORT_TIMEOUT}
    return count_job(runtime, api, "cost-short", payload, executions=1)


def job_retries_twice(runtime: Runtime) -> dict[str, Any]:
    api = Api(runtime.api)
    _task_listed(api, "cost-retries")
    payload = {"image": "ubuntu", "command": f"bash -c '{ONE_SECOND}; exit 1'", "retries": 2}
    # Backoffs of 2 s and 4 s (RETRY_BACKOFF_MIN/FACTOR defaults) before the two retries.
    return count_job(runtime, api, "cost-retries", payload, executions=3, timeout=90)


def _schedule_calls(counts: dict[str, Any]) -> list[str]:
    return [f"{r['service']}:{r['operation']}" for r in counts["calls"]
            if r["origin"] == "app" and r["service"] in ("scheduler", "events")
            and r["operation"].startswith(("Create", "Put"))]


def cron_tick(runtime: Runtime, wait_for_tick: float = 75) -> dict[str, Any]:
    """The calls of one tick of a cron job (`* * * * *`): from the tick to the end of the run it
    starts. Measured only if posting the job creates an EventBridge schedule."""
    api = Api(runtime.api)
    payload = {"image": "ubuntu", "command": ONE_SECOND, "cron": "* * * * *"}
    runtime.reset_counts()
    try:
        accepted = api.post_job("cost-cron", payload)
    except RuntimeError as error:
        return {"implemented": False, "reason": f"posting a cron job was refused ({error})"}
    job_id = accepted["jobId"]
    try:
        time.sleep(1.0)
        created = _schedule_calls(runtime.counts())
        if not created:
            return {"implemented": False,
                    "reason": "scheduling not implemented (posting a cron job made no EventBridge Scheduler call)"}
        runtime.reset_counts()
        try:
            state = wait_until(lambda: _idle(runtime, job_id, 1), timeout=wait_for_tick, interval=0.2,
                               what="the first cron tick to run")
        except TimeoutError:
            return {"implemented": False, "reason": f"a schedule is created ({', '.join(created)}) but no tick "
                                                    f"ran within {wait_for_tick:g} s locally"}
        starts = [e["startedAt"] for e in state["executions"] if e["startedAt"]]
        time.sleep(max(SETTLE_SECONDS, max(starts, default=time.time()) + SETTLE_SECONDS - time.time()))
        result = app_calls(runtime.counts())
        result.update({"implemented": True, "scheduleCalls": created})
        return result
    finally:
        # No more ticks (or schedules) after the figure; not counted.
        api.http.post(f"{api.base}/tasks/cost-cron/jobs/{job_id}/stop", json={}, timeout=30)
