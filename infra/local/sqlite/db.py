"""One SQLite database file shared by every local adapter: connections, transactions, schema.

SQLite in WAL mode lets readers go on while one writer writes. sqlite3 connections must not be
used by two threads at once, and the local gateways start a thread per request, so connections
live in a pool: a transaction borrows one and gives it back, and a burst of threads costs as many
connections as ran at once, not one per thread ever seen.

A write is one `BEGIN IMMEDIATE` transaction, so the write lock is taken up front and a
transaction never fails half-way on a lock upgrade. Writers of this process also queue on a
Python lock before asking SQLite: SQLite's own busy handler sleeps and polls (1, 2, 5, 10 ms ...),
which under 32 concurrent writers turns sub-millisecond transactions into tens of milliseconds;
the lock hands over at once. The same holds across processes (the local runtime's HTTP fronts
and its engine share the file): a writer then takes an exclusive `flock` on `<file>.writer`,
which the kernel hands to the next process waiting for it as soon as it is let go (and lets go
of when a process dies), so no writer sleeps in SQLite's busy handler unless something outside
the runtime writes the file.

`synchronous=NORMAL` in WAL mode survives a crash of the process (not a power loss) without
losing committed transactions, which is what a laptop runtime needs, and makes a commit cost no
fsync. Errors that mean the file cannot be used (cannot be opened, I/O error, locked beyond the
timeout, not a database) are raised as DependencyDown, as the AWS adapters do for DynamoDB."""
from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

from chalicelib.domain.errors import DependencyDown

BUSY_TIMEOUT_MS = 30_000
WRITER_SUFFIX = ".writer"  # the file whose flock is the write lock across processes


def _unavailable(error: sqlite3.Error) -> bool:
    """Errors of the file or the engine, not of the statement (a constraint, a wrong binding)."""
    if isinstance(error, (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError)):
        return False
    return isinstance(error, sqlite3.DatabaseError)


@contextmanager
def _translated() -> Iterator[None]:
    """Errors that mean the file cannot be used raised as DependencyDown; a statement's own as they are."""
    try:
        yield
    except sqlite3.Error as error:
        if _unavailable(error):
            raise DependencyDown(f"SQLite: {error}") from error
        raise


class Expiry:
    """What DynamoDB's TTL does for the AWS tables: rows of `tables` whose `expires_at` passed are
    deleted, at most once every `every_seconds` (the stores ignore or replace expired rows in
    between). Call `purge` inside a write."""

    def __init__(self, tables: tuple[str, ...], every_seconds: float) -> None:
        self._tables = tables
        self._every = every_seconds
        self._purged_at = float("-inf")

    def purge(self, connection: sqlite3.Connection, at: float) -> None:
        if at - self._purged_at > self._every:
            for table in self._tables:
                connection.execute(f"DELETE FROM {table} WHERE expires_at < ?", (at,))
            self._purged_at = at


class Database:
    def __init__(self, path: str) -> None:
        self.path = path
        self._idle: list[sqlite3.Connection] = []
        self._pool_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._schema_lock = threading.Lock()
        self._in_transaction = threading.local()
        self._generation = 0  # close() drops connections borrowed before it
        self._writer_fd = self._open_writer(path)
        if self._writer_fd is not None:  # kept while a transaction may still use it: let go with the object
            weakref.finalize(self, os.close, self._writer_fd)
        with self._borrowed() as connection:
            with _translated():
                connection.execute("PRAGMA journal_mode=WAL")

    @staticmethod
    def _open_writer(path: str) -> int | None:
        if path == ":memory:" or path.startswith("file:"):
            return None  # not shared with another process
        try:
            return os.open(path + WRITER_SUFFIX, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as error:
            raise DependencyDown(f"SQLite: cannot open {path}{WRITER_SUFFIX}: {error}") from error

    @contextmanager
    def _writer(self) -> Iterator[None]:
        """This process's turn to write, among every process on the file (the caller holds the
        in-process write lock, so one thread a process asks)."""
        fd = self._writer_fd
        if fd is None:
            yield
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # waits in the kernel, without the GIL
        except OSError as error:
            raise DependencyDown(f"SQLite: cannot take the write lock {self.path}{WRITER_SUFFIX}: {error}") from error
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    # connections ---------------------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                                     check_same_thread=False)
        connection.row_factory = sqlite3.Row
        connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.execute("PRAGMA foreign_keys=ON")
        return connection

    @contextmanager
    def _borrowed(self) -> Iterator[sqlite3.Connection]:
        if getattr(self._in_transaction, "active", False):
            # A second transaction in the same thread would wait for the first one's lock forever.
            raise RuntimeError("a transaction of this database is already open in this thread")
        with self._pool_lock:
            connection = self._idle.pop() if self._idle else None
            generation = self._generation
        if connection is None:
            try:
                connection = self._open()
            except sqlite3.Error as error:
                raise DependencyDown(f"SQLite: cannot open {self.path}: {error}") from error
        broken = False
        self._in_transaction.active = True
        try:
            yield connection
        except DependencyDown:
            broken = True  # a connection that failed once is not trusted again
            raise
        except sqlite3.Error as error:
            broken = _unavailable(error)
            raise
        finally:
            self._in_transaction.active = False
            with self._pool_lock:
                keep = not broken and generation == self._generation
                if keep:
                    self._idle.append(connection)
            if not keep:
                connection.close()

    # transactions --------------------------------------------------------------------------------

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A connection for reads; every statement inside sees one snapshot."""
        with self._borrowed() as connection, _translated():
            connection.execute("BEGIN")
            try:
                yield connection
            finally:
                connection.execute("COMMIT")

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One transaction that holds the write lock from its start: all of it or nothing."""
        with self._write_lock, self._writer(), self._borrowed() as connection, _translated():
            try:
                connection.execute("BEGIN IMMEDIATE")
                try:
                    yield connection
                except BaseException:
                    connection.execute("ROLLBACK")
                    raise
                connection.execute("COMMIT")
            except sqlite3.Error:
                if connection.in_transaction:
                    try:
                        connection.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass  # the connection is dropped below; SQLite rolls back what it cannot commit
                raise

    def ensure_schema(self, script: str) -> None:
        """Create a module's tables and indexes (`CREATE ... IF NOT EXISTS`)."""
        with self._schema_lock, self._write_lock, self._writer(), self._borrowed() as connection, _translated():
            connection.executescript(script)

    def ping(self) -> None:
        """Raises DependencyDown when the file cannot be read."""
        with self.read() as connection:
            connection.execute("SELECT 1").fetchone()

    def close(self) -> None:
        """Close every idle connection; those in use are closed when given back."""
        with self._pool_lock:
            idle, self._idle = self._idle, []
            self._generation += 1
        for connection in idle:
            try:
                connection.close()
            except sqlite3.Error:
                pass
