"""The invariants of the reconciling engine, each a named check of one finished schedule that
returns its violations with the details needed to understand them.

Safety properties (at most one container per execution, pool limits, notifications recorded
once and in order, retries as asked, stopped jobs never run again, frozen launch parameters,
`/status` counts equal to what is stored)
must hold whatever the faults did. Liveness properties (every job ends final, every due
notification delivered, containers stop within STOP_BOUND) are promised once dependencies are
healthy again: a deadline that falls while faults are on is counted from the moment they stop.
On the aws backend, `iam`: every AWS call a handler made is one its function's role allows."""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from chalicelib.domain import timeline as timelines
from chalicelib.domain.lifecycle import (
    ENDED,
    ENDED_BY_SERVICE,
    LAUNCHED,
    RETRYABLE,
    STARTED,
    events_for,
    status_of_stopped_task,
)
from chalicelib.domain.messages import EMAIL, WEBHOOK
from chalicelib.domain.model import Execution, ExecutionStatus, Job, JobSpec
from chalicelib.domain.retry import EXIT, FAIL, IGNORE, MAX_IGNORED_RETRIES, RETRY, TIMEOUT

from .containers import Behaviour, Container
from .simulation import STOP_BOUND, Simulation

DEFAULT_TIMEOUT = 1800.0  # Settings.default_timeout: what a job without `timeout` gets


@dataclass(frozen=True)
class Violation:
    invariant: str
    detail: str

    def __str__(self) -> str:
        return f"{self.invariant}: {self.detail}"


def _short(identifier: str) -> str:
    return identifier[-8:]


def _executions(sim: Simulation) -> Iterator[tuple[Job, Execution]]:
    for job_id, executions in sim.report["executions"].items():
        for execution in executions:
            yield sim.report["jobs"][job_id], execution


def _deadline(sim: Simulation, due: float) -> float:
    """When something due at `due` must have happened: STOP_BOUND later, counted from the end of
    the faults when it fell due while they were on."""
    return max(due, sim.faults_off_at) + STOP_BOUND


def _timeout(spec: JobSpec | None) -> float:
    return float(spec.timeout or DEFAULT_TIMEOUT) if spec is not None else DEFAULT_TIMEOUT


def every_job_ends_final(sim: Simulation) -> Iterator[Violation]:
    for job, execution in _executions(sim):
        if not execution.status.is_final:
            yield Violation("every accepted job ends final",
                            f"job {_short(job.job_id)} execution {_short(execution.execution_id)} is still "
                            f"{execution.status.value} after the quiet period (task_arn={execution.task_arn}, "
                            f"pool={execution.pool})")


def one_container_per_execution(sim: Simulation) -> Iterator[Violation]:
    counts = Counter(container.execution_id for container in sim.runner.containers)
    for execution_id, count in counts.items():
        if count > 1:
            yield Violation("at most one container per execution", f"execution {_short(execution_id)} ran {count} containers")


def _should_end_by(sim: Simulation, container: Container, execution: Execution | None) -> tuple[float, str] | None:
    """The earliest moment the container should have been gone, and why."""
    spec = sim.ledger.spec_at(execution) if execution is not None else None
    reasons: list[tuple[float, str]] = []
    if container.started_at is not None:
        reasons.append((container.started_at + _timeout(spec), f"its timeout of {_timeout(spec):g} s"))
    if container.stop_requests:
        reasons.append((container.stop_requests[0], "a stop request"))
    if execution is not None and execution.status.is_final and execution.finished_at is not None:
        reasons.append((execution.finished_at, f"its execution ended {execution.status.value}"))
    return min(reasons) if reasons else None


def containers_stop_in_time(sim: Simulation) -> Iterator[Violation]:
    executions = {execution.execution_id: execution for _, execution in _executions(sim)}
    for container in sim.runner.containers:
        due = _should_end_by(sim, container, executions.get(container.execution_id))
        if due is None:
            continue
        ended = container.ended_at if container.ended_at is not None else float("inf")
        # A container that ended by itself before its deadline needed no stopping.
        if ended > _deadline(sim, due[0]) and ended - due[0] > 1.0:
            still = "is still running" if container.ended_at is None else f"ended {ended - due[0]:.0f} s after"
            yield Violation("no container outlives its timeout or stop beyond the bound",
                            f"container of execution {_short(container.execution_id)} {still} {due[1]} "
                            f"(due at {due[0] - sim.clock.value:+.0f} s from the end, bound {STOP_BOUND:g} s, "
                            f"stop requests at {[round(t - due[0], 1) for t in container.stop_requests]} s from due)")


def pools_count_their_holders(sim: Simulation) -> Iterator[Violation]:
    holders = Counter(execution.pool for _, execution in _executions(sim) if execution.pool is not None)
    for pool, running in sim.report["pool_running"].items():
        if running != holders.get(pool, 0):
            yield Violation("pool counts equal their holders",
                            f"pool {pool} counts {running} running, {holders.get(pool, 0)} executions hold a slot")
    for _job, execution in _executions(sim):
        container = sim.runner.of_execution(execution.execution_id)
        if execution.pool is not None and execution.status.is_final and (container is None or not container.live):
            yield Violation("pool counts equal their holders",
                            f"execution {_short(execution.execution_id)} ({execution.status.value}) still holds a slot "
                            f"of pool {execution.pool} though it has ended and has no container")


def keys_count_their_holders(sim: Simulation) -> Iterator[Violation]:
    holders = Counter(execution.concurrency.key for _, execution in _executions(sim)
                      if execution.pool is not None and execution.concurrency is not None)
    counted = {key: running for key, (running, _limit) in sim.report["keys_in_use"].items()}
    for key in sorted(set(holders) | set(counted)):
        if counted.get(key, 0) != holders.get(key, 0):
            yield Violation("concurrency key counts equal their holders",
                            f"key {key} counts {counted.get(key, 0)} running, {holders.get(key, 0)} executions "
                            f"hold a slot of it")


def keys_never_exceed_their_limit(sim: Simulation) -> Iterator[Violation]:
    for at, key, live, limit in sim.runner.key_over_limit:
        yield Violation("concurrency keys never exceed their limit",
                        f"key {key} had {live} live containers at {at - sim.clock.value:+.0f} s from the end "
                        f"(limit {limit})")


def pools_never_exceed_their_limit(sim: Simulation) -> Iterator[Violation]:
    for at, pool, live in sim.runner.over_limit:
        yield Violation("pools never exceed maxRunning",
                        f"pool {pool} had {live} live containers at {at - sim.clock.value:+.0f} s from the end "
                        f"(maxRunning {sim.runner.limits[pool]})")


def _due_notifications(job: Job, execution: Execution) -> list[tuple[str, str, int, int]]:
    """(kind, event, index, retries) of every notification the execution's course calls for."""
    announced = ([STARTED] if execution.started_at is not None else []) + ([ENDED] if execution.status.is_final else [])
    due = []
    for announcement in announced:
        for event in events_for(announcement, execution.status):
            for index, hook in enumerate(job.spec.webhooks.get(event) or ()):
                due.append((WEBHOOK, event, index, hook.retries))
            if job.spec.notify.get(event):
                due.append((EMAIL, event, 0, 0))
    return due


def notifications_delivered_once_in_order(sim: Simulation) -> Iterator[Violation]:
    name = "every due notification delivered at least once, recorded once, in order"
    received: dict[str, list[int]] = {}
    first_at: dict[tuple[str, str], float] = {}
    for request in sim.ledger.received:
        prefix = request.delivery.rsplit("/", 1)[0]
        received.setdefault(prefix, []).append(request.attempt)
        first_at.setdefault((request.execution_id, request.event), request.at)
    mailed = {(execution_id, event) for _, execution_id, event in sim.ledger.mails}
    for job, execution in _executions(sim):
        recorded = Counter(str(entry.get("delivery")) for entry in execution.notifications)
        for delivery, count in recorded.items():
            if count > 1:
                yield Violation(name, f"{delivery} is recorded {count} times on its execution")
        ended_at = execution.finished_at or 0.0
        for kind, event, index, retries in _due_notifications(job, execution):
            prefix = f"{execution.execution_id}/{kind}/{event}/{index}"
            late = _deadline(sim, ended_at) >= sim.clock.value  # due too late to judge its delivery
            if kind == EMAIL:
                if (execution.execution_id, event) not in mailed and not late:
                    yield Violation(name, f"{prefix}: the e-mail was never sent")
                continue
            attempts = received.get(prefix, [])
            entries = {int(entry.get("attempt", 0)): entry for entry in execution.notifications
                       if str(entry.get("delivery", "")).startswith(prefix + "/")}
            if not attempts and not late:
                last = entries.get(max(entries)) if entries else None
                # A receiver out of reach on every attempt the hook asked for is no fault of the service.
                if last is None or last.get("ok") or int(last.get("attempt", 0)) <= retries:
                    yield Violation(name, f"{prefix}: the webhook never reached its receiver "
                                          f"(attempts recorded: {sorted(entries)}, retries {retries}, "
                                          f"dead letters {sim.report['dead_letters']})")
            for attempt in sorted(set(attempts)):
                if recorded.get(f"{prefix}/{attempt}", 0) == 0 and not late:
                    yield Violation(name, f"{prefix}/{attempt}: reached its receiver but was never recorded on its "
                                          f"execution (dead letters {sim.report['dead_letters']})")
        starts, finishes = first_at.get((execution.execution_id, "starts")), first_at.get((execution.execution_id, "finishes"))
        if starts is not None and finishes is not None and finishes < starts:
            yield Violation(name, f"execution {_short(execution.execution_id)}: `finishes` reached its receiver "
                                  f"{starts - finishes:.0f} s before `starts`")


def _expected_outcome(spec: JobSpec) -> ExecutionStatus:
    behaviour = Behaviour.parse(spec.command)
    if behaviour.run_seconds > _timeout(spec):
        return ExecutionStatus.TIMEDOUT
    return status_of_stopped_task(behaviour.exit_code)


def _runs_wanted(spec: JobSpec, expected: ExecutionStatus) -> tuple[int, str | None]:
    """How many executions a job left alone makes, and the rule its retries name (None: no
    policy). With a policy: `fail` runs once, `retry` uses the attempts, `ignore` runs up to the
    ceiling of ignored retries before its failures count as attempts."""
    if expected not in RETRYABLE:
        return 1, None
    if spec.retry is None:
        return spec.retries + 1, None
    behaviour = Behaviour.parse(spec.command)
    reason = TIMEOUT if expected is ExecutionStatus.TIMEDOUT else EXIT
    decision = spec.retry.decide(reason, None if reason == TIMEOUT else behaviour.exit_code)
    runs = {FAIL: 1, RETRY: spec.retry.attempts + 1, IGNORE: 1 + MAX_IGNORED_RETRIES + spec.retry.attempts}
    return runs[decision.action], decision.by


def retries_exactly_as_asked(sim: Simulation) -> Iterator[Violation]:
    """A job left alone by its clients (never stopped, replaced or retried, without expiration
    or cron) runs until it succeeds or has used exactly the retries it asked for."""
    for job_id, executions in sim.report["executions"].items():
        job = sim.report["jobs"][job_id]
        spec = sim.ledger.specs[job_id][0][1]
        if sim.ledger.disturbed(job_id) or spec.expiration is not None or spec.cron or not executions:
            continue
        expected = _expected_outcome(spec)
        wanted, decided_by = _runs_wanted(spec, expected)
        statuses = [execution.status.value + (f" ({execution.error})" if execution.error else "")
                    for execution in executions]
        misnamed = [e.metadata.get("rule") for e in executions[1:] if decided_by and e.metadata.get("rule") != decided_by]
        if misnamed or len(executions) != wanted or any(execution.status is not expected for execution in executions):
            yield Violation("retries exactly as asked",
                            f"job {_short(job.job_id)} (plan {spec.metadata.get('plan')}, retries {spec.retries}, "
                            f"should end {expected.value}) has executions {statuses}")


def outcome_is_the_containers(sim: Simulation) -> Iterator[Violation]:
    """An execution whose container ended by itself ends as the container says."""
    for _job, execution in _executions(sim):
        container = sim.runner.of_execution(execution.execution_id)
        if (container is None or container.live or container.stop_requests or execution.status in ENDED_BY_SERVICE
                or not execution.status.is_final or execution.status is ExecutionStatus.EXPIRED):
            continue
        said = status_of_stopped_task(container.exit_code)
        if execution.status is not said:
            yield Violation("an execution ends as its container said",
                            f"execution {_short(execution.execution_id)} is {execution.status.value} "
                            f"({execution.error}) but its container exited {container.exit_code}")


def stopped_jobs_never_run_again(sim: Simulation) -> Iterator[Violation]:
    name = "stopped jobs never run again"
    for job_id, stops in sim.ledger.stopped.items():
        resumed = sorted(sim.ledger.replaced.get(job_id, []) + sim.ledger.retried.get(job_id, []))
        for stop in stops:
            until = next((moment for moment in resumed if moment > stop), float("inf"))
            for execution in sim.report["executions"].get(job_id, []):
                if stop < execution.created_at < until:
                    yield Violation(name, f"job {_short(job_id)}: execution {_short(execution.execution_id)} was "
                                          f"created {execution.created_at - stop:.0f} s after its stop")
                container = sim.runner.of_execution(execution.execution_id)
                if container is None or not stop < container.created_at < until or execution.created_at > stop:
                    continue
                ended = container.ended_at if container.ended_at is not None else float("inf")
                if ended > _deadline(sim, stop):
                    yield Violation(name, f"job {_short(job_id)}: a container launched {container.created_at - stop:.0f} s "
                                          f"after the stop for execution {_short(execution.execution_id)} "
                                          + ("is still running" if container.ended_at is None
                                             else f"ran until {ended - stop:.0f} s after it"))


def status_counts_are_the_truth(sim: Simulation) -> Iterator[Violation]:
    """What `/status` counts (the statistics the writes add to in their transactions) equals what
    is stored once the service is quiet, whatever was cancelled, refused or made again."""
    jobs = list(sim.report["jobs"].values())
    truth = Counter({"tasks": len({job.task_id for job in jobs}), "jobs": len(jobs),
                     "scheduled": sum(1 for job in jobs if job.spec.scheduled)})
    truth.update(execution.status.value for _, execution in _executions(sim))
    counted = sim.report["stats"]
    for name in sorted({*truth, *counted}):
        if counted.get(name, 0) != truth.get(name, 0):
            yield Violation("/status counts equal the truth",
                            f"{name} is counted {counted.get(name, 0)}, {truth.get(name, 0)} are stored")


def launches_use_frozen_parameters(sim: Simulation) -> Iterator[Violation]:
    executions = {execution.execution_id: execution for _, execution in _executions(sim)}
    for container in sim.runner.containers:
        execution = executions.get(container.execution_id)
        spec = sim.ledger.spec_at(execution) if execution is not None else None
        if spec is None:
            continue
        launched = (container.image, container.command, container.envs)
        created = (spec.image, spec.command, spec.envs)
        if launched != created:
            yield Violation("a container runs with its execution's parameters",
                            f"execution {_short(container.execution_id)} was created with {created} but its container "
                            f"ran {launched}")


# schedules: pause, ticks taken once, the catch-up window, overlap buffer -------------------------

ON_TIME = 5.0  # services/scheduling.ON_TIME: a run this late is on time
SLACK = 1.0  # the clock may move within one handling (a sleep, a fault's delay)
DEFAULT_WINDOW = 60.0  # payload.DEFAULT_CATCHUP_WINDOW


def _runs(sim: Simulation, job_id: str) -> list[Execution]:
    """The job's executions its schedule made (a tick, a one-shot firing, a waiting tick), oldest first."""
    return [e for e in sim.report["executions"].get(job_id, []) if "scheduledAt" in e.metadata]


def paused_jobs_fire_nothing(sim: Simulation) -> Iterator[Violation]:
    for job_id in sim.ledger.pauses:
        for start, end in sim.ledger.paused_intervals(job_id):
            for execution in _runs(sim, job_id):
                if start < execution.created_at < end:
                    yield Violation("a paused job fires nothing while paused",
                                    f"job {_short(job_id)}: execution {_short(execution.execution_id)} of the tick "
                                    f"{execution.metadata['scheduledAt'] - start:+.0f} s from the pause was created "
                                    f"{execution.created_at - start:.0f} s into a pause that lasted {end - start:.0f} s")


def no_tick_runs_twice(sim: Simulation) -> Iterator[Violation]:
    for job_id, specs in sim.ledger.specs.items():
        if len(specs) != 1:
            continue  # a PUT: another schedule, whose ticks may fall at the same times
        for tick, count in Counter(e.metadata["scheduledAt"] for e in _runs(sim, job_id)).items():
            if count > 1:
                yield Violation("no tick runs twice", f"job {_short(job_id)}: the tick {tick - sim.clock.value:+.0f} s "
                                                      f"from the end ran {count} times")


def missed_ticks_obey_the_window(sim: Simulation) -> Iterator[Violation]:
    """A run that could not fire on time runs within the job's catch-up window, and at most one
    late run per series of missed ticks: a later late run's tick came due after the earlier ran."""
    name = "missed ticks obey the catch-up window, one late run per gap"
    for job_id, specs in sim.ledger.specs.items():
        spec = specs[0][1]
        window = DEFAULT_WINDOW if spec.catchup_window is None else float(spec.catchup_window)
        late_runs = []
        for execution in _runs(sim, job_id):
            if "bufferedAt" in execution.metadata:
                continue  # waited on purpose (overlap buffer)
            due = execution.due_at if execution.due_at is not None else execution.metadata["scheduledAt"]
            late = execution.created_at - due
            if late > max(window, ON_TIME) + SLACK:
                yield Violation(name, f"job {_short(job_id)}: execution {_short(execution.execution_id)} ran "
                                      f"{late:.0f} s late, past its window of {window:g} s")
            if late > ON_TIME:
                late_runs.append((execution, due))
        for (first, _), (second, due) in zip(late_runs, late_runs[1:], strict=False):
            if due < first.created_at - SLACK:
                yield Violation(name, f"job {_short(job_id)}: late runs {_short(first.execution_id)} and "
                                      f"{_short(second.execution_id)} belong to one gap (the second's tick was due "
                                      f"{first.created_at - due:.0f} s before the first ran)")


def buffer_keeps_one_waiting_tick(sim: Simulation) -> Iterator[Violation]:
    """overlap buffer: a waiting tick runs once every execution of the job has ended, and two
    ticks never wait at once."""
    name = "overlap buffer keeps at most one waiting tick, run after the previous execution ends"
    for job_id, specs in sim.ledger.specs.items():
        if specs[0][1].overlap != "buffer":
            continue
        executions = sim.report["executions"].get(job_id, [])
        waited = [e for e in executions if "bufferedAt" in e.metadata]
        for run in waited:
            for other in executions:
                if other.created_at < run.created_at and (other.finished_at is None
                                                          or other.finished_at > run.created_at + SLACK):
                    yield Violation(name, f"job {_short(job_id)}: waiting tick run {_short(run.execution_id)} "
                                          f"started while {_short(other.execution_id)} had not ended")
        spans = sorted((e.metadata["bufferedAt"], e.created_at) for e in waited)
        for (_, first_end), (second_start, _) in zip(spans, spans[1:], strict=False):
            if second_start < first_end - SLACK:
                yield Violation(name, f"job {_short(job_id)}: two ticks waited at once "
                                      f"({first_end - second_start:.0f} s together)")


def timelines_tell_the_lifecycle(sim: Simulation) -> Iterator[Violation]:
    """Each execution's timeline starts with why it was accepted, stays bounded, and ends with the
    status it is in: written with every change of state, none lost to a race between writers."""
    for job, execution in _executions(sim):
        statuses = [entry["status"] for entry in execution.timeline]
        where = f"job {_short(job.job_id)} execution {_short(execution.execution_id)} ({execution.status.value})"
        if not statuses or statuses[0] != timelines.ACCEPTED or len(statuses) > timelines.MAX_ENTRIES:
            yield Violation("timelines", f"{where} has the timeline {statuses}")
        elif execution.status.is_final or execution.status in LAUNCHED:
            if statuses[-1] != execution.status.value:
                yield Violation("timelines", f"{where} ends its timeline with {statuses[-1]}: {statuses}")
        elif statuses[-1] not in (timelines.ACCEPTED, timelines.WAITING):
            yield Violation("timelines", f"{where} waits to launch, but its timeline ends with {statuses[-1]}")


def no_call_refused(sim: Simulation) -> Iterator[Violation]:
    """A call the function's deployed role would refuse (tests/iam.py), once per distinct refusal."""
    for refusal, count in Counter(sim.iam_refusals).items():
        yield Violation("iam", refusal + (f" ({count} times)" if count > 1 else ""))


CHECKS: tuple[Callable[[Simulation], Iterator[Violation]], ...] = (
    every_job_ends_final, one_container_per_execution, containers_stop_in_time, pools_count_their_holders,
    keys_count_their_holders, keys_never_exceed_their_limit,
    pools_never_exceed_their_limit, notifications_delivered_once_in_order, retries_exactly_as_asked,
    outcome_is_the_containers, stopped_jobs_never_run_again, launches_use_frozen_parameters,
    status_counts_are_the_truth, paused_jobs_fire_nothing, no_tick_runs_twice, missed_ticks_obey_the_window,
    buffer_keeps_one_waiting_tick, timelines_tell_the_lifecycle, no_call_refused)


def check(sim: Simulation) -> list[Violation]:
    return [violation for invariant in CHECKS for violation in invariant(sim)]
