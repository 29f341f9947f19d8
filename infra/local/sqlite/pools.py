"""Pool slots on SQLite (the Pools port): a running count per pool, taken and given back in one
transaction with the execution that holds the slot, so the count is exact."""
from __future__ import annotations

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
"""


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
            connection.execute("INSERT INTO pools (name, running) VALUES (?, 1) "
                               "ON CONFLICT (name) DO UPDATE SET running = running + 1", (pool,))
            connection.execute("UPDATE executions SET pool = ? WHERE execution_id = ?", (pool, execution.execution_id))
        return Slot.TAKEN

    def release_slot(self, execution: Execution) -> bool:
        # The stored execution says which pool's slot it holds; the caller's snapshot may be older.
        with self._db.write() as connection:
            holder = connection.execute("SELECT pool FROM executions WHERE execution_id = ? AND job_id = ?",
                                        (execution.execution_id, execution.job_id)).fetchone()
            if holder is None or holder["pool"] is None:
                return False
            connection.execute("UPDATE executions SET pool = NULL WHERE execution_id = ?", (execution.execution_id,))
            connection.execute("UPDATE pools SET running = running - 1 WHERE name = ?", (holder["pool"],))
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
