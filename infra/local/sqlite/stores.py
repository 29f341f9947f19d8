"""The local backend's stores on one database file: every schema created, every adapter built."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from . import connections, deliveries, executions, idempotency, jobs, pools, schedules, statistics, version
from .connections import SqliteConnections
from .db import Database
from .deliveries import SqliteDeliveries
from .executions import SqliteExecutions
from .idempotency import SqliteIdempotencyKeys
from .jobs import SqliteJobs
from .pools import SqlitePools
from .schedules import SqliteSchedules
from .statistics import SqliteStatistics

# In the order the tables refer to each other (schedules index the jobs table).
SCHEMAS = (statistics.SCHEMA, jobs.SCHEMA, executions.SCHEMA, pools.SCHEMA, schedules.SCHEMA, deliveries.SCHEMA,
           connections.SCHEMA, idempotency.SCHEMA)


@dataclass(frozen=True)
class Stores:
    """The storage ports of the local backend (chalicelib.ports), on one database."""

    db: Database
    jobs: SqliteJobs
    executions: SqliteExecutions
    pools: SqlitePools
    schedules: SqliteSchedules
    statistics: SqliteStatistics
    deliveries: SqliteDeliveries
    connections: SqliteConnections
    idempotency_keys: SqliteIdempotencyKeys


def open_stores(db: Database, clock: Callable[[], float] = time.time) -> Stores:
    """Create what is missing of the schema and build the adapters; `clock` is the time the
    delivery leases, the subscribers' expiry and the idempotency keys' are measured on. A file
    another version wrote is refused (version.StateVersionMismatch) before anything is created."""
    version.claim(db)
    for script in SCHEMAS:
        db.ensure_schema(script)
    db.ensure_schema(executions.WORKLIST)
    return Stores(db=db, jobs=SqliteJobs(db), executions=SqliteExecutions(db), pools=SqlitePools(db),
                  schedules=SqliteSchedules(db), statistics=SqliteStatistics(db),
                  deliveries=SqliteDeliveries(db, clock), connections=SqliteConnections(db, clock),
                  idempotency_keys=SqliteIdempotencyKeys(db, clock))
