"""One schedule: the real services and handlers on the local backend (one SQLite file, its
queues and scheduler) with the simulated ECS, the fault layer around every port, and a driver
that plays the clients, the queues' event sources, the scheduler and the reconciler in virtual
time, then a quiet period without faults, and hands what it saw to the invariants."""
from __future__ import annotations

import heapq
import itertools
import json
import logging
import os
import random
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from chalicelib import handlers, wiring
from chalicelib.domain import model
from chalicelib.domain.ecs import parse_task_event
from chalicelib.domain.errors import Conflict, NotFound, ValidationError
from chalicelib.domain.messages import decode_job_message, decode_notification
from chalicelib.domain.model import ACTIVE_STATUSES
from chalicelib.observability import logger, metrics
from chalicelib.ports import Backend
from chalicelib.services import jobs as job_services
from infra.local.sqlite.db import Database
from infra.local.sqlite.logs import LocalLogEvents, LocalLogReader, LocalLogStore
from infra.local.sqlite.mail import LocalMailer
from infra.local.sqlite.queues import (
    EVENTS,
    JOBS,
    NOTIFY,
    LocalJobQueue,
    LocalNotifyQueue,
    LocalQueueDepths,
    LocalQueues,
    ReceivedMessage,
    create_queues,
)
from infra.local.sqlite.scheduler import LocalScheduler
from infra.local.sqlite.stores import open_stores
from tests.contract.support import FakeClock

from .containers import SimulatedRunner
from .faults import FaultPlan, FaultyPort, FaultyPoster, FaultyQueue, FaultyRunner, HandlerKilled, Rates
from .ledger import Ledger
from .workload import Action, Workload, build

START = 1_900_000_000.0  # virtual epoch of every schedule (2030-03-17)
RECONCILE_INTERVAL = 60.0  # the sweeper's EventBridge rate(1 minute)
STOP_GRACE_SECONDS = 30.0  # ECS stopTimeout: SIGTERM, then SIGKILL
DELIVERY_ALLOWANCE = 30.0  # an event source's delivery and one visibility timeout of a failed handler
# How long after it should have stopped (a stop, a timeout, its execution ended) a container may
# still live: one reconcile pass to notice, the stop grace, and the delivery of what it says.
STOP_BOUND = RECONCILE_INTERVAL + STOP_GRACE_SECONDS + DELIVERY_ALLOWANCE
VISIBILITY_TIMEOUT = 30.0
MAX_RECEIVE_COUNT = 5
SCHEDULER = "scheduler"
QUIET_SECONDS = 3600.0  # faults off, no new work: time for every job to end and every repair to happen
CLIENT_ATTEMPTS = 3  # a client tries a request that failed (5xx, no answer) this often
CLIENT_RETRY_SECONDS = 10.0
MISSING_SECONDS = 4.0  # at most this long after RunTask, DescribeTasks may not know the task yet
ID_FACTORY = "new_id"  # the function that makes job and execution ids, in the modules that call it
EXPECTED_REFUSALS = (ValidationError, Conflict, NotFound)  # 4xx: the client does not try again


@dataclass(frozen=True)
class Budget:
    """The size of one schedule. A seed names a schedule only with its budget: CI and `make
    faults` use the same one (they differ in how many schedules they run), so any seed replays."""

    jobs: tuple[int, int] = (2, 6)
    minutes: tuple[float, float] = (10, 30)


def _fault_rates(rng: random.Random) -> Rates:
    """Each schedule its own intensity: some nearly calm, some stormy."""
    storm = rng.choice([0.2, 0.5, 1.0, 1.0, 2.0])
    return Rates(call=0.015 * storm, throttle=0.05 * storm, duplicate=0.04 * storm, delay=0.04 * storm,
                 lose_event=0.05 * storm, lose_delete=0.02 * storm)


def _summary(body: str) -> str:
    """A queue message in a few words, for the trace."""
    data = json.loads(body)
    detail = data.get("detail")
    if isinstance(detail, dict):
        exit_code = (detail.get("containers") or [{}])[0].get("exitCode")
        return f"ecs {detail.get('lastStatus')} exit={exit_code} execution={str(detail.get('startedBy'))[-8:]}"
    kind = data.get("kind", "launch")
    execution = str(data.get("executionId") or "")[-8:]
    if kind in ("webhook", "email"):
        return f"{kind} {data.get('event')} attempt={data.get('attempt')} execution={execution}"
    return f"{kind} job={str(data.get('jobId'))[-8:]}" + (f" execution={execution}" if execution else "")


class _WatchedQueues(LocalQueues):
    """The local queues, telling the driver when their contents may have changed, so it asks
    the database when the next message is due only then."""

    changed = True

    def send_in(self, connection: Any, name: str, body: str, delay_seconds: float = 0) -> str:
        self.changed = True
        return super().send_in(connection, name, body, delay_seconds)

    def receive(self, name: str, max_messages: int = 1, visibility_timeout: float | None = None,
                wait_seconds: float = 0.0) -> list[ReceivedMessage]:
        self.changed = True
        return super().receive(name, max_messages, visibility_timeout, wait_seconds)

    def change_visibility(self, name: str, receipt_handle: str, timeout: float) -> bool:
        self.changed = True
        return super().change_visibility(name, receipt_handle, timeout)


class _Unserved:
    """Ports the harness never drives (live logs over websockets): using one is a harness bug."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, method: str) -> Any:
        raise AssertionError(f"the fault harness does not serve {self._name}.{method}")


@contextmanager
def _deterministic_ids(rng: random.Random) -> Iterator[None]:
    """Ids drawn from the schedule's RNG (in creation order, as UUID v7 ids are), so a seed
    replays the very same schedule: the order of a job's executions depends on their ids."""
    counter = itertools.count(1)

    def new_id() -> str:
        return str(uuid.UUID(int=(next(counter) << 80) | rng.getrandbits(80)))

    modules = (model, job_services)  # new_execution's module, and the one that names new jobs
    saved = [module.new_id for module in modules]
    for module in modules:
        setattr(module, ID_FACTORY, new_id)
    try:
        yield
    finally:
        for module, original in zip(modules, saved, strict=True):
            setattr(module, ID_FACTORY, original)


def environment(workload: Workload) -> dict[str, str]:
    """The settings of one schedule's deployment (read by wiring through chalicelib.config)."""
    return {
        "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1", "POWERTOOLS_METRICS_DISABLED": "1",
        "POOLS": workload.limits.pools_json(), "JOBS_QUEUE_URL": f"local:{JOBS}", "EVENTS_QUEUE_URL": f"local:{EVENTS}",
        "NOTIFY_QUEUE_URL": f"local:{NOTIFY}", "MAIL_SENDER": "fastlane@example.com",
        "SWEEP_GRACE_SECONDS": "120", "WEBHOOK_BACKOFF_MIN": "5", "NOTIFY_BASE_URL": "https://fastlane.example.com",
    }


@contextmanager
def _settings(values: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    level = logger.log_level
    logger.setLevel(logging.CRITICAL)  # the services' logs of injected faults are noise here
    try:
        yield
    finally:
        logger.setLevel(level)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        wiring.reset()


class Simulation:
    """One schedule, from its seed."""

    def __init__(self, seed: int, directory: str, budget: Budget = Budget(), *, whole_trace: bool = False) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.clock = FakeClock(START)
        self.workload = build(self.rng, jobs=budget.jobs, duration=(budget.minutes[0] * 60, budget.minutes[1] * 60),
                              start=START)
        self.plan = FaultPlan(random.Random(self.rng.getrandbits(64)), _fault_rates(self.rng), self.clock, START,
                              keep_trace=whole_trace)
        self.ledger = Ledger(self.clock)
        self.job_of_plan: dict[int, str] = {}  # the job id a client was told for each plan
        self.handler_errors: list[str] = []  # exceptions of handlers that no fault explains
        self.faults_off_at = START + self.workload.duration
        self.end = self.faults_off_at + QUIET_SECONDS
        self._path = os.path.join(directory, f"schedule-{seed}.db")
        self._heap: list[tuple[float, int, str, Callable[[], None]]] = []
        self._order = itertools.count()
        self._moments: dict[str, float] = {}
        self._scheduler_calls, self._scheduler_seen = 0, -1  # schedules put or deleted, and when last looked

    # assembly -------------------------------------------------------------------------------------

    def _backend(self) -> Backend:
        plan, ledger, clock = self.plan, self.ledger, self.clock
        self.db = Database(self._path)
        stores = open_stores(self.db, clock)
        self.stores = stores
        self.queues = _WatchedQueues(self.db, clock)
        create_queues(self.queues, VISIBILITY_TIMEOUT, MAX_RECEIVE_COUNT)
        self.scheduler = LocalScheduler(self.db, self.queues, clock=clock)
        self.runner = SimulatedRunner(clock, self._emit, stop_grace_seconds=STOP_GRACE_SECONDS,
                                      missing_seconds=lambda: round(self.rng.uniform(0, MISSING_SECONDS), 3),
                                      note=plan.note)
        log_store = LocalLogStore(self.db)
        return Backend(
            name="local",
            jobs=FaultyPort(stores.jobs, "jobs", plan, ledger.jobs_call),
            executions=FaultyPort(stores.executions, "executions", plan),
            pools=FaultyPort(stores.pools, "pools", plan),
            schedules=FaultyPort(stores.schedules, "schedules", plan),
            statistics=stores.statistics,
            deliveries=FaultyPort(stores.deliveries, "deliveries", plan),
            connections=stores.connections,
            job_queue=FaultyQueue(LocalJobQueue(self.queues), "jobs-queue", plan),
            notify_queue=FaultyQueue(LocalNotifyQueue(self.queues), "notify-queue", plan, messages_faulted=False),
            queue_depths=LocalQueueDepths(self.queues),
            scheduler=FaultyPort(self.scheduler, "scheduler", plan, self._scheduler_changed),
            runner=FaultyRunner(self.runner, "ecs", plan),
            logs=LocalLogReader(log_store),
            log_events=LocalLogEvents(log_store),
            sockets=_Unserved("sockets"),
            starter=_Unserved("starter"),
            mailer=FaultyPort(LocalMailer(self.db, "fastlane@example.com", clock), "mail", plan, ledger.mail_call),
            webhooks=FaultyPoster(ledger.receiver, plan),
            read_secret=_Unserved("secrets"),
        )

    def _scheduler_changed(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any) -> None:
        self._scheduler_calls += 1

    def _emit(self, event: dict[str, Any]) -> None:
        """EventBridge: the runner's task state change to the events queue, maybe lost, late or twice."""
        where = f"events {event['detail']['lastStatus']} {event['detail']['startedBy'][-8:]}"
        if self.plan.event_lost(where):
            return
        body = json.dumps(event)
        self.queues.send(EVENTS, body, self.plan.delay(where))
        if self.plan.duplicated(where):
            self.queues.send(EVENTS, body, self.plan.delay(where))

    # the driver -----------------------------------------------------------------------------------

    def _at(self, moment: float, label: str, action: Callable[[], None]) -> None:
        heapq.heappush(self._heap, (moment, next(self._order), label, action))

    def run(self) -> Simulation:
        with _settings(environment(self.workload)), _deterministic_ids(self.rng):
            jitter = random.getstate()
            random.seed(self.rng.getrandbits(64))  # the engine's backoff jitter, from the seed too
            backend = self._backend()
            wiring.use_backend(backend, clock=self.clock, sleep=self.clock.advance)
            try:
                for action in self.workload.actions:
                    self._at(START + action.at, f"client {action.kind} plan {action.plan}",
                             self._request(action, CLIENT_ATTEMPTS))
                self._at(START + self.rng.uniform(0, RECONCILE_INTERVAL), "reconcile", self._reconcile)
                self._at(self.faults_off_at, "quiet", self._quiet)
                self._loop()
                self.report = self._snapshot()
            finally:
                random.setstate(jitter)
                self.db.close()
                for suffix in ("", "-wal", "-shm"):
                    if os.path.exists(self._path + suffix):
                        os.remove(self._path + suffix)
        return self

    def _queue_moments(self) -> dict[str, float]:
        """When each queue (and the scheduler, under its own name) next has something to hand out."""
        if not self.queues.changed and self._scheduler_calls == self._scheduler_seen:
            return self._moments
        self.queues.changed, self._scheduler_seen = False, self._scheduler_calls
        with self.db.read() as connection:
            rows = connection.execute("SELECT queue, MIN(visible_at) FROM queue_messages WHERE queue IN (?, ?, ?)"
                                      " GROUP BY queue", (JOBS, EVENTS, NOTIFY)).fetchall()
            fire = connection.execute("SELECT MIN(next_fire) FROM scheduler_schedules").fetchone()
        moments = {str(row[0]): float(row[1]) for row in rows}
        if fire[0] is not None:
            moments[SCHEDULER] = float(fire[0])
        self._moments = moments
        return moments

    def _loop(self) -> None:
        moments = self._queue_moments()
        while True:
            candidates = [m for m in (self._heap[0][0] if self._heap else None, self.runner.next_due(),
                                      *moments.values()) if m is not None]
            if not candidates:
                return
            moment = max(min(candidates), self.clock.value + 0.001)  # every step a moment of its own
            if moment > self.end:
                return
            self.clock.value = round(moment, 3)
            self.runner.advance()
            if moments.get(SCHEDULER, float("inf")) <= self.clock.value:
                self.scheduler.fire_due()
                self._scheduler_calls += 1
            while self._heap and self._heap[0][0] <= self.clock.value:
                _, _, label, action = heapq.heappop(self._heap)
                if label != "reconcile":
                    self.plan.note(label)
                action()
            moments = self._deliver_visible()
            if metrics.metric_set:
                metrics.clear_metrics()

    def _deliver_visible(self) -> dict[str, float]:
        """Hand every message visible now to its handler, as Lambda's event source does: a
        batch of up to 10, each deleted when its handler returns. Returns the queues' moments."""
        handlers_by_queue = {JOBS: self._handle_job, EVENTS: self._handle_event, NOTIFY: self._handle_notification}
        for _ in range(50):  # a bound: a handler that sends what is due at once cannot loop here forever
            moments = self._queue_moments()
            ready = [name for name, moment in moments.items() if name in handlers_by_queue and moment <= self.clock.value]
            if not ready:
                return moments
            for name in ready:
                batch = self.queues.receive(name, max_messages=10)
                self.plan.shuffle(batch, name)
                for message in batch:
                    self.plan.note(f"deliver {name[9:]} #{message.receive_count} {_summary(message.body)}")
                    try:
                        handlers_by_queue[name](message.body)
                    except HandlerKilled as killed:
                        self.plan.note(f"handler of {name} killed at {killed}")
                        break  # the Lambda is gone: the rest of its batch comes back after the timeout
                    except Exception as error:  # noqa: BLE001 - the message comes back, as with Lambda
                        self._handler_failed(name, error)
                        continue
                    if not self.plan.delete_lost(name):
                        self.queues.delete(name, message.receipt_handle)
        return self._queue_moments()

    def _handler_failed(self, name: str, error: Exception) -> None:
        text = f"{type(error).__name__}: {error}"
        self.plan.note(f"handler of {name} failed: {text}")
        if "injected" not in str(error) and type(error).__name__ not in ("DeliveryInProgress",):
            self.handler_errors.append(f"{self.clock.value:.3f} {name}: {text}")

    @staticmethod
    def _handle_job(body: str) -> None:
        handlers.handle_job_message(decode_job_message(body))

    @staticmethod
    def _handle_event(body: str) -> None:
        change = parse_task_event(json.loads(body))
        if change is not None:
            wiring.get_engine().handle_task_change(change)

    @staticmethod
    def _handle_notification(body: str) -> None:
        wiring.get_notification_sender().handle(decode_notification(body))

    def _reconcile(self) -> None:
        try:
            repaired = {name: count for name, count in handlers.sweep().items() if count}
            if repaired:
                self.plan.note(f"reconcile repaired {repaired}")
        except HandlerKilled as killed:
            self.plan.note(f"reconciler killed at {killed}")
        except Exception as error:  # noqa: BLE001 - the next pass tries again
            self._handler_failed("reconciler", error)
        if self._settled():
            self.end = self.clock.value  # nothing can change any more: the quiet period is over
        self._at(self.clock.value + RECONCILE_INTERVAL, "reconcile", self._reconcile)

    def _settled(self) -> bool:
        """Quiet, and nothing left to happen: no container, no active execution, no event or
        notification on its way, no schedule pending (what is left on the jobs queue, timeout
        checks and launches of ended executions, does nothing)."""
        if self.plan.enabled or self.clock.value < self.faults_off_at + 2 * STOP_BOUND:
            return False
        if self.runner.next_due() is not None or any(container.live for container in self.runner.containers):
            return False
        if any(self.queues.depth(name) != {"visible": 0, "inFlight": 0, "delayed": 0} for name in (EVENTS, NOTIFY)):
            return False
        if self.stores.schedules.scheduled_jobs(limit=1):
            return False
        return not any(self.stores.executions.active_executions(status, limit=1) for status in ACTIVE_STATUSES)

    # clients --------------------------------------------------------------------------------------

    def _request(self, action: Action, attempts: int) -> Callable[[], None]:
        return lambda: self._client(action, attempts)

    def _client(self, action: Action, attempts: int) -> None:
        service = wiring.get_job_service()
        task_id = self.workload.tasks[action.plan]
        job_id = self.job_of_plan.get(action.plan)
        try:
            if action.kind == "post":
                self.job_of_plan[action.plan] = service.enqueue(task_id, action.payload, "198.51.100.7").job.job_id
            elif job_id is None:
                return  # its post never got an answer: the client knows no job to act on
            elif action.kind == "put":
                service.enqueue(task_id, action.payload, "198.51.100.7", job_id=job_id)
            elif action.kind == "stop":
                service.stop_job(service.job(task_id, job_id))
                self.ledger.stopped.setdefault(job_id, []).append(self.clock.value)
            elif action.kind == "retry":
                service.retry_job(service.job(task_id, job_id))
        except EXPECTED_REFUSALS as refused:
            self.plan.note(f"client {action.kind} plan {action.plan} refused: {refused}")
        except (Exception, HandlerKilled) as error:  # noqa: BLE001 - a 5xx or no answer: the client tries again
            self.plan.note(f"client {action.kind} plan {action.plan} failed: {type(error).__name__}")
            if attempts > 1:
                self._at(self.clock.value + CLIENT_RETRY_SECONDS, f"client {action.kind} plan {action.plan} again",
                         self._request(action, attempts - 1))

    def _quiet(self) -> None:
        """The end of the workload: no more faults, no more client requests but the stops of
        every cron job; then only deliveries and reconcile passes until the end."""
        self.plan.enabled = False
        self._heap = [entry for entry in self._heap if not entry[2].startswith("client")]
        heapq.heapify(self._heap)
        for plan, kind in self.workload.kinds.items():
            if kind == "cron":
                for job_id in self._jobs_of_plan(plan):
                    service = wiring.get_job_service()
                    service.stop_job(service.job(self.workload.tasks[plan], job_id))
                    self.ledger.stopped.setdefault(job_id, []).append(self.clock.value)

    def _jobs_of_plan(self, plan: int) -> list[str]:
        return [job_id for job_id, specs in self.ledger.specs.items() if specs[0][1].metadata.get("plan") == plan]

    # what the invariants read ---------------------------------------------------------------------

    def _snapshot(self) -> dict[str, Any]:
        """The stored state at the end, read through the stores without faults."""
        stores = self.stores
        jobs, executions = {}, {}
        for job_id in self.ledger.specs:
            job = stores.jobs.get_job(job_id)
            if job is None:
                continue
            jobs[job_id] = job
            page = stores.executions.list_executions(job_id, 1, 1000, total=job.execution_count)
            executions[job_id] = sorted(page.items, key=lambda execution: execution.seq)
        names = [pool.name for pool in wiring.get_engine().pools]
        return {"jobs": jobs, "executions": executions, "pool_running": stores.pools.pool_running(names),
                "pool_limits": {pool.name: pool.max_running for pool in wiring.get_engine().pools},
                "stats": stores.statistics.stats(),
                "dead_letters": {name: self.queues.depth(name + "-dlq")["visible"] for name in (JOBS, EVENTS, NOTIFY)}}
