"""Idempotency keys on SQLite (the IdempotencyKeys port), with the semantics the aws backend gets
from the powertools utility: a key is taken `in_progress` with a lease, then `answered` with the
answer kept for a day, or freed when the answer is an error. Taking a key is one transaction,
so of requests that come together with one key exactly one runs."""
from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable

from chalicelib.domain.idempotency import KEEP_SECONDS, LEASE_SECONDS, Answer
from chalicelib.ports import KeyOutcome, KeyState

from .db import Database, Expiry

SCHEMA = """
CREATE TABLE IF NOT EXISTS idempotency_keys (
    idempotency_key TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    state TEXT NOT NULL,
    holder TEXT NOT NULL,
    lease_until REAL NOT NULL,
    answer TEXT,
    expires_at REAL NOT NULL
) STRICT, WITHOUT ROWID;

CREATE INDEX IF NOT EXISTS idempotency_keys_by_expiry ON idempotency_keys (expires_at);
"""

IN_PROGRESS, ANSWERED = "in_progress", "answered"
PRUNE_EVERY_SECONDS = 60.0


class SqliteIdempotencyKeys:
    def __init__(self, db: Database, clock: Callable[[], float] = time.time, keep_seconds: float = KEEP_SECONDS,
                 lease_seconds: float = LEASE_SECONDS) -> None:
        self._db = db
        self._clock = clock
        self._keep = keep_seconds
        self._lease = lease_seconds
        self._expiry = Expiry(("idempotency_keys",), PRUNE_EVERY_SECONDS)

    def _take(self, key: str, fingerprint: str) -> str | KeyOutcome:
        """The holder's token when this request takes the key, else what it found."""
        at = self._clock()
        with self._db.write() as connection:
            self._expiry.purge(connection, at)  # expired keys go (they are already ignored below)
            row = connection.execute("SELECT fingerprint, state, lease_until, answer, expires_at FROM idempotency_keys "
                                     "WHERE idempotency_key = ?", (key,)).fetchone()
            free = row is None or row["expires_at"] < at or (row["state"] == IN_PROGRESS and row["lease_until"] < at)
            if not free:
                if row["fingerprint"] != fingerprint:
                    return KeyOutcome(KeyState.REUSED)
                if row["state"] == IN_PROGRESS:
                    return KeyOutcome(KeyState.IN_PROGRESS)
                return KeyOutcome(KeyState.REPLAYED, Answer.from_json(json.loads(row["answer"])))
            holder = uuid.uuid4().hex
            connection.execute(
                "INSERT OR REPLACE INTO idempotency_keys (idempotency_key, fingerprint, state, holder, lease_until, "
                "answer, expires_at) VALUES (?, ?, ?, ?, ?, NULL, ?)",
                (key, fingerprint, IN_PROGRESS, holder, at + self._lease, at + self._keep))
            return holder

    def run_once(self, key: str, fingerprint: str, action: Callable[[], Answer]) -> KeyOutcome:
        taken = self._take(key, fingerprint)
        if isinstance(taken, KeyOutcome):
            return taken
        try:
            answer = action()
        except Exception:
            self._free(key, taken)
            raise
        if answer.kept:
            self._keep_answer(key, taken, answer)
        else:
            self._free(key, taken)
        return KeyOutcome(KeyState.RAN, answer)

    # Both writes name the holder: a request that outlived its lease, whose key another request
    # took over, neither frees nor answers that request's key.

    def _keep_answer(self, key: str, holder: str, answer: Answer) -> None:
        at = self._clock()
        with self._db.write() as connection:
            connection.execute(
                "UPDATE idempotency_keys SET state = ?, answer = ?, expires_at = ? "
                "WHERE idempotency_key = ? AND holder = ?",
                (ANSWERED, json.dumps(answer.to_json()), at + self._keep, key, holder))

    def _free(self, key: str, holder: str) -> None:
        with self._db.write() as connection:
            connection.execute("DELETE FROM idempotency_keys WHERE idempotency_key = ? AND holder = ?", (key, holder))
