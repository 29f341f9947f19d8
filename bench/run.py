"""Runs every figure in turn, each against processes it starts and stops itself, and turns the
results into the rows of one table."""
from __future__ import annotations

import argparse
import dataclasses
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
from functools import partial
from pathlib import Path
from typing import Any

from . import cold_start, control_plane, cost, logs, prices, reads, rq_reference, scale, scheduling
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
    peer_workers: int = os.cpu_count() or 2  # the peer's gunicorn: one sync worker per core
    # The aws backend's column: fewer samples, since each job there costs about a second of moto.
    aws_latency_samples: int = 60
    aws_throughput_jobs: int = 150
    aws_throughput_cap_seconds: float = 60
    scale_jobs: int = 10_000  # the scale simulation's burst (figure 8)

    @classmethod
    def quick(cls) -> Plan:
        return cls(import_runs=3, latency_samples=20, throughput_jobs=80, throughput_cap_seconds=60, cost_samples=1,
                   seed_tasks=1_000, seed_executions=100, read_samples=5, schedule_samples=5,
                   log_bytes=5 * 1024 * 1024, aws_latency_samples=10, aws_throughput_jobs=40,
                   aws_throughput_cap_seconds=30, scale_jobs=2_000)


def say(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def guarded(number: str, figure: str, target: str, measure: Callable[[], list[Row]], key: str) -> list[Row]:
    """A figure that breaks becomes a row saying so (named `key`); the other figures still run."""
    started = time.monotonic()
    try:
        return measure()
    except Exception as error:  # noqa: BLE001 - printed in the table, with the log directory
        say(f"figure {number} failed: {type(error).__name__}: {error}")
        return [failed(number, figure, error, target, key=key)]
    finally:
        say(f"figure {number}: {time.monotonic() - started:.0f} s")


@contextmanager
def runtime_process(log_dir: Path, name: str, backend: str = "local", count_sqlite: bool = False) -> Iterator[Runtime]:
    say(f"starting a fresh local runtime ({name}, {backend} backend)")
    runtime = start_runtime(log_dir, name, backend, count_sqlite)
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
            runs, "≤ 300 ms", over <= 300, data=imports, key="cold_start.import_ms", value=over),
        Row("1b", "  same, with the first request's imports (boto3, PynamoDB store, engine)",
            f"{imports['appFirstUseOverBareMs']:.0f}", "ms", runs, key="cold_start.first_request_import_ms",
            value=imports["appFirstUseOverBareMs"]),
    ]
    if package.get("packagedImportOverBareMs") is not None:
        rows.append(Row("1c", "  `import app` from the built package, no bytecode (as on Lambda)",
                        f"{package['packagedImportOverBareMs']:.0f}", "ms", f"{package['importRuns']} runs",
                        key="cold_start.packaged_import_ms", value=package["packagedImportOverBareMs"]))
    largest = ", ".join(f"{name} {size:.1f}" for name, size in list(package["largest"].items())[:3])
    rows.append(Row("1d", f"Lambda package unzipped, without boto3/botocore (largest: {largest})",
                    f"{package['shippedMB']:.1f}", "MB", "1 build", "≤ 15 MB", package["shippedMB"] <= 15,
                    data=package, key="cold_start.package_mb", value=package["shippedMB"]))
    rows.append(Row("1d", "  of it the job browser's page, script and style (chalicelib/ui), read only by /ui",
                    f"{package['uiKB']:.0f}", "KB", "1 build", key="cold_start.ui_kb", value=package["uiKB"]))
    return rows


# the RQ reference ---------------------------------------------------------------------------------


def rq_figures(plan: Plan, log_dir: Path, with_peer: bool = True) -> dict[str, Any]:
    """Figures 2 and 3 through RQ, and (`with_peer`) figure 3a's peer on the same Redis and workers;
    {"error": why} when the reference cannot run, {"peer": {"error": why}} when only the peer cannot."""
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
            peer = peer_figures(plan, cluster, log_dir) if with_peer else {"error": "not run"}
        finally:
            cluster.stop()
    except Exception as error:  # noqa: BLE001 - the service's figures are printed without the reference
        say(f"the RQ reference failed: {error}")
        return {"error": f"{type(error).__name__}: {error}"[:160]}
    finally:
        redis_server.stop()
    return {"latency": latency, "throughput": throughput, "workers": plan.rq_workers, "peer": peer}


def peer_figures(plan: Plan, cluster: rq_reference.RqCluster, log_dir: Path) -> dict[str, Any]:
    """Figure 3a's peer (bench/peer.py): the same posts to Flask and RQ under gunicorn, while the
    reference's workers run the jobs; {"error": why} when it cannot run."""
    try:
        import flask  # noqa: F401
        import gunicorn  # noqa: F401

        from . import peer
    except ImportError as error:
        return {"error": f"{error.name} is not installed (requirements-bench.txt)"}
    say(f"peer: Flask and RQ under gunicorn ({plan.peer_workers} sync workers), {plan.throughput_jobs} jobs "
        f"from {plan.throughput_clients} clients, {plan.rq_workers} RQ workers running them")
    started = time.monotonic()
    try:
        server, base = peer.start(cluster.url, plan.peer_workers, log_dir)
        try:
            result = peer.throughput(cluster, base, plan.throughput_jobs, plan.throughput_clients)
        finally:
            server.stop()
    except Exception as error:  # noqa: BLE001 - 3a is printed without the peer, and says why
        say(f"the peer failed: {error}")
        return {"error": f"{type(error).__name__}: {error}"[:160]}
    finally:
        say(f"peer: {time.monotonic() - started:.0f} s")
    return {**result, "workers": plan.peer_workers, "rqWorkers": plan.rq_workers}


# 2 and 3 ------------------------------------------------------------------------------------------


def measured(key: str, measure: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Raw data of one figure on one backend, or {"error": why}: the rows are built afterwards,
    from both backends' data and the reference."""
    started = time.monotonic()
    try:
        return measure()
    except Exception as error:  # noqa: BLE001 - printed in the table, with the log directory
        say(f"figure {key} failed: {type(error).__name__}: {error}")
        return {"error": f"error: {type(error).__name__}: {error}"[:160]}
    finally:
        say(f"figure {key}: {time.monotonic() - started:.0f} s")


def measure_latency(runtime: Runtime, samples: int, streams: int) -> dict[str, Any]:
    say(f"2 ({runtime.backend}): control-plane latency, {samples} trivial jobs, {streams} at a time")
    runtime.reset_counts()
    result = control_plane.latency(runtime, samples, streams)
    result["counts"] = runtime.counts()
    return result


def _aws_text(data: dict[str, Any], text: Callable[[dict[str, Any]], str]) -> str:
    if not data:
        return "not run"
    return data["error"] if "error" in data else text(data)


def _latency_text(name: str, data: dict[str, Any]) -> str:
    return f"{Summary.of(data[name]).text()} (n {len(data[name])})"


def latency_rows(local: dict[str, Any], aws: dict[str, Any], plan: Plan, reference: dict[str, Any]) -> list[Row]:
    rows = []
    first = f"accepted → running (createdAt → startedAt), trivial job, {plan.latency_streams} clients"
    for number, key, name, label, target in (
            ("2a", "latency.accepted_to_running", "acceptedToRunningMs", first, "p50 ≤ 30 ms, ≤ 2x RQ"),
            ("2b", "latency.exit_to_done_visible", "exitToDoneVisibleMs",
             "container exit → `done` seen by polling the API", "p50 ≤ 30 ms")):
        if "error" in local:
            row = Row(number, label, local["error"], target=target, met=False, data=local, key=key)
        else:
            summary = Summary.of(local[name])
            row = Row(number, label, summary.text(), "ms", str(summary.n), target, summary.p50 <= 30,
                      data={"ours": local[name], "notDone": local["notDone"]}, key=key, value=summary.p50)
            if "latency" in reference:
                theirs = Summary.of(reference["latency"][name])
                row.reference, row.ratio = theirs.text(), f"{ratio(summary.p50, theirs.p50)} (p50)"
                row.data["rq"] = reference["latency"][name]
                if number == "2a":
                    row.met = summary.p50 <= 30 and summary.p50 <= 2 * theirs.p50
            else:
                row.reference = f"n/a: {reference.get('error')}"
        row.aws = _aws_text(aws, partial(_latency_text, name))
        if "error" not in aws and aws:
            row.data["aws"] = aws[name]
        rows.append(row)
    if aws and "error" not in aws:
        counts = aws["counts"]
        calls = [row for row in counts["calls"] if row["origin"] == "app"]
        local_calls = [row for row in counts["calls"] if row["origin"] == "local"]
        count = sum(row["calls"] for row in calls)
        mean_ms = sum(row["seconds"] for row in calls) / max(1, count) * 1000
        slowest = max((row["maxSeconds"] for row in calls), default=0) * 1000
        rows.append(Row("2c", f"  aws backend: one emulated AWS call made by the app during 2 (moto, in the runtime): "
                              f"mean (max {slowest:.0f})", "", "ms", str(count), aws=f"{mean_ms:.1f}",
                        data={"calls": calls}, key="latency.aws_call_ms", value=mean_ms))
        window = counts["at"] - counts["since"]
        local_count = sum(row["calls"] for row in local_calls)
        busiest = sorted(local_calls, key=lambda row: -row["calls"])[:3]
        named = ", ".join(f"{row['service']}:{row['operation']} {row['calls'] / window:.1f}" for row in busiest)
        rows.append(Row("2d", f"  aws backend: the local stand-ins' own calls to moto meanwhile ({named})", "",
                        "calls/s", str(local_count), aws=f"{local_count / window:.1f}",
                        data={"calls": local_calls, "seconds": window}, key="latency.aws_stand_in_calls_per_second",
                        value=local_count / window))
    return rows


def measure_throughput(runtime: Runtime, jobs: int, clients: int, cap_seconds: float) -> dict[str, Any]:
    say(f"3 ({runtime.backend}): throughput, {jobs} jobs from {clients} clients (waiting at most {cap_seconds:g} s)")
    measured = control_plane.throughput(runtime, jobs, clients, cap_seconds)
    if runtime.backend == "local":
        measured["bounds"] = control_plane.bounds(runtime, 4 * jobs, clients)
    return measured


def _capped(data: dict[str, Any]) -> str:
    return f" (capped: {data['ended']} of {data['accepted']} ended in {data['capSeconds']:g} s)" if data["capped"] else ""


# Figure 3a's targets, against the peer (bench/peer.py) while the jobs run; ours/RQ is printed too.
PEER_TARGET, PEER_MOONSHOT = 1.0, 1.5


def throughput_rows(ours: dict[str, Any], aws: dict[str, Any], plan: Plan, reference: dict[str, Any]) -> list[Row]:
    theirs = reference.get("throughput")
    peer = reference.get("peer") or {"error": reference.get("error", "not run")}
    enqueue_target = f"≥ {PEER_TARGET:.1f}x peer"
    enqueue_label = (f"enqueue rate: {plan.throughput_jobs} trivial jobs posted by {plan.throughput_clients} "
                     "concurrent clients while they run")
    complete_label = "completion rate, pool maxRunning 16: first post → last job ended"
    if "error" in ours:
        enqueue = Row("3a", enqueue_label, ours["error"], target=enqueue_target, met=False,
                      key="throughput.enqueue_rate")
        complete = Row("3b", complete_label, ours["error"], target="≥ 1.0x RQ", met=False,
                       key="throughput.completion_rate")
    else:
        refused = f", {ours['postErrorCount']} posts failed" if ours["postErrorCount"] else ""
        enqueue = Row("3a", enqueue_label + refused, f"{ours['enqueuesPerSecond']:.1f}", "requests/s",
                      str(ours["accepted"]), enqueue_target, data=ours, key="throughput.enqueue_rate",
                      value=ours["enqueuesPerSecond"])
        complete = Row("3b", complete_label, f"{ours['jobsPerSecond']:.1f}{_capped(ours)}", "jobs/s",
                       str(ours["ended"]), "≥ 1.0x RQ", key="throughput.completion_rate", value=ours["jobsPerSecond"])
        if theirs:
            enqueue.reference = f"{theirs['enqueuesPerSecond']:.0f}"
            enqueue.ratio = ratio(ours["enqueuesPerSecond"], theirs["enqueuesPerSecond"])
            complete.reference = f"{theirs['jobsPerSecond']:.1f} ({reference['workers']} workers)"
            complete.ratio = ratio(ours["jobsPerSecond"], theirs["jobsPerSecond"])
            complete.met = ours["jobsPerSecond"] >= theirs["jobsPerSecond"] and not ours["capped"]
            complete.data["rq"] = theirs
        else:
            enqueue.reference = complete.reference = f"n/a: {reference.get('error')}"
        _judge_against_peer(enqueue, ours, peer)
    enqueue.aws = _aws_text(aws, lambda d: f"{d['enqueuesPerSecond']:.1f} ({d['accepted']} of {d['jobs']} jobs"
                                           + (f", {d['postErrorCount']} failed" if d["postErrorCount"] else "") + ")")
    complete.aws = _aws_text(aws, lambda d: f"{d['jobsPerSecond']:.1f}{_capped(d)}")
    if aws and "error" not in aws:
        complete.data["aws"] = aws
    return [enqueue, *_peer_rows(peer), complete,
            *_bound_rows(ours.get("bounds"), theirs, None if "error" in peer else peer)]


def _judge_against_peer(enqueue: Row, ours: dict[str, Any], peer: dict[str, Any]) -> None:
    """3a's verdict: ours at least PEER_TARGET times the peer's enqueue rate, with no post refused;
    the moonshot column, PEER_MOONSHOT times. Without the peer, n/a and no verdict."""
    enqueue.moonshot = f"≥ {PEER_MOONSHOT:.1f}x peer"
    if "error" in peer:
        enqueue.peer = f"n/a: {peer['error']}"
        return
    enqueue.peer = f"{peer['enqueuesPerSecond']:.0f}" + (f" ({peer['postErrorCount']} posts failed)"
                                                          if peer["postErrorCount"] else "")
    enqueue.data["peer"] = peer
    if "error" in ours:
        return
    theirs = peer["enqueuesPerSecond"]
    enqueue.peer_ratio = ratio(ours["enqueuesPerSecond"], theirs)
    clean = not ours["postErrorCount"]
    enqueue.met = ours["enqueuesPerSecond"] >= PEER_TARGET * theirs and clean
    enqueue.moonshot_met = ours["enqueuesPerSecond"] >= PEER_MOONSHOT * theirs and clean


def _peer_rows(peer: dict[str, Any]) -> list[Row]:
    """The peer's own rates, in the JSON only (keys throughput.peer.*), for comparing runs."""
    if "error" in peer:
        return []
    n = str(peer["accepted"])
    return [Row("3a", "peer: enqueue rate (Flask and RQ under gunicorn)", f"{peer['enqueuesPerSecond']:.1f}",
                "requests/s", n, key="throughput.peer.enqueue_rate", value=peer["enqueuesPerSecond"], printed=False),
            Row("3a", f"peer: completion rate ({peer['rqWorkers']} RQ workers)", f"{peer['jobsPerSecond']:.1f}",
                "jobs/s", n, key="throughput.peer.completion_rate", value=peer["jobsPerSecond"], printed=False)]


def _bound_rows(bounds: dict[str, Any] | None, theirs: dict[str, Any] | None,
                peer: dict[str, Any] | None = None) -> list[Row]:
    """3c, 3d: what bounds 3a on this machine, next to RQ's enqueue rate and the peer's."""
    if not bounds:
        return []
    n = f"{bounds['requests']} requests"
    rows = [
        Row("3c", f"  bound of 3a: GET of a path no route has (HTTP stand-in, router, 404; no store), "
                  f"{bounds['clients']} clients", f"{bounds['notFoundPerSecond']:.0f}", "requests/s", n,
            key="throughput.http_floor", value=bounds["notFoundPerSecond"]),
        Row("3d", "  bound of 3a: posts of jobs starting in 2 h (the durable write, no job launched meanwhile)",
            f"{bounds['laterPostsPerSecond']:.0f}", "requests/s", n,
            key="throughput.posts_alone", value=bounds["laterPostsPerSecond"]),
    ]
    if theirs:
        for row, value in zip(rows, (bounds["notFoundPerSecond"], bounds["laterPostsPerSecond"]), strict=True):
            row.reference = f"{theirs['enqueuesPerSecond']:.0f}"
            row.ratio = ratio(value, theirs["enqueuesPerSecond"])
    if peer:
        for row, value in zip(rows, (bounds["notFoundPerSecond"], bounds["laterPostsPerSecond"]), strict=True):
            row.peer = f"{peer['enqueuesPerSecond']:.0f}"
            row.peer_ratio = ratio(value, peer["enqueuesPerSecond"])
    return rows


# 4 ----------------------------------------------------------------------------------------------


def _cost_rows(number: str, key: str, label: str, counted: list[dict[str, Any]], target: int | None,
               per: str = "job") -> list[Row]:
    """The rows of one cost figure, named `cost.<key>.*`: the total, then by service, by entry
    point, and DynamoDB's items (and capacity units, where bench/cost.py counts them)."""
    totals = [c["calls"] for c in counted]
    median = statistics.median(totals)
    shown = min(counted, key=lambda c: abs(c["calls"] - median))
    spread = f" (min {min(totals)}, max {max(totals)})" if min(totals) != max(totals) else ""
    n = f"{len(counted)} {per}" + ("s" if len(counted) > 1 else "")
    rows = [Row(number, label + spread, f"{median:g}", f"calls/{per}", n, f"≤ {target}" if target else "",
                (median <= target) if target else None, data={"jobs": counted}, key=f"cost.{key}.calls", value=median)]
    by_service: dict[str, list[tuple[str, int]]] = {}
    for name, calls in shown["byOperation"].items():
        service, operation = name.split(":", 1)
        by_service.setdefault(service, []).append((operation, calls))
    for service, operations in by_service.items():
        detail = ", ".join(f"{op} {calls}" for op, calls in operations)
        total = sum(calls for _, calls in operations)
        rows.append(Row(number, f"  {SERVICES.get(service, service)}: {detail}", str(total), "calls", n,
                        key=f"cost.{key}.{service}", value=total))
    entries = ", ".join(f"{entry} {calls}" for entry, calls in shown["byEntry"].items())
    rows.append(Row(number, f"  by entry point of app.py: {entries}", str(shown["calls"]), "calls", n,
                    key=f"cost.{key}.by_entry", value=shown["calls"]))
    rows.append(Row(number, "  DynamoDB items read / written", f"{shown['itemsRead']} / {shown['itemsWritten']}",
                    f"items/{per}", n, key=f"cost.{key}.items", value=shown["itemsRead"] + shown["itemsWritten"],
                    data={"read": shown["itemsRead"], "written": shown["itemsWritten"]}))
    if shown.get("itemBytes"):
        rows.append(Row(number, f"  its largest execution item as DynamoDB bills it at the end, {shown['timelineBytes']} "
                                f"of them its timeline of {shown['timelineEntries']} entries (an update bills a write "
                                "unit per KB of it)",
                        f"{shown['itemBytes']:,}", "bytes", n, key=f"cost.{key}.item_bytes", value=shown["itemBytes"]))
    if "readUnits" in shown and "writeUnits" in shown:
        rows.append(Row(number, "  DynamoDB capacity units read / written",
                        f"{shown['readUnits']:g} / {shown['writeUnits']:g}", f"units/{per}", n,
                        key=f"cost.{key}.read_units", value=shown["readUnits"]))
        rows.append(Row(number, "  DynamoDB capacity units written", f"{shown['writeUnits']:g}", f"units/{per}", n,
                        key=f"cost.{key}.write_units", value=shown["writeUnits"], printed=False))
    return rows


# The budget: at most 10 AWS calls per job, per retry and per cron tick. The retry figure
# counts a job that runs 3 times (fails, retries twice): 10 for each run.
COST_PER_RUN = 10
RETRY_RUNS = 3


def figure_cost(runtime: Runtime, plan: Plan) -> list[Row]:
    say("4: AWS calls per job, counted in the runtime (aws backend)")
    once, retries = f"≤ {COST_PER_RUN}", f"≤ {COST_PER_RUN * RETRY_RUNS}"
    rows = guarded("4a", "AWS calls by the app: a job that runs once", once, lambda: _cost_rows(
        "4a", "single_run", "AWS calls by the app (aws backend): a job that runs once (`sleep 1`, no notifications)",
        cost.job_runs_once(runtime, plan.cost_samples), COST_PER_RUN), key="cost.single_run.calls")
    rows += guarded("4b", "AWS calls by the app: a job that fails and retries twice", retries, lambda: _cost_rows(
        "4b", "retry", "AWS calls by the app: a job that fails and retries twice (3 runs of `sleep 1; exit 1`)",
        [cost.job_retries_twice(runtime)], COST_PER_RUN * RETRY_RUNS), key="cost.retry.calls")

    def cron() -> list[Row]:
        tick = cost.cron_tick(runtime)
        if not tick.get("implemented"):
            return [not_measured("4c", "AWS calls by the app: one cron tick", tick["reason"], once,
                                 key="cost.cron_tick.calls")]
        return _cost_rows("4c", "cron_tick", "AWS calls by the app: one cron tick and the run it starts", [tick],
                          COST_PER_RUN, "tick")

    rows += guarded("4c", "AWS calls by the app: one cron tick", once, cron, key="cost.cron_tick.calls")
    rows += guarded("4d", "AWS calls by the app: a job with a short timeout", "", lambda: _cost_rows(
        "4d", "short_timeout", f"AWS calls by the app: a job with a timeout of {cost.SHORT_TIMEOUT} s (at most two "
                               "reconcile intervals: its timeout check is sent when it starts)",
        [cost.job_with_short_timeout(runtime)], None)[:1], key="cost.short_timeout.calls")
    rows += _dollar_rows(rows)
    return rows


def _dollar_rows(rows: list[Row]) -> list[Row]:
    """Figure 4e: the single run's counts in dollars per million jobs (bench/prices.py)."""
    single = next((row for row in rows if row.key == "cost.single_run.calls" and "jobs" in row.data), None)
    if single is None:
        return []  # the figure failed: its row says why
    counted = single.data["jobs"]
    median = statistics.median(c["calls"] for c in counted)
    shown = min(counted, key=lambda c: abs(c["calls"] - median))
    if "readUnits" not in shown:
        return []
    dollars = prices.per_million(shown)
    control = round(sum(v for name, v in dollars.items() if name != "fargate"), 2)
    detail = ", ".join(f"{name} {value:g}" for name, value in dollars.items() if name != "fargate")
    return [Row("4e", f"AWS list price of a million such jobs, control plane ({detail}; model in bench/prices.py)",
                f"{control:g}", "$/million jobs", "1 job", data=dollars, key="cost.single_run.usd_per_million",
                value=control),
            Row("4e", "  Fargate compute for the same jobs (0.25 vCPU, 0.5 GB, the one-minute minimum): the same "
                      "under AWS Batch, which charges nothing of its own", f"{dollars['fargate']:g}", "$/million jobs",
                "1 job", key="cost.single_run.fargate_usd_per_million", value=dollars["fargate"])]


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
                            summary.text(1), "ms", str(summary.n), data=result, key=f"reads.{kind}.{where}_page_ms",
                            value=summary.p50))
        if runtime.backend == "local":
            # Steps are counted 10 at a time and include the counter read: a page's work is
            # constant when it stays within a quarter of the first page's.
            constant = max(items["middle"], items["last"]) <= items["first"] * 1.25
            what, unit = "SQLite steps", "steps/request"
        else:
            constant = max(items["middle"], items["last"]) <= items["first"]
            what, unit = "DynamoDB items read", "items/request"
        rows.append(Row(key, f"  {what} per request, first / middle / last page ({kind})",
                        " / ".join(str(items[w]) for w in ("first", "middle", "last")), unit,
                        f"{plan.read_samples} each", "constant in N", constant,
                        data={"seed": seeded if kind == "tasks" else None, "items": items},
                        key=f"reads.{kind}.work_per_request", value=max(items["middle"], items["last"])))
    return rows


# 6 ----------------------------------------------------------------------------------------------

SCHEDULE_DELAYS = (2, 10)


def measure_scheduling(runtime: Runtime, plan: Plan) -> dict[str, Any]:
    say(f"6 ({runtime.backend}): startIn precision")
    why = scheduling.probe(runtime)
    if why is not None:
        return {"notMeasured": why}
    return scheduling.lateness(runtime, SCHEDULE_DELAYS, plan.schedule_samples)


def _schedule_text(data: dict[str, Any], *, delay: str) -> str:
    summary = Summary.of(data["lateMs"][delay])
    missing = data["notStarted"][delay]
    return summary.text() + (f" (+{missing} not started {data['graceSeconds']:g} s after due)" if missing else "")


def scheduling_rows(ours: dict[str, Any], aws: dict[str, Any], plan: Plan) -> list[Row]:
    target = "error p95 ≤ 100 ms"  # of the absolute error: early counts as much as late
    if "notMeasured" in ours:
        return [not_measured("6", "startIn 2 s and 10 s: actual start − due time", ours["notMeasured"], target,
                             key="scheduling.start_in")]
    rows = []
    for key, delay in (("6a", "2s"), ("6b", "10s")):
        label = (f"startIn {delay}: actual start − due time (createdAt + startIn), {plan.schedule_samples} jobs "
                 f"each of {SCHEDULE_DELAYS[0]} s and {SCHEDULE_DELAYS[1]} s, interleaved")
        name = f"scheduling.start_in_{delay}"
        if "error" in ours:
            row = Row(key, label, ours["error"], target=target, met=False, key=name)
        else:
            late = ours["lateMs"][delay]
            errors = Summary.of([abs(value) for value in late])
            missing = ours["notStarted"][delay]
            row = Row(key, label, _schedule_text(ours, delay=delay), "ms", str(len(late)), target,
                      errors.p95 <= 100 and not missing, data={"lateMs": late, "notStarted": missing}, key=name,
                      value=Summary.of(late).p50)
        row.aws = ("n/a: " + aws["notMeasured"]) if "notMeasured" in aws else _aws_text(
            aws, partial(_schedule_text, delay=delay))
        if aws and "lateMs" in aws:
            row.data["aws"] = aws["lateMs"][delay]
        rows.append(row)
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
            f"{result['firstByteMs']:.0f}", "ms", "1", data=result, key="logs.first_byte_ms", value=result["firstByteMs"]),
        Row("7b", f"  all pages, following rel=\"next\" ({result['pages']} pages, {intact}, "
                  f"{mib / seconds:.1f} MiB/s)", f"{seconds:.1f}", "s", "1", key="logs.all_pages_seconds", value=seconds),
        Row("7c", f"  runtime processes' memory growth while serving it (RSS {result['rssBeforeMiB']:.0f} → peak "
                  f"{result['rssPeakMiB']:.0f} MiB)", f"{result['growthMiB']:.0f}", "MiB", "1", "≤ 64 MiB",
            result["growthMiB"] <= 64, key="logs.memory_growth_mib", value=result["growthMiB"]),
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


GROUPS = ("cold_start", "latency", "throughput", "cost", "reads", "scheduling", "logs", "scale")


def selected_groups(only: str | None) -> frozenset[str]:
    """The figure groups `--only a,b` names (all of them without it); an unknown name is refused."""
    if not only:
        return frozenset(GROUPS)
    names = {name.strip() for name in only.split(",") if name.strip()}
    unknown = sorted(names - set(GROUPS))
    if unknown:
        raise SystemExit(f"python -m bench: unknown group(s) {', '.join(unknown)}; choose from {', '.join(GROUPS)}")
    return frozenset(names)


def figure_scale(jobs: int) -> list[Row]:
    say(f"8: scale simulation, {jobs:,} jobs posted at once (virtual time, in this process)")
    return scale.rows(scale.simulate(jobs))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description="Benchmarks of the local runtime.")
    parser.add_argument("--quick", action="store_true", help="few samples, to try the bench (not figures of record)")
    parser.add_argument("--only", metavar="GROUPS", help=f"comma-separated figure groups to run: {', '.join(GROUPS)}")
    parser.add_argument("--scale-jobs", type=int, metavar="N",
                        help="jobs in the scale simulation (default 10,000; 2,000 with --quick)")
    args = parser.parse_args(argv)
    groups = selected_groups(args.only)
    plan = Plan.quick() if args.quick else Plan()
    if args.scale_jobs:
        plan = dataclasses.replace(plan, scale_jobs=args.scale_jobs)
    _stop_on_sigterm()
    started = time.time()
    # Other work on the machine skews every figure: the load average is kept with the results.
    load_at_start = os.getloadavg()
    log_dir = Path(tempfile.mkdtemp(prefix="fastlane-bench-"))
    say(f"process logs in {log_dir}" + (f"; only {', '.join(g for g in GROUPS if g in groups)}" if args.only else ""))
    rows: list[Row] = []
    if "cold_start" in groups:
        rows += guarded("1", "cold start and package", "≤ 300 ms; ≤ 15 MB", lambda: figure_cold_start(plan),
                        key="cold_start.error")
    reference: dict[str, Any] = {"error": "not run"}
    if groups & {"latency", "throughput"}:
        reference_started = time.monotonic()
        reference = rq_figures(plan, log_dir, with_peer="throughput" in groups)
        say(f"reference: {time.monotonic() - reference_started:.0f} s")
    later: list[Row] = []
    local: dict[str, dict[str, Any]] = {}
    aws: dict[str, dict[str, Any]] = {}
    # One fresh runtime per group, so that what one figure leaves behind (hundreds of delayed
    # timeout checks, 10,000 tasks) does not slow the next. The local backend first (the figures
    # of the targets), then the aws backend on moto (the emulator's cost, and figure 4's calls).
    # A runtime starts only for the groups that need it.
    try:
        if groups & {"latency", "scheduling"}:
            with runtime_process(log_dir, "local-a") as runtime:
                _warm_up(runtime)
                if "latency" in groups:
                    local["2"] = measured("2", lambda: measure_latency(runtime, plan.latency_samples,
                                                                       plan.latency_streams))
                if "scheduling" in groups:
                    local["6"] = measured("6", lambda: measure_scheduling(runtime, plan))
        if "throughput" in groups:
            with runtime_process(log_dir, "local-b") as runtime:
                local["3"] = measured("3", lambda: measure_throughput(
                    runtime, plan.throughput_jobs, plan.throughput_clients, plan.throughput_cap_seconds))
        if "logs" in groups:
            with runtime_process(log_dir, "local-c") as runtime:
                later += guarded("7", "logs", "≤ 64 MiB", lambda: figure_logs(runtime, plan), key="logs.error")
        if "reads" in groups:
            # Counting SQLite's steps slows every statement: only in the runtime of figure 5.
            with runtime_process(log_dir, "local-d", count_sqlite=True) as runtime:
                later += guarded("5", "reads at scale", "constant in N", lambda: figure_reads(runtime, plan),
                                 key="reads.error")
    except Exception as error:  # noqa: BLE001 - a runtime that does not start: the table says so
        say(f"the local runtime failed: {error}")
        later.append(failed("rt", "the local runtime (local backend)", error, key="runtime.local.error"))
    try:
        if groups & {"cost", "latency", "scheduling"}:
            with runtime_process(log_dir, "aws-a", "aws") as runtime:
                _warm_up(runtime)
                if "cost" in groups:
                    later += figure_cost(runtime, plan)
                if "latency" in groups:
                    aws["2"] = measured("2 aws", lambda: measure_latency(runtime, plan.aws_latency_samples,
                                                                         plan.latency_streams))
                if "scheduling" in groups:
                    aws["6"] = measured("6 aws", lambda: measure_scheduling(runtime, plan))
        if "throughput" in groups:
            with runtime_process(log_dir, "aws-b", "aws") as runtime:
                aws["3"] = measured("3 aws", lambda: measure_throughput(
                    runtime, plan.aws_throughput_jobs, plan.throughput_clients, plan.aws_throughput_cap_seconds))
    except Exception as error:  # noqa: BLE001 - as above
        say(f"the local runtime on the aws backend failed: {error}")
        later.append(failed("rt", "the local runtime (aws backend)", error, key="runtime.aws.error"))
    if "scale" in groups:
        # In this process, after every runtime has stopped: it sets (and then restores) the environment.
        later += guarded("8", "scale simulation", "≥ 19 launches/s; 0 lost; 0 duplicates; ≤ 10 min per 10,000 jobs",
                         lambda: figure_scale(plan.scale_jobs), key="scale.error")
    if "latency" in groups:
        rows += latency_rows(local.get("2", {"error": "not run"}), aws.get("2", {}), plan, reference)
    if "throughput" in groups:
        rows += throughput_rows(local.get("3", {"error": "not run"}), aws.get("3", {}), plan, reference)
    if "scheduling" in groups:
        later += scheduling_rows(local.get("6", {"error": "not run"}), aws.get("6", {}), plan)
    rows += later
    rows.sort(key=lambda row: row.number[:1])  # by figure number; the order within a figure is kept
    meta = _meta(plan, started, load_at_start)
    meta["groups"] = [g for g in GROUPS if g in groups]
    path = write_json(rows, RESULTS, meta)
    print(table(rows))
    print(f"\n{len(rows)} rows, {sum(1 for r in rows if r.met is False)} MISS; JSON: {path.relative_to(ROOT)} "
          f"(and latest.json); {time.time() - started:.0f} s{' (--quick)' if args.quick else ''}")
    if any(row.data.get("error") for row in rows):
        say(f"kept the process logs in {log_dir}")
    else:
        shutil.rmtree(log_dir, ignore_errors=True)
    return 0
