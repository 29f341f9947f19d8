"""Statistics on SQLite: exact counters of tasks, jobs, scheduled jobs and executions by status,
each changed in the transaction of the write it counts."""
from __future__ import annotations

import sqlite3
from collections.abc import Mapping

from chalicelib.domain.model import ExecutionStatus

from .db import Database

SCHEMA = """
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
"""

TASKS, JOBS, SCHEDULED = "tasks", "jobs", "scheduled"
NAMES = (TASKS, JOBS, SCHEDULED, *(status.value for status in ExecutionStatus))


def bump(connection: sqlite3.Connection, deltas: Mapping[str, int]) -> None:
    """Add to counters, inside the caller's write transaction."""
    changed = [(name, delta) for name, delta in deltas.items() if delta]
    if changed:
        connection.executemany("INSERT INTO counters (name, value) VALUES (?, ?) "
                               "ON CONFLICT (name) DO UPDATE SET value = value + excluded.value", changed)


def counter(connection: sqlite3.Connection, name: str) -> int:
    row = connection.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
    return int(row["value"]) if row is not None else 0


class SqliteStatistics:
    def __init__(self, db: Database) -> None:
        self._db = db

    def stats(self) -> dict[str, int]:
        with self._db.read() as connection:
            found = {row["name"]: int(row["value"]) for row in connection.execute("SELECT name, value FROM counters")}
        return {name: found.get(name, 0) for name in NAMES}
