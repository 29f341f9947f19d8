"""The scale simulation: a burst of jobs through the real dispatch, monitor and reconcile code on
the aws adapters, in one process and in virtual time. DynamoDB is moto in process; ECS and SQS
are the stand-ins of scale_fargate and scale_sqs; Lambda's event source mappings deliver the
queues to the real handler bodies (docs/performance.md#scale-simulation)."""
from __future__ import annotations

import dataclasses
import logging
import os
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from unittest.mock import patch

from .report import Row
from .scale_fargate import FakeEcs
from .scale_moto import fast_dynamodb
from .scale_sqs import EventSourceMapping, FakeSqs

START = 1_800_000_000.0  # virtual t=0, as epoch seconds (the engine stores epoch times)
PREFIX = "scale"
TRIVIAL = {"image": "ubuntu", "command": "true"}
ACCOUNT_CONCURRENCY = 1000  # Lambda's default concurrent executions per account and region
RECONCILE_EVERY = 60.0  # the reconciler's schedule, rate(1 minute)


@dataclass(frozen=True)
class Latencies:
    """Modelled virtual seconds each call takes from inside a Lambda function (not measured in
    AWS: assumptions in the range AWS's in-region latencies are usually quoted in)."""

    dynamodb: float = 0.006
    sqs: float = 0.010
    run_task: float = 0.150
    ecs: float = 0.040  # the other ECS calls
    invocation: float = 0.010  # Lambda's own overhead per invocation (warm)

    def of(self, operation: str) -> float:
        if operation == "ecs:RunTask":
            return self.run_task
        service = operation.split(":", 1)[0]
        return {"dynamodb": self.dynamodb, "sqs": self.sqs}.get(service, self.ecs)


class VirtualClock:
    """The time the services read (wiring's clock) and how they wait (wiring's sleep). During an
    invocation each call moves it on by its modelled latency, and a wait by its length."""

    def __init__(self, latencies: Latencies) -> None:
        self.now = START
        self.latencies = latencies
        self.charging = False
        self.calls: dict[str, int] = {}

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)

    def spend(self, operation: str) -> None:
        if self.charging:
            self.now += self.latencies.of(operation)
            self.calls[operation] = self.calls.get(operation, 0) + 1


@contextmanager
def _quiet() -> Iterator[None]:
    """The handlers log a line per launch and per throttled launch, and flush metrics (EMF lines on
    stdout) after each batch: thousands of lines, off."""
    from chalicelib.observability import logger, metrics

    level = logger.log_level
    logger.setLevel(logging.CRITICAL)
    add, flush = metrics.add_metric, metrics.flush_metrics
    metrics.add_metric = lambda **_: None  # type: ignore[method-assign]
    metrics.flush_metrics = metrics.clear_metrics  # type: ignore[method-assign]
    try:
        yield
    finally:
        logger.setLevel(level)
        metrics.add_metric, metrics.flush_metrics = add, flush  # type: ignore[method-assign]


class Simulation:
    def __init__(self, jobs: int, seed: int = 1, latencies: Latencies | None = None,
                 max_virtual_seconds: float | None = None) -> None:
        self.jobs = jobs
        self.rng = random.Random(seed)
        self.clock = VirtualClock(latencies or Latencies())
        self.sqs = FakeSqs(self.clock, self.clock.spend)
        self.jobs_queue = self.sqs.create(f"{PREFIX}-jobs")
        self.events_queue = self.sqs.create(f"{PREFIX}-events")
        self.ecs = FakeEcs(self.clock, self._deliver_event, spend=self.clock.spend, rng=self.rng)
        lower_bound = max(0.0, (jobs - 100) / 20)
        self.max_virtual_seconds = max_virtual_seconds or 3 * lower_bound + 1200
        self.mappings: list[EventSourceMapping] = []

    def _deliver_event(self, event: dict[str, Any], at: float) -> None:
        import json

        self.sqs.put(self.events_queue.url, json.dumps(event), at)

    def _free_concurrency(self) -> int:
        return ACCOUNT_CONCURRENCY - sum(m.in_flight(self.clock.now) for m in self.mappings)

    def _invoke(self, handler: Any) -> Any:
        clock = self.clock

        def invoke(records: list[dict[str, Any]], at: float) -> tuple[dict[str, Any], float]:
            clock.now, clock.charging = at + clock.latencies.invocation, True
            try:
                response = handler({"Records": records})
            finally:
                ended, clock.charging = clock.now, False
                clock.now = at
            return response or {}, ended

        return invoke

    def _run_sweep(self, at: float) -> None:
        from chalicelib import handlers

        self.clock.now, self.clock.charging = at, True
        try:
            handlers.reconcile()
        finally:
            self.clock.charging, self.clock.now = False, at

    def run(self) -> dict[str, Any]:
        import boto3
        from moto import mock_aws

        started = time.monotonic()
        env = {"AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
               "AWS_SECRET_ACCESS_KEY": "testing", "POWERTOOLS_METRICS_DISABLED": "1",
               "POWERTOOLS_TRACE_DISABLED": "1", "FASTLANE_PREFIX": PREFIX, "TASKS_TABLE": f"{PREFIX}-tasks",
               "JOBS_TABLE": f"{PREFIX}-jobs", "EXECUTIONS_TABLE": f"{PREFIX}-executions",
               "JOBS_QUEUE_URL": self.jobs_queue.url, "EVENTS_QUEUE_URL": self.events_queue.url,
               "JOBS_DLQ_URL": self.jobs_queue.dead_letter.url if self.jobs_queue.dead_letter else "",
               "EVENTS_DLQ_URL": self.events_queue.dead_letter.url if self.events_queue.dead_letter else "",
               "NOTIFY_QUEUE_URL": "", "POOLS": "", "MAX_RUNNING": "0", "AWS_ENDPOINT_URL": ""}
        from chalicelib import handlers, wiring

        with patch.dict(os.environ, env), mock_aws(), fast_dynamodb(), _quiet():
            wiring.reset()
            try:
                backend = self._backend()
                wiring.use_backend(backend, clock=self.clock, sleep=self.clock.sleep)
                tables = backend.extras["tables"]
                tables.connection().client.meta.events.register(
                    "before-call.dynamodb", lambda model, **_: self.clock.spend(f"dynamodb:{model.name}"))
                accepted = self._post()
                posted = time.monotonic()
                self.mappings = [
                    EventSourceMapping(self.jobs_queue, self._invoke(handlers.dispatch_jobs),
                                       free_concurrency=self._free_concurrency),
                    EventSourceMapping(self.events_queue, self._invoke(handlers.monitor_tasks),
                                       free_concurrency=self._free_concurrency),
                ]
                drained_at = self._loop(backend)
                result = self._outcome(tables, accepted, drained_at)
                dynamodb = boto3.client("dynamodb", region_name="us-east-1")
                result["itemsInTables"] = {t: dynamodb.describe_table(TableName=t)["Table"].get("ItemCount")
                                           for t in (f"{PREFIX}-jobs", f"{PREFIX}-executions")}
            finally:
                wiring.reset()
        result["realSeconds"] = round(time.monotonic() - started, 1)
        result["realSecondsPosting"] = round(posted - started, 1)
        return result

    def _backend(self) -> Any:
        from chalicelib import wiring
        from chalicelib.adapters.dynamo.tables import Tables
        from chalicelib.adapters.ecs import EcsRunner
        from chalicelib.adapters.queues import SqsJobQueue, SqsQueueDepths
        from chalicelib.config import get_settings

        settings = get_settings()
        Tables(settings).create()  # as the component tier and the local runtime create them
        built = wiring.build_aws_backend(settings)
        return dataclasses.replace(
            built, runner=EcsRunner(self.ecs, settings), job_queue=SqsJobQueue(self.sqs, settings.jobs_queue_url),
            notify_queue=None, queue_depths=SqsQueueDepths(self.sqs, {"jobs": settings.jobs_queue_url,
                                                                      "events": settings.events_queue_url}))

    def _post(self) -> list[tuple[str, str]]:
        """The burst, all at virtual t=0, through the real job service."""
        from chalicelib import wiring

        service = wiring.get_job_service()
        accepted = []
        spec = service.validate("scale-0", dict(TRIVIAL))
        for n in range(self.jobs):
            enqueued = service.enqueue(f"scale-{n % 10}", spec, "203.0.113.1")
            assert enqueued.execution is not None
            accepted.append((enqueued.job.job_id, enqueued.execution.execution_id))
        return accepted

    def _loop(self, backend: Any) -> float | None:
        """Advance virtual time event by event until every job ended (returns that time) or the
        virtual limit passes (returns None)."""
        at = self.clock.now
        end = START + self.max_virtual_seconds
        next_sweep = START + RECONCILE_EVERY
        next_check = START + 10
        while at <= end:
            self.clock.now = at
            self.ecs.advance(at)
            if at >= next_sweep:
                self._run_sweep(at)
                next_sweep += RECONCILE_EVERY
            for mapping in self.mappings:
                mapping.poll(at)
            if at >= next_check:
                if self._all_ended(backend):
                    return at
                quiet = self.ecs.active == 0 and not self.events_queue.messages
                next_check = at + (1.0 if quiet else 10.0)
            wakes = [t for t in (self.ecs.next_change(), next_sweep, next_check,
                                 *(m.next_wake(at) for m in self.mappings)) if t is not None and t > at]
            at = min(wakes)
        return None

    def _all_ended(self, backend: Any) -> bool:
        from chalicelib.domain.model import ExecutionStatus

        stats = backend.statistics.stats()
        return sum(stats.get(s.value, 0) for s in ExecutionStatus if s.is_final) >= self.jobs

    def _outcome(self, tables: Any, accepted: list[tuple[str, str]], drained_at: float | None) -> dict[str, Any]:
        from chalicelib.adapters.dynamo.mapping import execution_from_item

        executions = [execution_from_item(item) for item in tables.Execution.scan()]
        by_job: dict[str, list[Any]] = {}
        for execution in executions:
            by_job.setdefault(execution.job_id, []).append(execution)
        statuses: dict[str, int] = {}
        lost = 0
        for job_id, _ in accepted:
            ended = by_job.get(job_id, [])
            status = ended[-1].status.value if len(ended) == 1 else f"{len(ended)} executions"
            statuses[status] = statuses.get(status, 0) + 1
            lost += status != "done"
        counts = self.ecs.counts
        launches = sorted(counts.launch_times)
        window = launches[-1] - launches[0] if len(launches) > 1 else 0.0
        tasks_of = self.ecs.executions_with_tasks()
        return {
            "jobs": self.jobs,
            "accepted": len(accepted),
            "statuses": statuses,
            "lost": lost,
            "duplicates": sum(1 for n in tasks_of.values() if n > 1),
            "launches": counts.launches,
            "launchRate": round(counts.launches / window, 2) if window else None,
            "launchWindowSeconds": round(window, 1),
            "runTaskCalls": counts.run_task_calls,
            "runTaskPerLaunch": round(counts.run_task_calls / counts.launches, 2) if counts.launches else None,
            "throttles": counts.throttles,
            "replays": counts.replays,
            "conflicts": counts.conflicts,
            "drainSeconds": round(drained_at - START, 1) if drained_at is not None else None,
            "drainLowerBoundSeconds": max(0.0, (self.jobs - 100) / 20),
            "virtualLimitSeconds": self.max_virtual_seconds,
            "launchesPerTenSeconds": _histogram(launches, 10.0),
            "invocations": {m.queue.name: {"invocations": m.invocations, "records": m.records,
                                           "failedRecords": m.failed_records, "peakConcurrency": m.peak}
                            for m in self.mappings},
            "deadLettered": {q.name: len(q.messages) for q in self.sqs.queues.values() if q.name.endswith("-dlq")},
            "callsInInvocations": dict(sorted(self.clock.calls.items())),
        }


def _histogram(times: list[float], width: float) -> list[int]:
    if not times:
        return []
    buckets = [0] * (int((times[-1] - START) // width) + 1)
    for at in times:
        buckets[int((at - START) // width)] += 1
    return buckets


def simulate(jobs: int, seed: int = 1) -> dict[str, Any]:
    return Simulation(jobs, seed).run()


# the rows of the table ----------------------------------------------------------------------------

LAUNCH_GOAL = 0.95 * 20  # launches a second: 95 % of Fargate's sustained launch rate
# Real time: 10,000 jobs in at most 10 minutes; a run of another N is held to the same pace.
REAL_SECONDS_GOAL, REAL_GOAL_JOBS = 600.0, 10_000


def real_seconds_goal(jobs: int) -> float:
    return REAL_SECONDS_GOAL * jobs / REAL_GOAL_JOBS


def rows(result: dict[str, Any]) -> list[Row]:
    """Figure 8: what the simulation of a burst of `jobs` jobs shows."""
    n = f"{result['jobs']:,} jobs"
    rate = result["launchRate"]
    drain, bound = result["drainSeconds"], result["drainLowerBoundSeconds"]
    real = result["realSeconds"]
    per_job_ms = real / max(1, result["jobs"]) * 1000
    real_goal = real_seconds_goal(result["jobs"])
    real_target = f"≤ {real_goal:,.0f} s" + ("" if result["jobs"] == REAL_GOAL_JOBS else " (10 min per 10,000 jobs)")
    return [
        Row("8a", f"scale (simulated, virtual time): launches per second from the first launch to the last "
                  f"({result['launches']:,} launches in {result['launchWindowSeconds']:g} s)",
            f"{rate:.1f}" if rate is not None else "n/a", "launches/s", n, "≥ 19 (95 % of 20/s)",
            rate is not None and rate >= LAUNCH_GOAL, data=result, key="scale.launch_rate", value=rate),
        Row("8b", "  jobs lost: accepted, not ended `done` at the end "
                  f"({', '.join(f'{s} {c}' for s, c in sorted(result['statuses'].items()))})",
            str(result["lost"]), "jobs", n, "0", result["lost"] == 0, key="scale.lost", value=result["lost"]),
        Row("8c", "  duplicate launches: executions with more than one ECS task", str(result["duplicates"]),
            "executions", n, "0", result["duplicates"] == 0, key="scale.duplicates", value=result["duplicates"]),
        Row("8d", "  throttles absorbed: RunTask answers ThrottlingException", f"{result['throttles']:,}", "answers", n,
            key="scale.throttles", value=result["throttles"]),
        Row("8e", f"  RunTask calls per launch ({result['runTaskCalls']:,} calls)",
            f"{result['runTaskPerLaunch']:.2f}" if result["runTaskPerLaunch"] else "n/a", "calls/launch", n,
            key="scale.runtask_per_launch", value=result["runTaskPerLaunch"]),
        Row("8f", f"  time to drain: t=0 → every job ended, against the launch bucket's lower bound (N − 100) / 20 = "
                  f"{bound:g} s" + (f" ({drain / bound:.2f}x it)" if drain and bound else ""),
            f"{drain:g}" if drain is not None else f"not drained in {result['virtualLimitSeconds']:g}", "virtual s", n,
            key="scale.drain_seconds", value=drain),
        Row("8g", f"  real time the simulation took (moto in process: {per_job_ms:.0f} ms a job; posting "
                  f"{result['realSecondsPosting']:g} s)", f"{real:g}", "s", n, real_target, real <= real_goal,
            key="scale.real_seconds", value=real),
    ]
