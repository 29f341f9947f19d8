"""The state file's schema version: a file another version of the runtime wrote is refused at start."""
from __future__ import annotations

import sqlite3

from .db import Database

# Raised by one whenever a table, column or index of the state file changes (any module's schema):
# a file is read only by the version whose schema wrote it, with no migration to keep in step.
SCHEMA_VERSION = 3  # 3: execution timeline, ECS tasks' pull times, status time (listing across tasks); 2: concurrency keys


class StateVersionMismatch(RuntimeError):
    """The state file was written by another version (or by one from before files carried theirs)."""


def claim(db: Database) -> None:
    """Give a new state file this version; raise StateVersionMismatch, leaving the file as it
    is, for one with another version or for one with tables but none (written before state
    files carried a version: its executions may lack what is now frozen on them)."""
    with db.write() as connection:
        found = int(connection.execute("PRAGMA user_version").fetchone()[0])
        if found == SCHEMA_VERSION:
            return
        if found == 0 and not _has_tables(connection):
            connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            return
    written_by = f"version {found} of its schema" if found else "a version from before state files carried one"
    raise StateVersionMismatch(f"the state file {db.path} was written by {written_by}, and this runtime reads version "
                               f"{SCHEMA_VERSION}: run `make reset` (or --fresh) to start with an empty one, "
                               "or run the version that wrote it")


def _has_tables(connection: sqlite3.Connection) -> bool:
    return connection.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' LIMIT 1").fetchone() is not None
