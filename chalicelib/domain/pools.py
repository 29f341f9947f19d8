"""Execution pools (the original's farms): where a task's jobs run and how many at once."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from typing import Any

from ..config import Settings
from .model import Execution, Placement


@dataclass(frozen=True)
class Pool:
    name: str
    match: str
    cluster: str
    max_running: int = 0  # 0: no limit (still counted)
    subnets: tuple[str, ...] = ()
    security_groups: tuple[str, ...] = ()
    assign_public_ip: str = "DISABLED"
    cpu: str = "256"
    memory: str = "512"
    capacity_providers: tuple[str, ...] = field(default=())

    def matches(self, task_id: str) -> bool:
        return re.fullmatch(self.match, task_id) is not None

    @property
    def placement(self) -> Placement:
        """What an execution made now freezes of this pool: its cluster and task size."""
        return Placement(self.cluster, self.cpu, self.memory)

    def placed(self, placement: Placement | None) -> Pool:
        """This pool as an execution frozen with `placement` launches in it: the pool's slots and
        network, the frozen cluster and size (a redeploy that changed them changes only later
        executions, and a RunTask sent again under the same client token is the same request)."""
        if placement is None or placement == self.placement:
            return self
        return replace(self, cluster=placement.cluster, cpu=placement.cpu, memory=placement.memory)


def load_pools(settings: Settings) -> tuple[Pool, ...]:
    """The configured pools, in order; the first whose `match` regex matches a task id takes it.
    Without POOLS there is one pool, `default`, for every task."""
    default = Pool(
        name="default",
        match=".*",
        cluster=settings.ecs_cluster,
        max_running=settings.max_running,
        subnets=settings.subnets,
        security_groups=settings.security_groups,
        assign_public_ip=settings.assign_public_ip,
        cpu=settings.task_cpu,
        memory=settings.task_memory,
    )
    if not settings.pools_json.strip():
        return (default,)
    raw: list[dict[str, Any]] = json.loads(settings.pools_json)
    pools = []
    for entry in raw:
        re.compile(entry.get("match", ".*"))  # a bad regex fails at start, not per job
        pools.append(
            Pool(
                name=entry["name"],
                match=entry.get("match", ".*"),
                cluster=entry.get("cluster", default.cluster),
                max_running=int(entry.get("maxRunning", 0)),
                subnets=tuple(entry.get("subnets", default.subnets)),
                security_groups=tuple(entry.get("securityGroups", default.security_groups)),
                assign_public_ip=entry.get("assignPublicIp", default.assign_public_ip),
                cpu=str(entry.get("cpu", default.cpu)),
                memory=str(entry.get("memory", default.memory)),
                capacity_providers=tuple(entry.get("capacityProviders", ())),
            )
        )
    if not any(p.match == ".*" for p in pools):
        pools.append(default)
    return tuple(pools)


def pool_for(pools: tuple[Pool, ...], task_id: str) -> Pool:
    for pool in pools:
        if pool.matches(task_id):
            return pool
    return pools[-1]


def pool_holding(pools: tuple[Pool, ...], execution: Execution) -> Pool:
    """The pool whose slot the execution holds (named on it), else the one its task matches,
    with the cluster and size frozen on the execution."""
    if execution.pool is not None:
        for pool in pools:
            if pool.name == execution.pool:
                return pool.placed(execution.placement)
    return pool_for(pools, execution.task_id).placed(execution.placement)
