"""Runs every figure in turn, each against processes it starts and stops itself, and turns the
results into the rows of one table."""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import cold_start, control_plane, cost, logs, reads, rq_reference, scheduling
from .processes import ROOT, Runtime, start_redis, start_runtime
from .report import Row, Summary, failed, not_measured, ratio, table, write_json

RESULTS = ROOT / "bench" / "results"
SERVICES = {"dynamodb": "DynamoDB", "sqs": "SQS", "ecs": "ECS", "logs": "CloudWatch Logs",
            "scheduler": "EventBridge Scheduler", "events": "EventBridge", "secretsmanager": "Secrets Manager"}


@dataclass(frozen=True)
class Plan:
    """Sample counts. --quick shrinks them to try the bench out; the figures of record use the full plan."""

    import_runs: int = 7
    latency_samples: int = 200
    latency_streams: int = 2  # clients polling at once: small, so the figure is about one job's path
    throughput_jobs: int = 500
    throughput_clients: int = 8
    throughput_cap_seconds: float = 120
    cost_samples: int = 3
    seed_tasks: int = 10_000
    seed_executions: int = 1_000
    read_samples: int = 10
    schedule_samples: int = 50
    log_bytes: int = logs.TOTAL_BYTES
    rq_workers: int = os.cpu_count() or 2  # one per core

    @classmethod
    def quick(cls) -> Plan:
        return cls(import_runs=3, latency_samples=20, throughput_jobs=80, throughput_cap_seconds=60, cost_samples=1,
                   seed_tasks=1_000, seed_executions=100, read_samples=5, schedule_samples=5,
                   log_bytes=5 * 1024 * 1024)


def say(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def guarded(key: str, figure: str, target: str, measure: Callable[[], list[Row]]) -> list[Row]:
    """A figure that breaks becomes a row saying so; the other figures still run."""
    started = time.monotonic()
    try:
        return measure()
    except Exception as error:  # noqa: BLE001 - printed in the table, with the log directory
        say(f"figure {key} failed: {type(error).__name__}: {error}")
        return [failed(key, figure, error, target)]
    finally:
        say(f"figure {key}: {time.monotonic() - started:.0f} s")


@contextmanager
def runtime_process(log_dir: Path, name: str) -> Iterator[Runtime]:
    say(f"starting a fresh local runtime ({name})")
    runtime = start_runtime(log_dir, name)
    try:
        yield runtime
    finally:
        runtime.started.stop()


# 1 ----------------------------------------------------------------------------------------------


def figure_cold_start(plan: Plan) -> list[Row]:
    say("1: import time of the app, and the Lambda package")
    imports = cold_start.import_times(plan.import_runs)
    package = cold_start.package_size(import_runs=plan.import_runs)
    runs = f"{imports['runs']}+{imports['runs']} runs"
    over = imports["appOverBareMs"]
    rows = [
        Row("1a", "cold start: `import app` in a fresh interpreter, minus a bare one (median)", f"{over:.0f}", "ms",
            runs, "≤ 300 ms", over <= 300, data=imports),
        Row("1b", "  same, with the first request's imports (boto3, PynamoDB store, engine)",
            f"{imports['appFirstUseOverBareMs']:.0f}", "ms", runs),
    ]
    if package.get("packagedImportOverBareMs") is not None:
        rows.append(Row("1c", "  `import app` from the built package, no bytecode (as on Lambda)",
                        f"{package['packagedImportOverBareMs']:.0f}", "ms", f"{package['importRuns']} runs"))
    largest = ", ".join(f"{name} {size:.1f}" for name, size in list(package["largest"].items())[:3])
    rows.append(Row("1d", f"Lambda package unzipped, without boto3/botocore (largest: {largest})",
                    f"{package['shippedMB']:.1f}", "MB", "1 build", "≤ 15 MB", package["shippedMB"] <= 15,
                    data=package))
    return rows


# the RQ reference ---------------------------------------------------------------------------------


def rq_figures(plan: Plan, log_dir: Path) -> dict[str, Any]:
    """Figures 2 and 3 through RQ; {"error": why} when the reference cannot run."""
    if shutil.which("redis-server") is None:
        return {"error": "redis-server is not installed"}
    try:
        import redis  # noqa: F401
        import rq  # noqa: F401
    except ImportError as error:
        return {"error": f"{error.name} is not installed (requirements-bench.txt)"}
    say(f"reference: RQ with {plan.rq_workers} workers on a local redis-server")
    redis_server, url = start_redis(log_dir)
    try:
        cluster = rq_reference.start_workers(url, plan.rq_workers, log_dir)
        try:
            latency = rq_reference.latency(cluster, plan.latency_samples, plan.latency_streams)
            throughput = rq_reference.throughput(cluster, plan.throughput_jobs, plan.throughput_clients)
        finally:
            cluster.stop()
    except Exception as error:  # noqa: BLE001 - the service's figures are printed without the reference
        say(f"the RQ reference failed: {error}")
        return {"error": f"{type(error).__name__}: {error}"[:160]}
    finally:
        redis_server.stop()
    return {"latency": latency, "throughput": throughput, "workers": plan.rq_workers}


# 2 and 3 ------------------------------------------------------------------------------------------


def figure_latency(runtime: Runtime, plan: Plan, reference: dict[str, Any]) -> list[Row]:
    say(f"2: control-plane latency, {plan.latency_samples} trivial jobs, {plan.latency_streams} at a time")
    runtime.reset_counts()
    ours = control_plane.latency(runtime, plan.latency_samples, plan.latency_streams)
    counts = runtime.counts()
    calls = [row for row in counts["calls"] if row["origin"] == "app"]
    local = [row for row in counts["calls"] if row["origin"] == "local"]
    rows = []
    first = f"accepted → running (createdAt → startedAt), trivial job, {plan.latency_streams} clients"
    for key, name, label in (("2a", "acceptedToRunningMs", first),
                             ("2b", "exitToDoneVisibleMs", "container exit → `done` seen by polling the API")):
        summary = Summary.of(ours[name])
        row = Row(key, label, summary.text(), "ms", str(summary.n), "p50 ≤ 150 ms", summary.p50 <= 150,
                  data={"ours": ours[name], "notDone": ours["notDone"]})
        if "latency" in reference:
            theirs = Summary.of(reference["latency"][name])
            row.reference, row.ratio = theirs.text(), f"{ratio(summary.p50, theirs.p50)} (p50)"
            row.data["rq"] = reference["latency"][name]
        else:
            row.reference = f"n/a: {reference.get('error')}"
        rows.append(row)
    count = sum(row["calls"] for row in calls)
    mean_ms = sum(row["seconds"] for row in calls) / max(1, count) * 1000
    slowest = max((row["maxSeconds"] for row in calls), default=0) * 1000
    rows.append(Row("2c", f"  one emulated AWS call made by the app during 2 (moto, in the runtime): mean "
                          f"(max {slowest:.0f})", f"{mean_ms:.1f}", "ms", str(count), data={"calls": calls}))
    window = counts["at"] - counts["since"]
    local_count = sum(row["calls"] for row in local)
    busiest = sorted(local, key=lambda row: -row["calls"])[:3]
    named = ", ".join(f"{row['service']}:{row['operation']} {row['calls'] / window:.1f}" for row in busiest)
    rows.append(Row("2d", f"  the local stand-ins' own calls to moto meanwhile ({named})",
                    f"{local_count / window:.1f}", "calls/s", str(local_count),
                    data={"calls": local, "seconds": window}))
    return rows


def figure_throughput(runtime: Runtime, plan: Plan, reference: dict[str, Any]) -> list[Row]:
    say(f"3: throughput, {plan.throughput_jobs} jobs from {plan.throughput_clients} clients "
        f"(waiting at most {plan.throughput_cap_seconds:g} s)")
    ours = control_plane.throughput(runtime, plan.throughput_jobs, plan.throughput_clients,
                                    plan.throughput_cap_seconds)
    theirs = reference.get("throughput")
    refused = f", {ours['postErrorCount']} posts failed" if ours["postErrorCount"] else ""
    enqueue = Row("3a", f"enqueue rate: {plan.throughput_jobs} trivial jobs posted by {plan.throughput_clients} "
                        f"concurrent clients{refused}", f"{ours['enqueuesPerSecond']:.1f}", "requests/s",
                  str(ours["accepted"]), "≥ 100/s", ours["enqueuesPerSecond"] >= 100, data=ours)
    capped = (f" (capped: {ours['ended']} of {ours['accepted']} ended in {ours['capSeconds']:g} s)"
              if ours["capped"] else "")
    complete = Row("3b", "completion rate, pool maxRunning 16: first post → last job ended",
                   f"{ours['jobsPerSecond']:.1f}{capped}", "jobs/s", str(ours["ended"]), "≥ 25/s",
                   ours["jobsPerSecond"] >= 25)
    if theirs:
        enqueue.reference = f"{theirs['enqueuesPerSecond']:.0f}"
        enqueue.ratio = ratio(ours["enqueuesPerSecond"], theirs["enqueuesPerSecond"])
        complete.reference = f"{theirs['jobsPerSecond']:.1f} ({reference['workers']} workers)"
        complete.ratio = ratio(ours["jobsPerSecond"], theirs["jobsPerSecond"])
        complete.data["rq"] = theirs
    else:
        enqueue.reference = complete.reference = f"n/a: {reference.get('error')}"
    return [enqueue, complete]


# 4 ----------------------------------------------------------------------------------------------


def _cost_rows(key: str, label: str, counted: list[dict[str, Any]], target: int | None,
               per: str = "job") -> list[Row]:
    totals = [c["calls"] for c in counted]
    median = statistics.median(totals)
    shown = min(counted, key=lambda c: abs(c["calls"] - median))
    spread = f" (min {min(totals)}, max {max(totals)})" if min(totals) != max(totals) else ""
    n = f"{len(counted)} {per}" + ("s" if len(counted) > 1 else "")
    rows = [Row(key, label + spread, f"{median:g}", f"calls/{per}", n, f"≤ {target}" if target else "",
                (median <= target) if target else None, data={"jobs": counted})]
    by_service: dict[str, list[tuple[str, int]]] = {}
    for name, calls in shown["byOperation"].items():
        service, operation = name.split(":", 1)
        by_service.setdefault(service, []).append((operation, calls))
    for service, operations in by_service.items():
        detail = ", ".join(f"{op} {calls}" for op, calls in operations)
        rows.append(Row(key, f"  {SERVICES.get(service, service)}: {detail}",
                        str(sum(calls for _, calls in operations)), "calls", n))
    entries = ", ".join(f"{entry} {calls}" for entry, calls in shown["byEntry"].items())
    rows.append(Row(key, f"  by entry point of app.py: {entries}", str(shown["calls"]), "calls", n))
    rows.append(Row(key, "  DynamoDB items read / written", f"{shown['itemsRead']} / {shown['itemsWritten']}",
                    f"items/{per}", n))
    return rows


def figure_cost(runtime: Runtime, plan: Plan) -> list[Row]:
    say("4: AWS calls per job, counted in the runtime")
    rows = guarded("4a", "AWS calls by the app: a job that runs once", "≤ 12", lambda: _cost_rows(
        "4a", "AWS calls by the app: a job that runs once (`true`, no notifications)",
        cost.job_runs_once(runtime, plan.cost_samples), 12))
    rows += guarded("4b", "AWS calls by the app: a job that fails and retries twice", "", lambda: _cost_rows(
        "4b", "AWS calls by the app: a job that fails and retries twice (3 runs of `false`)",
        [cost.job_retries_twice(runtime)], None))

    def cron() -> list[Row]:
        tick = cost.cron_tick(runtime)
        if not tick.get("implemented"):
            return [not_measured("4c", "AWS calls by the app: one cron tick", tick["reason"])]
        return _cost_rows("4c", "AWS calls by the app: one cron tick and the run it starts", [tick], None, "tick")

    rows += guarded("4c", "AWS calls by the app: one cron tick", "", cron)
    return rows


# 5 ----------------------------------------------------------------------------------------------


def figure_reads(runtime: Runtime, plan: Plan) -> list[Row]:
    say(f"5: pages of {plan.seed_tasks:,} tasks and of a job with {plan.seed_executions:,} executions")
    seeded = reads.seed(runtime, plan.seed_tasks, plan.seed_executions)
    results = reads.pages(runtime, seeded, plan.read_samples)
    rows: list[Row] = []
    executions = seeded["executions"]["executionCount"]
    for key, kind, label in (("5a", "tasks", f"GET /tasks?page=N, {seeded['tasks']['total']:,} tasks"),
                             ("5b", "job", f"GET .../jobs/{{j}}?page=N, job with {executions:,} executions")):
        items = {}
        for where in ("first", "middle", "last"):
            result = results[f"{kind}:{where}"]
            summary = Summary.of(result["latencyMs"])
            items[where] = max(result["itemsRead"])
            rows.append(Row(key, f"{label}: {where} page ({result['page']} of {result['pages']})",
                            summary.text(1), "ms", str(summary.n), data=result))
        constant = max(items["middle"], items["last"]) <= items["first"]
        rows.append(Row(key, f"  DynamoDB items read per request, first / middle / last page ({kind})",
                        " / ".join(str(items[w]) for w in ("first", "middle", "last")), "items/request",
                        f"{plan.read_samples} each", "constant in N", constant,
                        data={"seed": seeded if kind == "tasks" else None}))
    return rows


# 6 ----------------------------------------------------------------------------------------------


def figure_scheduling(runtime: Runtime, plan: Plan) -> list[Row]:
    say("6: startIn precision")
    label = "startIn 2 s and 10 s: actual start − due time"
    why = scheduling.probe(runtime)
    if why is not None:
        return [not_measured("6", label, why, "p95 ≤ 1 s")]
    result = scheduling.lateness(runtime, (2, 10), plan.schedule_samples)
    rows = []
    for key, delay in (("6a", "2s"), ("6b", "10s")):
        summary = Summary.of(result["lateMs"][delay])
        missing = result["notStarted"][delay]
        value = summary.text() + (f" (+{missing} not started {result['graceSeconds']:g} s after due)"
                                  if missing else "")
        rows.append(Row(key, f"startIn {delay}: actual start − due time (createdAt + startIn)", value, "ms",
                        str(summary.n), "p95 ≤ 1000 ms", summary.p95 <= 1000 and not missing,
                        data={"lateMs": result["lateMs"][delay], "notStarted": missing}))
    return rows


# 7 ----------------------------------------------------------------------------------------------


def figure_logs(runtime: Runtime, plan: Plan) -> list[Row]:
    mib = plan.log_bytes / 2**20
    say(f"7: reading {mib:g} MiB of stdout through the API")
    result = logs.read_output(runtime, plan.log_bytes)
    intact = "all bytes" if result["bytesReceived"] == result["bytesWritten"] else (
        f"{result['bytesReceived']:,} of {result['bytesWritten']:,} bytes")
    seconds = result["totalMs"] / 1000
    return [
        Row("7a", f"GET .../stdout of a job that wrote {mib:g} MiB: time to first byte",
            f"{result['firstByteMs']:.0f}", "ms", "1", data=result),
        Row("7b", f"  all pages, following rel=\"next\" ({result['pages']} pages, {intact}, "
                  f"{mib / seconds:.1f} MiB/s)", f"{seconds:.1f}", "s", "1"),
        Row("7c", f"  runtime process memory growth while serving it (RSS {result['rssBeforeMiB']:.0f} → peak "
                  f"{result['rssPeakMiB']:.0f} MiB)", f"{result['growthMiB']:.0f}", "MiB", "1", "≤ 64 MiB",
            result["growthMiB"] <= 64),
    ]


# the run ------------------------------------------------------------------------------------------


def _warm_up(runtime: Runtime) -> None:
    """A few jobs first, so one-time work (the ECS task definition, clients) is not in any figure."""
    from .api import TRIVIAL, Api

    api = Api(runtime.api)
    for _ in range(3):
        api.wait_final(api.post_job("warm-up", TRIVIAL)["executionUrl"])


def _meta(plan: Plan, started: float, load_at_start: tuple[float, float, float]) -> dict[str, Any]:
    def git(*args: str) -> str:
        # Read-only: which commit the figures belong to.
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10,
                                  check=False).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    return {"startedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            "durationSeconds": round(time.time() - started, 1), "commit": git("rev-parse", "HEAD"),
            "loadAverageAtStart": load_at_start,
            "uncommittedChanges": bool(git("status", "--porcelain")),
            "machine": {"cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                        "loadAverage": os.getloadavg()},
            "plan": plan.__dict__}


def _stop_on_sigterm() -> None:
    # Turn SIGTERM into an exception, so the finally blocks stop every process the bench started.
    def handler(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description="Benchmarks of the local runtime.")
    parser.add_argument("--quick", action="store_true", help="few samples, to try the bench (not figures of record)")
    args = parser.parse_args(argv)
    plan = Plan.quick() if args.quick else Plan()
    _stop_on_sigterm()
    started = time.time()
    # Other work on the machine skews every figure: the load average is kept with the results.
    load_at_start = os.getloadavg()
    log_dir = Path(tempfile.mkdtemp(prefix="fastlane-bench-"))
    say(f"process logs in {log_dir}")
    rows: list[Row] = []
    rows += guarded("1", "cold start and package", "≤ 300 ms; ≤ 15 MB", lambda: figure_cold_start(plan))
    reference_started = time.monotonic()
    reference = rq_figures(plan, log_dir)
    say(f"reference: {time.monotonic() - reference_started:.0f} s")
    later: list[Row] = []
    # One fresh runtime per group, so that what one figure leaves in the emulated queues and tables
    # (hundreds of delayed timeout checks, 10,000 tasks) does not slow the next.
    try:
        with runtime_process(log_dir, "runtime-a") as runtime:
            _warm_up(runtime)
            later += figure_cost(runtime, plan)
            rows += guarded("2", "control-plane latency", "p50 ≤ 150 ms",
                            lambda: figure_latency(runtime, plan, reference))
            later += guarded("6", "startIn precision", "p95 ≤ 1 s", lambda: figure_scheduling(runtime, plan))
        with runtime_process(log_dir, "runtime-b") as runtime:
            rows += guarded("3", "throughput", "≥ 100/s; ≥ 25/s",
                            lambda: figure_throughput(runtime, plan, reference))
        with runtime_process(log_dir, "runtime-c") as runtime:
            logs_rows = guarded("7", "logs", "≤ 64 MiB", lambda: figure_logs(runtime, plan))
            later += guarded("5", "reads at scale", "constant in N", lambda: figure_reads(runtime, plan))
            later += logs_rows
    except Exception as error:  # noqa: BLE001 - a runtime that does not start: the table says so
        say(f"the local runtime failed: {error}")
        later.append(failed("rt", "the local runtime", error))
    rows += later
    rows.sort(key=lambda row: row.key[:1])  # by figure number; the order within a figure is kept
    path = write_json(rows, RESULTS, _meta(plan, started, load_at_start))
    print(table(rows))
    print(f"\n{len(rows)} rows, {sum(1 for r in rows if r.met is False)} MISS; JSON: {path.relative_to(ROOT)} "
          f"(and latest.json); {time.time() - started:.0f} s{' (--quick)' if args.quick else ''}")
    if any(row.data.get("error") for row in rows):
        say(f"kept the process logs in {log_dir}")
    else:
        shutil.rmtree(log_dir, ignore_errors=True)
    return 0
