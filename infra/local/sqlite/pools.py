"""Pool slots on SQLite (the Pools port): a running count per pool and per concurrency key, taken
and given back in one transaction with the execution that holds the slot, so the counts are exact."""
from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

from chalicelib.domain.lifecycle import LAUNCHABLE
from chalicelib.domain.model import Execution, ExecutionStatus
from chalicelib.ports import Slot

from .db import Database

SCHEMA = """
CREATE TABLE IF NOT EXISTS pools (
    name TEXT PRIMARY KEY,
    running INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS concurrency_keys (
    key TEXT PRIMARY KEY,
    running INTEGER NOT NULL,
    max_running INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
"""


def give_back(connection: sqlite3.Connection, pool: str, concurrency: str | None) -> None:
    """Give back an execution's pool slot and its key's (`concurrency`, as its row stores it), in
    the write that frees them."""
    connection.execute("UPDATE pools SET running = running - 1 WHERE name = ?", (pool,))
    if concurrency is not None:
        connection.execute("UPDATE concurrency_keys SET running = running - 1 WHERE key = ?",
                           (json.loads(concurrency)["key"],))


class SqlitePools:
    def __init__(self, db: Database) -> None:
        self._db = db

    def take_slot(self, execution: Execution, pool: str, max_running: int) -> Slot:
        with self._db.write() as connection:
            holder = connection.execute("SELECT status, pool, launches FROM executions WHERE execution_id = ? "
                                        "AND job_id = ?", (execution.execution_id, execution.job_id)).fetchone()
            if (holder is None or ExecutionStatus(holder["status"]) not in LAUNCHABLE or holder["pool"] is not None
                    or holder["launches"] != execution.launches):
                return Slot.MOVED
            row = connection.execute("SELECT running FROM pools WHERE name = ?", (pool,)).fetchone()
            if max_running > 0 and row is not None and row["running"] >= max_running:
                return Slot.FULL
            key = execution.concurrency
            if key is not None:
                held = connection.execute("SELECT running FROM concurrency_keys WHERE key = ?", (key.key,)).fetchone()
                if held is not None and held["running"] >= key.limit:
                    return Slot.KEY_FULL
                connection.execute("INSERT INTO concurrency_keys (key, running, max_running) VALUES (?, 1, ?) "
                                   "ON CONFLICT (key) DO UPDATE SET running = running + 1, "
                                   "max_running = excluded.max_running", (key.key, key.limit))
            connection.execute("INSERT INTO pools (name, running) VALUES (?, 1) "
                               "ON CONFLICT (name) DO UPDATE SET running = running + 1", (pool,))
            connection.execute("UPDATE executions SET pool = ? WHERE execution_id = ?", (pool, execution.execution_id))
        return Slot.TAKEN

    def release_slot(self, execution: Execution) -> bool:
        # The stored execution says which pool's slot it holds; the caller's snapshot may be older.
        with self._db.write() as connection:
            holder = connection.execute("SELECT pool, concurrency FROM executions WHERE execution_id = ? AND job_id = ?",
                                        (execution.execution_id, execution.job_id)).fetchone()
            if holder is None or holder["pool"] is None:
                return False
            connection.execute("UPDATE executions SET pool = NULL WHERE execution_id = ?", (execution.execution_id,))
            give_back(connection, holder["pool"], holder["concurrency"])
        return True

    def pool_running(self, names: Sequence[str]) -> dict[str, int]:
        result = {name: 0 for name in names}
        if names:
            with self._db.read() as connection:
                marks = ", ".join("?" * len(names))
                for row in connection.execute(f"SELECT name, running FROM pools WHERE name IN ({marks})", list(names)):
                    result[row["name"]] = int(row["running"])
        return result

    def recount(self, pool: str, seen: int, holders: int) -> bool:
        with self._db.write() as connection:
            row = connection.execute("SELECT running FROM pools WHERE name = ?", (pool,)).fetchone()
            if (row["running"] if row is not None else 0) != seen:
                return False
            connection.execute("INSERT INTO pools (name, running) VALUES (?, ?) "
                               "ON CONFLICT (name) DO UPDATE SET running = excluded.running", (pool, holders))
            return True

    def keys_in_use(self, limit: int = 1000) -> dict[str, tuple[int, int]]:
        with self._db.read() as connection:
            rows = connection.execute("SELECT key, running, max_running FROM concurrency_keys WHERE running != 0 "
                                      "ORDER BY key LIMIT ?", (limit,)).fetchall()
        return {row["key"]: (int(row["running"]), int(row["max_running"])) for row in rows}

    def recount_key(self, key: str, seen: int, holders: int, limit: int) -> bool:
        with self._db.write() as connection:
            row = connection.execute("SELECT running FROM concurrency_keys WHERE key = ?", (key,)).fetchone()
            if (row["running"] if row is not None else 0) != seen:
                return False
            connection.execute("INSERT INTO concurrency_keys (key, running, max_running) VALUES (?, ?, ?) "
                               "ON CONFLICT (key) DO UPDATE SET running = excluded.running", (key, holders, limit))
            return True
