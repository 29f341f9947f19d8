"""The local runtime with every AWS call counted: a botocore event hook plus a small control server.

    python -m bench.instrumented_runtime --port API_PORT --control-port CONTROL_PORT
                                         [--backend local|aws] [--state PATH] [--count-sqlite]

Runs `infra.local.runtime.main()` unchanged (on a fresh state file for the local backend), after
making every botocore session register two
handlers: `provide-client-params` (who is calling, what is sent) and `after-call` (what came back:
items read, errors, how long it took). Calls are attributed by the caller's stack: `app` (a frame
of app.py or chalicelib/, with the app.py route or handler it came through), `reconciler` (the same,
on the once-a-minute reconciler's thread), `local` (only frames of infra/local/: the SQS event
sources and the stand-ins for ECS, Scheduler and log subscriptions, whose work AWS itself would do)
or `bench` (this module's control server, never counted as the app's). The local backend makes no
AWS call; with `--count-sqlite` every SQLite connection it opens counts the virtual-machine steps
of its statements (a progress handler every 10 steps), by the same origins: the work a request
does, whatever the data's size.

The control server (127.0.0.1 only) answers:
    GET  /counts                    every counter since the last reset, as JSON
    POST /reset                     zero the counters
    GET  /job?jobId=J               the job's executions, read through the app's store (as `bench`)
    POST /seed-tasks?count=N        N tasks written as the backend's store lays them out
    POST /seed-executions?jobId=J&count=N   N finished executions added to job J the same way
(DynamoDB batch writes through the store models on the aws backend; one SQLite transaction on the
local backend.)
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import parse_qs, urlsplit

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = str(ROOT / "bench") + "/"
APP_MODULE = str(ROOT / "app.py")
APP_DIRS = (str(ROOT / "chalicelib") + "/", APP_MODULE)
LOCAL_DIR = str(ROOT / "infra" / "local") + "/"
ORIGIN_KEY = "bench_origin"
RECONCILER_THREAD = "reconciler"  # infra.local.event_sources.Timer names its thread after the handler


def caller_origin() -> tuple[str, str]:
    """Who made the AWS call being made now, from the files on the calling thread's stack, and
    through which of the app's entry points (the innermost function of app.py: a route or a
    handler; "-" for none). The reconciler (the runtime's timer thread of that name) is told apart: it
    runs once a minute, not per job, and would otherwise add its calls to the job being counted."""
    reconciler = threading.current_thread().name == RECONCILER_THREAD
    seen_app = seen_local = False
    entry = "-"
    frame: FrameType | None = sys._getframe(2)
    while frame is not None:
        name = frame.f_code.co_filename
        if name.startswith(BENCH_DIR):
            return "bench", entry
        if name.startswith(APP_DIRS):
            seen_app = True
            if entry == "-" and name == APP_MODULE:
                entry = frame.f_code.co_name
        elif name.startswith(LOCAL_DIR):
            seen_local = True
        frame = frame.f_back
    if seen_app:
        return ("reconciler" if reconciler else "app"), entry
    return ("local" if seen_local else "other"), entry


@dataclass
class Tally:
    calls: int = 0
    errors: int = 0
    items_read: int = 0
    items_written: int = 0
    read_units: float = 0.0  # DynamoDB capacity units, estimated from item sizes (_dynamodb_units)
    write_units: float = 0.0
    seconds: float = 0.0  # wall time from the call's parameters to its parsed answer, summed
    max_seconds: float = 0.0


def _dynamodb_items(operation: str, params: dict[str, Any], parsed: dict[str, Any]) -> tuple[int, int]:
    """(items read, items written) by one DynamoDB call, from its request and its answer. Reads are
    what DynamoDB evaluates (a Query's ScannedCount), so a page that filtered items away still
    counts them; a GetItem that finds nothing counts 0."""
    if operation == "GetItem":
        return (1 if "Item" in parsed else 0), 0
    if operation in ("Query", "Scan"):
        return int(parsed.get("ScannedCount", parsed.get("Count", len(parsed.get("Items", []))))), 0
    if operation == "BatchGetItem":
        return sum(len(items) for items in parsed.get("Responses", {}).values()), 0
    if operation == "TransactGetItems":
        return sum(1 for r in parsed.get("Responses", []) if r.get("Item")), 0
    if operation in ("PutItem", "UpdateItem", "DeleteItem"):
        return 0, 1
    if operation == "TransactWriteItems":
        entries = params.get("TransactItems", [])
        checks = sum(1 for e in entries if "ConditionCheck" in e)
        return checks, len(entries) - checks
    if operation == "BatchWriteItem":
        sent = sum(len(requests) for requests in params.get("RequestItems", {}).values())
        left = sum(len(requests) for requests in parsed.get("UnprocessedItems", {}).values())
        return 0, sent - left
    return 0, 0


def _size(item: Any) -> int:
    """An item's size as DynamoDB bills it, estimated from its typed JSON (names and values; a
    little above the billed size, which counts values without their type tags)."""
    return len(json.dumps(item, separators=(",", ":"))) if item else 0


def _units(size: int, unit: int) -> int:
    return max(1, -(-size // unit))


def _dynamodb_units(operation: str, params: dict[str, Any], parsed: dict[str, Any]) -> tuple[float, float]:
    """(read, write) capacity units of one call at on-demand rules: a read unit per 4 KB read
    strongly consistent (half eventually consistent), a write unit per 1 KB written, both twice
    in a transaction. An update's item is taken to be at most 1 KB (the bench's jobs are small);
    a Put's size is known from its request."""
    consistent = 1.0 if params.get("ConsistentRead") else 0.5
    if operation == "GetItem":
        return _units(_size(parsed.get("Item")), 4096) * consistent, 0.0
    if operation in ("Query", "Scan"):
        return _units(sum(_size(i) for i in parsed.get("Items", [])), 4096) * consistent, 0.0
    if operation == "BatchGetItem":
        items = [i for found in parsed.get("Responses", {}).values() for i in found]
        return sum(_units(_size(i), 4096) * 0.5 for i in items), 0.0
    if operation == "PutItem":
        return 0.0, float(_units(_size(params.get("Item")), 1024))
    if operation in ("UpdateItem", "DeleteItem"):
        return 0.0, 1.0
    if operation == "TransactWriteItems":
        read = write = 0.0
        for entry in params.get("TransactItems", []):
            if "ConditionCheck" in entry:
                read += 2.0  # a condition check is billed as a transactional read of the item
            elif "Put" in entry:
                write += 2.0 * _units(_size(entry["Put"].get("Item")), 1024)
            else:
                write += 2.0
        return read, write
    return 0.0, 0.0


class CallCounter:
    """Counts calls by (origin, entry point, service, operation). Thread-safe: the runtime is
    multi-threaded."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tallies: dict[tuple[str, str, str, str], Tally] = defaultdict(Tally)
        self._since = time.time()

    def on_params(self, params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        # Runs once per API call (retries of one call are attempts inside it), before it is sent.
        origin, entry = caller_origin()
        context[ORIGIN_KEY] = origin, entry
        context["bench_params"] = params
        context["bench_started"] = time.perf_counter()
        key = (origin, entry, model.service_model.service_name, model.name)
        with self._lock:
            self._tallies[key].calls += 1

    def on_result(self, http_response: Any, parsed: dict[str, Any], model: Any, context: dict[str, Any],
                  **_: Any) -> None:
        origin, entry = context.get(ORIGIN_KEY, ("other", "-"))
        elapsed = time.perf_counter() - context.get("bench_started", time.perf_counter())
        service = model.service_model.service_name
        read = written = 0
        read_units = write_units = 0.0
        if service == "dynamodb" and http_response is not None and http_response.status_code < 300:
            read, written = _dynamodb_items(model.name, context.get("bench_params") or {}, parsed or {})
            read_units, write_units = _dynamodb_units(model.name, context.get("bench_params") or {}, parsed or {})
        with self._lock:
            tally = self._tallies[(origin, entry, service, model.name)]
            tally.items_read += read
            tally.items_written += written
            tally.read_units += read_units
            tally.write_units += write_units
            tally.seconds += elapsed
            tally.max_seconds = max(tally.max_seconds, elapsed)
            if http_response is None or http_response.status_code >= 300:
                tally.errors += 1

    def reset(self) -> None:
        with self._lock:
            self._tallies.clear()
            self._since = time.time()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            rows = [
                {"origin": o, "entry": e, "service": s, "operation": op, "calls": t.calls, "errors": t.errors,
                 "itemsRead": t.items_read, "itemsWritten": t.items_written,
                 "readUnits": round(t.read_units, 2), "writeUnits": round(t.write_units, 2),
                 "seconds": round(t.seconds, 6), "maxSeconds": round(t.max_seconds, 6)}
                for (o, e, s, op), t in sorted(self._tallies.items())
            ]
            return {"since": self._since, "at": time.time(), "calls": rows}


COUNTER = CallCounter()

# SQLite calls the progress handler every this many virtual-machine steps.
SQLITE_STEP_GRANULARITY = 10


class StepCounter:
    """SQLite virtual-machine steps, by the origin of the statement (as caller_origin tells it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._steps: dict[str, int] = defaultdict(int)

    def tick(self) -> int:
        origin, _ = caller_origin()
        with self._lock:
            self._steps[origin] += SQLITE_STEP_GRANULARITY
        return 0  # go on with the statement

    def reset(self) -> None:
        with self._lock:
            self._steps.clear()

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._steps)


STEPS = StepCounter()


def install_sqlite_counter() -> None:
    """Give every connection the local backend opens a progress handler that counts its steps."""
    from infra.local.sqlite.db import Database

    original_open = Database._open

    def opened(self: Any) -> Any:
        connection = original_open(self)
        connection.set_progress_handler(STEPS.tick, SQLITE_STEP_GRANULARITY)
        return connection

    Database._open = opened  # type: ignore[method-assign]


def install_hook() -> None:
    """Make every botocore session (boto3's and PynamoDB's alike) report its calls to COUNTER."""
    import botocore.session

    original_init = botocore.session.Session.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        self.register("provide-client-params", COUNTER.on_params, unique_id="bench-count-params")
        self.register("after-call", COUNTER.on_result, unique_id="bench-count-result")

    botocore.session.Session.__init__ = init  # type: ignore[method-assign]


# the control server -------------------------------------------------------------------------------


def _backend() -> Any:
    from chalicelib import wiring

    return wiring.backend()


def job_state(job_id: str) -> dict[str, Any]:
    backend = _backend()
    job = backend.jobs.get_job(job_id)
    if job is None:
        return {"found": False}
    page = backend.executions.list_executions(job_id, 1, 100, total=job.execution_count)
    return {
        "found": True,
        "createdAt": job.created_at,
        "executionCount": job.execution_count,
        "active": sorted(job.active),
        "executions": [
            {"executionId": e.execution_id, "status": e.status.value, "createdAt": e.created_at,
             "startedAt": e.started_at, "finishedAt": e.finished_at, "dueAt": e.due_at,
             "timelineEntries": len(e.timeline), **_item_bytes(backend, e)}
            for e in page.items
        ],
    }


def _item_bytes(backend: Any, execution: Any) -> dict[str, int]:
    """The size DynamoDB bills of the execution's item as stored, and of its timeline attribute
    (aws backend only): an update is billed a write unit per KB of the larger of the item before
    and after it, so this size decides what each write to the execution costs."""
    if backend.name != "aws":
        return {}
    from chalicelib.adapters.dynamo.tables import get_or_none

    item = get_or_none(backend.extras["tables"].Execution, execution.job_id, execution.execution_id)
    if item is None:
        return {}
    stored = item.serialize()
    timeline = stored.get("timeline")
    return {"itemBytes": sum(len(name.encode()) + _billed(value) for name, value in stored.items()),
            "timelineBytes": len("timeline") + _billed(timeline) if timeline else 0}


def _billed(value: dict[str, Any]) -> int:
    """The bytes DynamoDB bills for one typed attribute value (its documented sizing rules)."""
    kind, inner = next(iter(value.items()))
    if kind == "S":
        return len(inner.encode())
    if kind == "N":
        return len(inner.lstrip("-").replace(".", "")) // 2 + 1 + (1 if inner.startswith("-") else 0)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(v.encode()) for v in inner)
    if kind == "M":
        return 3 + sum(len(k.encode()) + _billed(v) + 1 for k, v in inner.items())
    if kind == "L":
        return 3 + sum(_billed(v) + 1 for v in inner)
    return len(json.dumps(inner))


def seed_tasks(count: int) -> dict[str, Any]:
    """Add `count` tasks at the end of the task list, as the store lays them out (dense `seq`, the
    tasks counter, the statistics): posting 10,000 jobs over HTTP would take minutes."""
    backend = _backend()
    if backend.name == "local":
        return _seed_local_tasks(backend, count)
    from pynamodb.expressions.operand import Path

    from chalicelib.adapters.dynamo.tables import STATS_PREFIX, TASK_LIST_BUCKET, TASKS_COUNTER_ID, get_or_none

    started = time.monotonic()
    tables = backend.extras["tables"]
    TaskM = tables.Task
    item = tables.guard(lambda: get_or_none(TaskM, TASKS_COUNTER_ID))
    total = int(item.total) if item is not None and item.total else 0
    at = time.time()
    with TaskM.batch_write() as batch:
        for n in range(1, count + 1):
            batch.save(TaskM(task_id=f"seeded-{total + n:06d}", list_bucket=TASK_LIST_BUCKET, seq=total + n,
                             created_at=at, last_modified_at=at, jobs_count=0))
    TaskM(task_id=TASKS_COUNTER_ID).update(actions=[TaskM.total.set(total + count)])
    TaskM(task_id=f"{STATS_PREFIX}0").update(actions=[Path("tasks").add(count)])  # /status counts them
    return {"first": total + 1, "last": total + count, "total": total + count,
            "seconds": round(time.monotonic() - started, 3)}


def seed_executions(job_id: str, count: int) -> dict[str, Any]:
    """Add `count` finished executions to an existing job, with the seq numbers and counter the
    store keeps, so the job's pages are what `count` PUTs of the job would have left."""
    from chalicelib.adapters.dynamo.mapping import execution_to_item
    from chalicelib.domain.model import Execution, ExecutionStatus, new_id

    started = time.monotonic()
    backend = _backend()
    if backend.name == "local":
        return _seed_local_executions(backend, job_id, count)
    tables = backend.extras["tables"]
    ExecM, JobM = tables.Execution, tables.Job
    job = backend.jobs.get_job(job_id)
    if job is None:
        raise LookupError(f"no job {job_id}")
    have = job.execution_count
    at = time.time()
    with ExecM.batch_write() as batch:
        for seq in range(have + 1, have + count + 1):
            execution = Execution(task_id=job.task_id, job_id=job_id, execution_id=new_id(), image=job.spec.image,
                                  command=job.spec.command, status=ExecutionStatus.DONE, created_at=at,
                                  started_at=at, finished_at=at, exit_code=0)
            batch.save(execution_to_item(ExecM, execution, seq))
    JobM(job_id=job_id).update(actions=[JobM.execution_count.set(have + count)])
    return {"executionCount": have + count, "seconds": round(time.monotonic() - started, 3)}


def _seed_local_tasks(backend: Any, count: int) -> dict[str, Any]:
    """The local backend's layout: rows numbered on from the tasks counter, which goes up by
    `count`, in one transaction (so the counter and the rows never disagree)."""
    from infra.local.sqlite.backend import handles_of
    from infra.local.sqlite.statistics import TASKS, bump, counter

    started = time.monotonic()
    at = time.time()
    with handles_of(backend).db.write() as connection:
        total = counter(connection, TASKS)
        connection.executemany(
            "INSERT INTO tasks (task_id, seq, created_at, last_modified_at, jobs_count) VALUES (?, ?, ?, ?, 0)",
            ((f"seeded-{total + n:06d}", total + n, at, at) for n in range(1, count + 1)))
        bump(connection, {TASKS: count})
    return {"first": total + 1, "last": total + count, "total": total + count,
            "seconds": round(time.monotonic() - started, 3)}


def _seed_local_executions(backend: Any, job_id: str, count: int) -> dict[str, Any]:
    """Finished executions appended to a job as the local store appends them (the next seq
    numbers, the job's execution count, the per-status counter), in one transaction."""
    from chalicelib.domain.model import Execution, ExecutionStatus, new_id
    from infra.local.sqlite import rows
    from infra.local.sqlite.backend import handles_of

    started = time.monotonic()
    at = time.time()
    with handles_of(backend).db.write() as connection:
        job = rows.load_job(connection, job_id)
        if job is None:
            raise LookupError(f"no job {job_id}")
        have = job.execution_count
        for seq in range(have + 1, have + count + 1):
            execution = Execution(task_id=job.task_id, job_id=job_id, execution_id=new_id(), image=job.spec.image,
                                  command=job.spec.command, status=ExecutionStatus.DONE, created_at=at,
                                  started_at=at, finished_at=at, exit_code=0)
            rows.insert_execution(connection, execution, seq)
        connection.execute("UPDATE jobs SET execution_count = ? WHERE job_id = ?", (have + count, job_id))
    return {"executionCount": have + count, "seconds": round(time.monotonic() - started, 3)}


class _Control(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _route(self) -> None:
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        try:
            if (self.command, parts.path) == ("GET", "/counts"):
                self._answer(200, {**COUNTER.snapshot(), "sqliteSteps": STEPS.snapshot()})
            elif (self.command, parts.path) == ("POST", "/reset"):
                COUNTER.reset()
                STEPS.reset()
                self._answer(200, {"reset": True})
            elif (self.command, parts.path) == ("GET", "/job"):
                self._answer(200, job_state(query["jobId"]))
            elif (self.command, parts.path) == ("POST", "/seed-tasks"):
                self._answer(200, seed_tasks(int(query["count"])))
            elif (self.command, parts.path) == ("POST", "/seed-executions"):
                self._answer(200, seed_executions(query["jobId"], int(query["count"])))
            else:
                self._answer(404, {"error": f"no {self.command} {parts.path}"})
        except Exception as error:  # noqa: BLE001 - the bench reads the message and stops
            self._answer(500, {"error": f"{type(error).__name__}: {error}"})

    do_GET = do_POST = _route

    def log_message(self, format: str, *args: Any) -> None:  # the base class's signature
        pass


def start_control_server(port: int) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", port), _Control)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="bench-control", daemon=True).start()
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--control-port", type=int, required=True)
    parser.add_argument("--backend", choices=("local", "aws"), default="local")
    parser.add_argument("--state", help="the local backend's state file (started empty)")
    parser.add_argument("--count-sqlite", action="store_true", help="count SQLite steps (figure 5)")
    args = parser.parse_args(argv)
    install_hook()
    if args.count_sqlite:
        install_sqlite_counter()
    start_control_server(args.control_port)
    from infra.local import runtime

    forwarded = ["--port", str(args.port), "--backend", args.backend]
    if args.backend == "local":
        if not args.state:
            parser.error("--state is required with the local backend (never the user's own state file)")
        forwarded += ["--state", args.state, "--fresh"]
    return runtime.main(forwarded)


if __name__ == "__main__":
    sys.exit(main())
