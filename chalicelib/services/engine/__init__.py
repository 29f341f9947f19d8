"""The execution engine, a room per responsibility (docs/execution.md, "Where each behaviour lives"):

- `launches`: every launch leaves through `Launches.send`, one error policy;
- `dispatch`: a launch message becomes a container (expiration, pool slot, RunTask, pacing);
- `monitor`: ECS task state changes move executions;
- `timeouts`: the check at a running execution's deadline;
- `ending`: every execution ends through `Ending.end` (retries, stops, slot release);
- `reconciler`: the periodic pass that repairs what lost messages and events left behind.

Notification bookkeeping is with notifications (`services/announcements.py`). Each room knows
only the rooms below it: dispatch, monitor and the reconciler use ending, ending uses launches."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ...config import Settings
from ...domain.model import ExecutionStatus, Placement, now
from ...domain.pools import Pool, load_pools, pool_for
from ...ports import Executions, JobQueue, Jobs, Pools, Runner, Statistics
from ..announcements import Announcer
from ..notify import NotificationPublisher
from .dispatch import Dispatcher
from .ending import Ending
from .launches import Launches
from .monitor import Monitor
from .reconciler import Reconciler
from .timeouts import Timeouts

KEYS_SHOWN = 100  # /status lists at most this many concurrency keys in use


@dataclass(frozen=True)
class Engine:
    """The engine's rooms, wired together once per process."""

    pools: tuple[Pool, ...]
    launches: Launches
    ending: Ending
    dispatcher: Dispatcher
    monitor: Monitor
    timeouts: Timeouts
    reconciler: Reconciler
    announcer: Announcer
    _pools: Pools
    _statistics: Statistics

    def placement(self, task_id: str) -> Placement:
        """The cluster and size a new execution of a task freezes: its pool's, as configured now."""
        return pool_for(self.pools, task_id).placement

    def status(self) -> dict[str, Any]:
        """The farm: executions by status, tasks, jobs, schedules, each pool's use and the
        concurrency keys in use."""
        stats = self._statistics.stats()
        running = self._pools.pool_running([p.name for p in self.pools])
        return {
            "executions": {s.value: max(0, stats.get(s.value, 0)) for s in ExecutionStatus},
            "tasks": stats.get("tasks", 0),
            "jobs": stats.get("jobs", 0),
            "scheduled": max(0, stats.get("scheduled", 0)),
            "pools": [{"name": p.name, "match": p.match, "cluster": p.cluster, "running": max(0, running[p.name]),
                       "maxRunning": p.max_running or None} for p in self.pools],
            "concurrency": [{"key": key, "running": max(0, count), "limit": limit}
                            for key, (count, limit) in sorted(self._pools.keys_in_use(KEYS_SHOWN).items())],
        }


def build_engine(jobs: Jobs, executions: Executions, pools: Pools, statistics: Statistics, queue: JobQueue,
                 runner: Runner, settings: Settings, *, clock: Callable[[], float] = now,
                 notifier: NotificationPublisher | None = None) -> Engine:
    configured = load_pools(settings)

    def placement(task_id: str) -> Placement:
        return pool_for(configured, task_id).placement

    announcer = Announcer(jobs, executions, notifier)
    launches = Launches(executions, queue, clock)
    ending = Ending(executions, pools, runner, launches, announcer, settings, placement, clock)
    timeouts = Timeouts(executions, queue, runner, ending, settings, clock)
    monitor = Monitor(executions, ending, timeouts, announcer, clock)
    return Engine(
        pools=configured,
        launches=launches,
        ending=ending,
        dispatcher=Dispatcher(executions, pools, queue, runner, launches, ending, configured, settings, clock),
        monitor=monitor,
        timeouts=timeouts,
        reconciler=Reconciler(executions, pools, runner, launches, ending, monitor, timeouts, announcer, configured,
                              settings, clock),
        announcer=announcer,
        _pools=pools,
        _statistics=statistics,
    )
