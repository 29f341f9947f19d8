"""The delivery log on SQLite (the Deliveries port): each notification attempt is sent once.
A key goes `sending` (with a lease) -> `sent` (with the attempt's outcome) -> `done`; a worker
takes over a key whose lease ran out, and is told the outcome when it was sent already."""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from chalicelib.ports import Claim, ClaimState

from .db import Database, Expiry

SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    delivery_key TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    lease_until REAL NOT NULL,
    outcome TEXT,
    expires_at REAL NOT NULL
) STRICT, WITHOUT ROWID;

CREATE INDEX IF NOT EXISTS deliveries_by_expiry ON deliveries (expires_at);
"""

SENDING, SENT, DONE = "sending", "sent", "done"
KEEP_SECONDS = 14 * 86400  # as long as a duplicate queue delivery could still come
PURGE_EVERY_SECONDS = 3600.0


class SqliteDeliveries:
    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._clock = clock
        self._expiry = Expiry(("deliveries",), PURGE_EVERY_SECONDS)

    def claim(self, key: str, lease_seconds: float) -> Claim:
        at = self._clock()
        with self._db.write() as connection:
            self._expiry.purge(connection, at)
            row = connection.execute("SELECT state, lease_until, outcome FROM deliveries WHERE delivery_key = ?",
                                     (key,)).fetchone()
            if row is None:
                connection.execute("INSERT INTO deliveries (delivery_key, state, lease_until, expires_at) "
                                   "VALUES (?, ?, ?, ?)", (key, SENDING, at + lease_seconds, at + KEEP_SECONDS))
                return Claim(ClaimState.CLAIMED)
            if row["state"] == DONE:
                return Claim(ClaimState.DONE)
            if row["lease_until"] >= at:
                return Claim(ClaimState.BUSY)
            # Left behind by a worker whose lease ran out: this one takes over.
            connection.execute("UPDATE deliveries SET lease_until = ? WHERE delivery_key = ?", (at + lease_seconds, key))
            if row["state"] == SENT:
                return Claim(ClaimState.SENT, json.loads(row["outcome"] or "{}"))
            return Claim(ClaimState.CLAIMED)

    def _set(self, key: str, state: str, lease_until: float, outcome: dict[str, Any] | None = None) -> None:
        at = self._clock()
        with self._db.write() as connection:
            connection.execute(
                "INSERT INTO deliveries (delivery_key, state, lease_until, outcome, expires_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (delivery_key) DO UPDATE SET state = excluded.state, lease_until = excluded.lease_until, "
                "outcome = coalesce(excluded.outcome, outcome)",
                (key, state, lease_until, json.dumps(outcome) if outcome is not None else None, at + KEEP_SECONDS))

    def mark_sent(self, key: str, outcome: dict[str, Any], lease_seconds: float) -> None:
        """The attempt was made: keep its outcome, so a worker that takes over never sends again."""
        self._set(key, SENT, self._clock() + lease_seconds, outcome)

    def complete(self, key: str) -> None:
        self._set(key, DONE, 0.0)

    def release(self, key: str) -> None:
        with self._db.write() as connection:
            connection.execute("DELETE FROM deliveries WHERE delivery_key = ? AND state = ?", (key, SENDING))
