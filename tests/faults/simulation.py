"""One schedule: the real services and handlers on one backend, under faults, in virtual time.

The backend (deployments.py: the local one's SQLite file, or the AWS adapters on moto) runs with
the simulated ECS and the fault layer around every port; the driver plays the clients, the
queues' event sources (each message handed to its function's real entry point, in the event
Lambda sends), the scheduler and the reconciler, then a quiet period without faults, and hands
what it saw to the invariants."""
from __future__ import annotations

import heapq
import itertools
import json
import os
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from chalicelib import handlers, wiring
from chalicelib.domain.errors import Conflict, NotFound, ValidationError
from chalicelib.domain.model import ACTIVE_STATUSES
from chalicelib.observability import metrics
from chalicelib.ports import Backend
from infra.local.event_sources import sqs_event
from infra.local.sqlite.queues import EVENTS, JOBS, NOTIFY
from tests.contract.support import FakeClock

from .containers import SimulatedRunner
from .deployments import API, FUNCTIONS, RECONCILER, REGION, SCHEDULER, Deployment, queue_arn
from .environment import deterministic_ids, environment, record_failures, settings
from .faults import FaultPlan, FaultyPort, FaultyPoster, FaultyQueue, FaultyRunner, HandlerKilled, Rates
from .ledger import Ledger
from .workload import Action, build

START = 1_900_000_000.0  # virtual epoch of every schedule (2030-03-17)
RECONCILE_INTERVAL = 60.0  # the reconciler's EventBridge rate(1 minute)
STOP_GRACE_SECONDS = 30.0  # ECS stopTimeout: SIGTERM, then SIGKILL
DELIVERY_ALLOWANCE = 30.0  # an event source's delivery and one visibility timeout of a failed handler
# How long after it should have stopped (a stop, a timeout, its execution ended) a container may
# still live: one reconcile pass to notice, the stop grace, and the delivery of what it says.
STOP_BOUND = RECONCILE_INTERVAL + STOP_GRACE_SECONDS + DELIVERY_ALLOWANCE
QUIET_SECONDS = 3600.0  # faults off, no new work: time for every job to end and every repair to happen
CLIENT_ATTEMPTS = 3  # a client tries a request that failed (5xx, no answer) this often
CLIENT_RETRY_SECONDS = 10.0
MISSING_SECONDS = 4.0  # at most this long after RunTask, DescribeTasks may not know the task yet
EXPECTED_REFUSALS = (ValidationError, Conflict, NotFound)  # 4xx: the client does not try again


@dataclass(frozen=True)
class Budget:
    """The size of one schedule. A seed names a schedule only with its backend's budget: CI and
    `make faults` use the same one (they differ in how many schedules they run), so any seed
    replays."""

    jobs: tuple[int, int] = (2, 6)
    minutes: tuple[float, float] = (10, 30)


# moto costs a millisecond or more a call where SQLite costs tens of microseconds: an aws schedule
# is shorter, with fewer jobs.
BUDGETS = {"local": Budget(), "aws": Budget(jobs=(2, 5), minutes=(10, 20))}
ENTRY_POINTS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    JOBS: handlers.dispatch_jobs, EVENTS: handlers.monitor_tasks, NOTIFY: handlers.send_notifications}


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


def deployment(backend: str, seed: int, directory: str, clock: FakeClock) -> Deployment:
    """The backend a schedule runs on, by name: `local` (a SQLite file in `directory`) or `aws`."""
    if backend == "aws":
        from .aws import AwsDeployment

        return AwsDeployment(clock)
    from .local import LocalDeployment

    return LocalDeployment(os.path.join(directory, f"schedule-{seed}.db"), clock)


class Simulation:
    """One schedule, from its seed and its backend."""

    def __init__(self, seed: int, directory: str, budget: Budget | None = None, *, backend: str = "local",
                 whole_trace: bool = False) -> None:
        budget = budget or BUDGETS[backend]
        self.seed = seed
        self.backend = backend
        self.rng = random.Random(seed)
        self.clock = FakeClock(START)
        self.workload = build(self.rng, jobs=budget.jobs, duration=(budget.minutes[0] * 60, budget.minutes[1] * 60),
                              start=START)
        self.plan = FaultPlan(random.Random(self.rng.getrandbits(64)), _fault_rates(self.rng), self.clock, START,
                              keep_trace=whole_trace)
        self.ledger = Ledger(self.clock)
        self.job_of_plan: dict[int, str] = {}  # the job id a client was told for each plan
        self.handler_errors: list[str] = []  # exceptions of handlers that no fault explains
        self.iam_refusals: list[str] = []  # calls a function's role refused
        self.faults_off_at = START + self.workload.duration
        self.end = self.faults_off_at + QUIET_SECONDS
        self.deployment = deployment(backend, seed, directory, self.clock)
        self._heap: list[tuple[float, int, str, Callable[[], None]]] = []
        self._order = itertools.count()
        self._invoked = ""  # the queue whose function runs now

    # assembly -------------------------------------------------------------------------------------

    def _faulty(self, raw: Backend) -> Backend:
        """The deployment's ports behind the fault layer, with the simulated ECS and the ledger's
        webhook receiver."""
        plan, ledger = self.plan, self.ledger
        assert raw.notify_queue is not None and raw.mailer is not None
        return replace(
            raw,
            jobs=FaultyPort(raw.jobs, "jobs", plan, ledger.jobs_call),
            executions=FaultyPort(raw.executions, "executions", plan),
            pools=FaultyPort(raw.pools, "pools", plan),
            schedules=FaultyPort(raw.schedules, "schedules", plan),
            deliveries=FaultyPort(raw.deliveries, "deliveries", plan),
            job_queue=FaultyQueue(raw.job_queue, "jobs-queue", plan),
            notify_queue=FaultyQueue(raw.notify_queue, "notify-queue", plan, messages_faulted=False),
            scheduler=FaultyPort(raw.scheduler, "scheduler", plan),
            runner=FaultyRunner(self.runner, "ecs", plan),
            mailer=FaultyPort(raw.mailer, "mail", plan, ledger.mail_call),
            webhooks=FaultyPoster(ledger.receiver, plan),
        )

    def _emit(self, event: dict[str, Any]) -> None:
        """EventBridge: the runner's task state change to the events queue, maybe lost, late or twice."""
        where = f"events {event['detail']['lastStatus']} {event['detail']['startedBy'][-8:]}"
        if self.plan.event_lost(where):
            return
        body = json.dumps(event)
        self.deployment.send_event(body, self.plan.delay(where))
        if self.plan.duplicated(where):
            self.deployment.send_event(body, self.plan.delay(where))

    # the driver -----------------------------------------------------------------------------------

    def _at(self, moment: float, label: str, action: Callable[[], None]) -> None:
        heapq.heappush(self._heap, (moment, next(self._order), label, action))

    def run(self) -> Simulation:
        with settings(environment(self.workload)), deterministic_ids(self.rng), \
                record_failures(lambda error: self._handler_failed(self._invoked, error)):
            jitter = random.getstate()
            random.seed(self.rng.getrandbits(64))  # the engine's backoff jitter, from the seed too
            try:
                with self.deployment.opened() as raw:
                    self.deployment.refusals()  # refusals before this schedule are not its own
                    self.raw = raw
                    self.runner = SimulatedRunner(self.clock, self._emit, stop_grace_seconds=STOP_GRACE_SECONDS,
                                                  missing_seconds=lambda: round(self.rng.uniform(0, MISSING_SECONDS), 3),
                                                  note=self.plan.note)
                    wiring.use_backend(self._faulty(raw), clock=self.clock, sleep=self.clock.advance)
                    for action in self.workload.actions:
                        self._at(START + action.at, f"client {action.kind} plan {action.plan}",
                                 self._request(action, CLIENT_ATTEMPTS))
                    self._at(START + self.rng.uniform(0, RECONCILE_INTERVAL), "reconcile", self._reconcile)
                    self._at(self.faults_off_at, "quiet", self._quiet)
                    self._loop()
                    self.report = self._snapshot()
                    self.iam_refusals = self.deployment.refusals()
            finally:
                random.setstate(jitter)
        return self

    def _loop(self) -> None:
        moments = self.deployment.moments()
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
                self.deployment.fire_schedules()
            while self._heap and self._heap[0][0] <= self.clock.value:
                _, _, label, action = heapq.heappop(self._heap)
                if label != "reconcile":
                    self.plan.note(label)
                action()
            moments = self._deliver_visible()
            if metrics.metric_set:
                metrics.clear_metrics()

    def _deliver_visible(self) -> dict[str, float]:
        """Hand every message visible now to its function, as Lambda's event source does: a
        batch of up to 10, each deleted when its handler succeeded with it. Returns the moments."""
        for _ in range(50):  # a bound: a handler that sends what is due at once cannot loop here forever
            moments = self.deployment.moments()
            ready = [name for name, moment in moments.items() if name in FUNCTIONS and moment <= self.clock.value]
            if not ready:
                return moments
            for name in ready:
                self._deliver(name)
        return self.deployment.moments()

    def _deliver(self, name: str) -> None:
        with self.deployment.acting_as(FUNCTIONS[name]):
            batch = self.deployment.receive(name)
            self.plan.shuffle(batch, name)
            invocations = ([batch] if batch else []) if self.deployment.batched else [[message] for message in batch]
            for messages in invocations:
                for message in messages:
                    count = message["Attributes"]["ApproximateReceiveCount"]
                    self.plan.note(f"deliver {name[9:]} #{count} {_summary(message['Body'])}")
                succeeded = self._invoke(name, messages)
                if succeeded is None:
                    break  # the Lambda is gone: the rest of its batch comes back after the timeout
                self.deployment.delete(name, [message["ReceiptHandle"] for message in succeeded
                                              if not self.plan.delete_lost(name)])

    def _invoke(self, name: str, messages: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
        """The queue's function on the messages, through its real entry point: the messages it
        succeeded with (the others come back, as with Lambda), None when it was killed."""
        self._invoked = name
        try:
            answer = ENTRY_POINTS[name](sqs_event(messages, queue_arn(name), REGION))
        except HandlerKilled as killed:
            self.plan.note(f"handler of {name} killed at {killed}")
            return None
        except BatchProcessingError:
            return []  # every record failed, each told to _handler_failed as it did
        except Exception as error:  # noqa: BLE001 - the invocation failed: its whole batch comes back
            self._handler_failed(name, error)
            return []
        failed = {item["itemIdentifier"] for item in answer.get("batchItemFailures", [])}
        return [message for message in messages if message["MessageId"] not in failed]

    def _handler_failed(self, name: str, error: BaseException) -> None:
        text = f"{type(error).__name__}: {error}"
        self.plan.note(f"handler of {name} failed: {text}")
        if "injected" not in str(error) and type(error).__name__ not in ("DeliveryInProgress",):
            self.handler_errors.append(f"{self.clock.value:.3f} {name}: {text}")

    def _reconcile(self) -> None:
        try:
            with self.deployment.acting_as(RECONCILER):
                repaired = {name: count for name, count in handlers.reconcile().items() if count}
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
        if any(self.deployment.holds_messages(name) for name in (EVENTS, NOTIFY)):
            return False
        if self.raw.schedules.scheduled_jobs(limit=1):
            return False
        return not any(self.raw.executions.active_executions(status, limit=1) for status in ACTIVE_STATUSES)

    # clients --------------------------------------------------------------------------------------

    def _request(self, action: Action, attempts: int) -> Callable[[], None]:
        return lambda: self._client(action, attempts)

    def _client(self, action: Action, attempts: int) -> None:
        service = wiring.get_job_service()
        task_id = self.workload.tasks[action.plan]
        job_id = self.job_of_plan.get(action.plan)
        try:
            with self.deployment.acting_as(API):
                if action.kind == "post":
                    self.job_of_plan[action.plan] = service.enqueue(task_id, service.validate(task_id, action.payload),
                                                                   "198.51.100.7").job.job_id
                elif job_id is None:
                    return  # its post never got an answer: the client knows no job to act on
                elif action.kind == "put":
                    service.enqueue(task_id, service.validate(task_id, action.payload), "198.51.100.7", job_id=job_id)
                elif action.kind == "stop":
                    service.stop_job(service.job(task_id, job_id))
                    self.ledger.stopped.setdefault(job_id, []).append(self.clock.value)
                elif action.kind == "retry":
                    service.retry_job(service.job(task_id, job_id))
                elif action.kind == "pause":
                    service.pause_job(service.job(task_id, job_id))
                    self.ledger.pauses.setdefault(job_id, []).append(self.clock.value)  # in effect by now
                elif action.kind == "resume":
                    # Not in effect before its first attempt, whatever the answers.
                    self.ledger.resumes.setdefault(job_id, []).append(START + action.at)
                    service.resume_job(service.job(task_id, job_id))
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
                    with self.deployment.acting_as(API):
                        service.stop_job(service.job(self.workload.tasks[plan], job_id))
                    self.ledger.stopped.setdefault(job_id, []).append(self.clock.value)

    def _jobs_of_plan(self, plan: int) -> list[str]:
        return [job_id for job_id, specs in self.ledger.specs.items() if specs[0][1].metadata.get("plan") == plan]

    # what the invariants read ---------------------------------------------------------------------

    def _snapshot(self) -> dict[str, Any]:
        """The stored state at the end, read through the ports without faults."""
        stores = self.raw
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
                "keys_in_use": stores.pools.keys_in_use(),
                "pool_limits": {pool.name: pool.max_running for pool in wiring.get_engine().pools},
                "stats": stores.statistics.stats(), "dead_letters": self.deployment.dead_letters()}
