"""The reconciler: every reconcile interval, drive each execution's observed state to its desired
state, repeating each side effect until it is observed (docs/execution.md#the-reconciler)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from ...config import Settings
from ...domain.ecs import TaskState, cluster_of
from ...domain.errors import UnreadableRecords
from ...domain.lifecycle import ECS_RUNNING, ECS_STOPPED, LAUNCHED, TIMEABLE
from ...domain.limits import ECS_DESCRIBE_BATCH
from ...domain.model import Execution
from ...domain.model import ExecutionStatus as S
from ...domain.pools import Pool, pool_holding
from ...domain.retry import LOST
from ...observability import MetricUnit, logger, metrics
from ...ports import Executions, Pools, Runner
from ..announcements import Announcer
from .ending import STOPPED_BY_CLIENT, Ending
from .launches import Launches
from .monitor import Monitor
from .timeouts import Timeouts

LOST_TASK = "The ECS task of this execution is gone; it was not seen to end."
# The most executions one reconciler worklist of slot holders reads (launched, prepared, held;
# DescribeTasks takes 100 a call): well above the running tasks of an account's Fargate quota. Pools
# are recounted on every pass whose holders all fit.
LISTING_LIMIT = 10_000
COUNTS = ("resent", "finalised", "timedout", "checks", "stopped", "released", "recounted", "announced", "errors")


@dataclass(eq=False)
class Reconciler:
    executions: Executions
    pools: Pools
    runner: Runner
    launches: Launches
    ending: Ending
    monitor: Monitor
    timeouts: Timeouts
    announcer: Announcer
    configured: tuple[Pool, ...]
    settings: Settings
    clock: Callable[[], float]
    _drifts: dict[str, tuple[int, int]] = field(default_factory=dict, init=False)  # pool -> (count, holders) last seen

    def reconcile(self) -> dict[str, int]:
        """One pass. Idempotent. Each execution is repaired on its own: one that fails (a
        dependency refuses it, a record it cannot handle) is logged with its ids and counted in
        `errors`, and the pass goes on with the others; the next pass tries again."""
        at = self.clock()
        counts = dict.fromkeys(COUNTS, 0)
        incomplete: set[str] = set()  # worklists that left out records they could not read
        listed = partial(self._listed, counts, incomplete)
        # Lost launches, soonest due first: those waiting out a delay are not listed, so however
        # many wait, one whose launch is overdue is found on the next pass.
        overdue = listed("overdue", lambda: self.executions.overdue_launches(
            at - self.settings.reconcile_grace_seconds, self.settings.reconcile_batch))
        prepared = listed("prepared", lambda: self.executions.prepared_executions(LISTING_LIMIT))
        for execution in [*(prepared or []), *(overdue or [])]:
            self._isolated(counts, "resend a lost launch", partial(self._resend_if_lost, execution, at, counts),
                           execution)
        # Every launched execution, not a first page: the reconciler enforces the timeouts of
        # those that run long, and follows their containers.
        launched = listed("launched", lambda: [
            e for status in sorted(LAUNCHED) for e in self.executions.active_executions(status, LISTING_LIMIT)])
        held = listed("held", lambda: self.executions.held_executions(LISTING_LIMIT))
        states = self._describe([e.task_arn for e in [*(launched or []), *(held or [])] if e.task_arn], counts)
        for execution in launched or []:
            self._isolated(counts, "follow a launched execution",
                           partial(self._follow_launched, execution, states, at, counts), execution)
        for execution in held or []:
            self._isolated(counts, "finish an ended execution",
                           partial(self._finish_held, execution, states, at, counts), execution)
        # Every holder of a slot, whatever the backlog of executions waiting for one.
        if (not incomplete & {"prepared", "launched", "held"}
                and prepared is not None and launched is not None and held is not None and len(prepared) < LISTING_LIMIT
                and len(launched) < LISTING_LIMIT * len(LAUNCHED) and len(held) < LISTING_LIMIT):
            self._isolated(counts, "recount pools", partial(self._recount, [*prepared, *launched, *held], counts))
        return counts

    def _isolated(self, counts: dict[str, int], step: str, repair: Callable[[], None],
                  execution: Execution | None = None) -> bool:
        """One repair of the pass, on its own: a failure is logged with what it concerns and
        counted, and the pass goes on (the next one tries again). False when it failed."""
        try:
            repair()
            return True
        except Exception:  # noqa: BLE001 - one bad item must not stop the repairs of the others
            counts["errors"] += 1
            about: dict[str, Any] = {"step": step}
            if execution is not None:
                about.update(job_id=execution.job_id, execution_id=execution.execution_id,
                             status=execution.status.value)
            logger.exception("the reconciler could not repair this; the next pass tries again", extra=about)
            return False

    def _listed(self, counts: dict[str, int], incomplete: set[str], worklist: str,
                read: Callable[[], list[Execution]]) -> list[Execution] | None:
        """A worklist of the pass; None when it could not be read (counted: the pass goes on
        with the others, and pools are not recounted without every holder). Records that cannot
        be read are counted and logged, and the others are repaired; the worklist then counts as
        incomplete for the recount, which needs every holder."""
        found: list[list[Execution]] = []

        def listing() -> None:
            try:
                found.append(read())
            except UnreadableRecords as some:
                counts["errors"] += len(some.keys)
                logger.error("the reconciler skips stored records it cannot read", extra={
                    "worklist": worklist, "records": some.keys[:20]})
                found.append(some.readable)
                incomplete.add(worklist)

        self._isolated(counts, f"list the {worklist} executions", listing)
        return found[0] if found else None

    def _describe(self, arns: list[str], counts: dict[str, int]) -> dict[str, TaskState | None]:
        """The state of each task (None: ECS no longer knows it), asked per cluster and batch;
        the tasks of a batch ECS would not describe (throttled, refused) are left out, and
        their executions get only what needs no state on this pass."""
        by_cluster: dict[str, list[str]] = {}
        for arn in dict.fromkeys(arns):
            by_cluster.setdefault(cluster_of(arn), []).append(arn)
        states: dict[str, TaskState | None] = {}

        def describe(batch: list[str]) -> None:
            states.update(self.runner.describe(batch))

        for cluster, group in by_cluster.items():
            for start in range(0, len(group), ECS_DESCRIBE_BATCH):
                batch = group[start:start + ECS_DESCRIBE_BATCH]
                self._isolated(counts, f"describe tasks of cluster {cluster}",
                               partial(describe, batch))
        return states

    def _resend_if_lost(self, execution: Execution, at: float, counts: dict[str, int]) -> None:
        """An enqueued execution whose launch message is overdue has lost it: it is sent again,
        a bounded number of times, then the execution fails saying why."""
        settings = self.settings
        if (execution.due_at or execution.created_at) + settings.reconcile_grace_seconds >= at:
            return  # its launch message is not overdue
        if execution.resends >= settings.launch_resends:
            if self.ending.end(execution, S.FAILED, reason=LOST, error=(
                    f"Its launch message was lost {execution.resends + 1} times; it was not launched.")):
                counts["finalised"] += 1
            return
        if self.launches.renew(execution, 0.0, attempt=0, due_at=at, resent=True):
            counts["resent"] += 1

    def _follow_launched(self, execution: Execution, states: dict[str, TaskState | None], at: float,
                         counts: dict[str, int]) -> None:
        """A launched execution against its task. A task ECS could not be asked about on this
        pass (absent from `states`) still has its timeout enforced."""
        arn = execution.task_arn
        if arn is None or arn in states:
            state = states.get(arn) if arn else None
            if state is None:
                # ECS may not know a task just after RunTask: it is gone only after the grace.
                if (execution.launched_at or execution.created_at) + self.settings.missing_grace_seconds < at:
                    ended = self.ending.end(execution, S.FAILED, error=LOST_TASK, reason=LOST)
                    if ended is not None:
                        self.pools.release_slot(ended)
                        counts["finalised"] += 1
                return
            if state.last_status == ECS_STOPPED:
                self.monitor.apply(execution, state)
                counts["finalised"] += 1
                return
            if state.last_status == ECS_RUNNING and execution.status is not S.RUNNING:
                self.monitor.apply(execution, state)
                execution = self.executions.get_execution(execution.job_id, execution.execution_id) or execution
        if execution.status in TIMEABLE and execution.started_at is not None:
            deadline = execution.started_at + self.ending.timeout_of(execution)
            interval = self.settings.reconcile_interval
            if at > deadline + 1:
                self.ending.time_out(execution)
                counts["timedout"] += 1
            elif interval < deadline - at <= 2 * interval:
                # The last pass before the deadline: its check, to the second (one pass falls in
                # each interval; a pass that is skipped leaves the next one to enforce it late).
                self.timeouts.send_check(execution, round(deadline, 3))
                counts["checks"] += 1

    def _finish_held(self, execution: Execution, states: dict[str, TaskState | None], at: float,
                     counts: dict[str, int]) -> None:
        """An ended execution whose ending was not announced, or whose container was not seen
        gone: announce it, ask the container to stop again, or give its slot back once it is
        stopped (or gone, after the grace)."""
        if execution.announcing:
            self.announcer.announce_owed(execution)
            counts["announced"] += 1
            if execution.pool is None:
                return
        grace = self.settings.missing_grace_seconds
        since = execution.finished_at or execution.launched_at or execution.created_at
        state: TaskState | None
        if execution.task_arn:
            if execution.task_arn not in states:
                return  # ECS could not be asked about it on this pass
            state = states[execution.task_arn]
        elif since + grace < at:
            # Ended before its task was recorded: a launch may have been in flight; look it up.
            state = self.runner.find(execution, pool_holding(self.configured, execution))
            if state is not None:
                self.executions.update_execution(execution, None, task_arn=state.arn)
                execution = execution.with_changes(task_arn=state.arn)
        else:
            return
        if state is None:
            if since + grace < at and self.pools.release_slot(execution):
                counts["released"] += 1
            return
        if state.last_status == ECS_STOPPED:
            self.ending.container_stopped(execution, state)  # records its exit code, gives the slot back
            counts["released"] += 1
            return
        self.ending.stop_container(state.arn, execution.error or STOPPED_BY_CLIENT)
        counts["stopped"] += 1

    def _recount(self, holders: list[Execution], counts: dict[str, int]) -> None:
        """Pool and concurrency key counts against the executions seen holding their slots. A
        drift is repaired only when two passes in a row saw the same one (the listings may lag
        the counters), and only if the count did not move since; either way it is reported."""
        running = self.pools.pool_running([p.name for p in self.configured])
        in_use = self.pools.keys_in_use(LISTING_LIMIT)
        seen: dict[str, int] = {p.name: 0 for p in self.configured}
        keys: dict[str, int] = dict.fromkeys(in_use, 0)
        limits = {key: limit for key, (_, limit) in in_use.items()}
        for execution in holders:
            if execution.pool in seen:
                seen[execution.pool] += 1
                if execution.concurrency is not None:
                    key = execution.concurrency.key
                    keys[key] = keys.get(key, 0) + 1
                    limits[key] = execution.concurrency.limit
        drifts: dict[str, tuple[int, int]] = {}
        for name, count in running.items():
            if self._drifted(drifts, f"pool {name}", count, seen[name],
                             partial(self.pools.recount, name, count, seen[name])):
                counts["recounted"] += 1
        for key, held in keys.items():
            count = in_use.get(key, (0, 0))[0]
            if self._drifted(drifts, f"key {key}", count, held,
                             partial(self.pools.recount_key, key, count, held, limits[key])):
                counts["recounted"] += 1
        self._drifts = drifts

    def _drifted(self, drifts: dict[str, tuple[int, int]], name: str, count: int, holders: int,
                 recount: Callable[[], bool]) -> bool:
        """Report a count that differs from its holders, and repair it when the last pass saw the
        same drift (`drifts` collects those left for the next pass). True when repaired."""
        if count == holders:
            return False
        metrics.add_metric(name="PoolDrift", unit=MetricUnit.Count, value=abs(count - holders))
        logger.warning("slot count differs from its holders", extra={"slots": name, "running": count,
                                                                    "holders": holders})
        if self._drifts.get(name) == (count, holders) and recount():
            return True
        drifts[name] = (count, holders)
        return False
