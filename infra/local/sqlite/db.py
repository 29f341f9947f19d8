"""One SQLite database file shared by every local adapter: connections, transactions, schema.

SQLite in WAL mode lets readers go on while one writer writes. Each thread gets its own
connection (sqlite3 connections must not be shared across threads without care); a write is
one `BEGIN IMMEDIATE` transaction, so the write lock is taken up front and a transaction never
fails half-way on a lock upgrade. `synchronous=NORMAL` in WAL mode survives a crash of the
process (not of the machine's power) without losing committed transactions, which is what a
laptop runtime needs."""
from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager

BUSY_TIMEOUT_MS = 30_000


class Database:
    def __init__(self, path: str) -> None:
        self.path = path
        self._local = threading.local()
        self._schema_lock = threading.RLock()
        self._all: list[sqlite3.Connection] = []
        with self._schema_lock:
            connection = self._connection()
            connection.execute("PRAGMA journal_mode=WAL")

    def _connection(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                                         check_same_thread=False)
            connection.row_factory = sqlite3.Row
            connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute("PRAGMA foreign_keys=ON")
            self._local.connection = connection
            with self._schema_lock:
                self._all.append(connection)
        return connection

    def ensure_schema(self, script: str) -> None:
        """Create a module's tables and indexes (`CREATE ... IF NOT EXISTS`), once per process."""
        with self._schema_lock:
            self._connection().executescript(script)

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A connection for reads; several statements see one snapshot inside `BEGIN`."""
        connection = self._connection()
        connection.execute("BEGIN")
        try:
            yield connection
        finally:
            connection.execute("COMMIT")

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One transaction that holds the write lock from its start: all of it or nothing."""
        connection = self._connection()
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield connection
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    def close(self) -> None:
        with self._schema_lock:
            for connection in self._all:
                try:
                    connection.close()
                except sqlite3.Error:
                    pass
            self._all.clear()
        self._local = threading.local()
