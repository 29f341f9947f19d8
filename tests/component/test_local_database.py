"""The local backend's database file shared by processes (the runtime's engine and its HTTP
fronts): a write transaction holds the file's cross-process write lock from its start to its
end, so writers of other processes queue on it rather than in SQLite's sleeping busy handler,
and every write of every process lands."""
from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest

from infra.local.sqlite.db import WRITER_SUFFIX, Database
from tests.system.conftest import ROOT

WRITES = 300


def held_by_someone(path: str) -> bool:
    """Whether another open file description holds the write lock now."""
    fd = os.open(path + WRITER_SUFFIX, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # lets go of it if taken here
    return False


def test_a_write_holds_the_files_write_lock_from_start_to_end(tmp_path: Path) -> None:
    path = str(tmp_path / "local.db")
    db = Database(path)
    db.ensure_schema("CREATE TABLE IF NOT EXISTS t (n INTEGER)")
    assert not held_by_someone(path)
    with db.write() as connection:
        assert held_by_someone(path)
        connection.execute("INSERT INTO t VALUES (1)")
    assert not held_by_someone(path)
    with pytest.raises(RuntimeError), db.write():
        assert held_by_someone(path)
        raise RuntimeError("rolled back")
    assert not held_by_someone(path)  # let go of on a rollback too
    db.close()


WRITER = """
import sys
from infra.local.sqlite.db import Database

db = Database(sys.argv[1])
for n in range(int(sys.argv[2])):
    with db.write() as connection:
        connection.execute("INSERT INTO t (who, n) VALUES (?, ?)", (sys.argv[3], n))
"""


def test_writers_of_several_processes_all_land(tmp_path: Path) -> None:
    path = str(tmp_path / "local.db")
    db = Database(path)
    db.ensure_schema("CREATE TABLE IF NOT EXISTS t (who TEXT, n INTEGER)")
    others = [subprocess.Popen([sys.executable, "-c", WRITER, path, str(WRITES), f"p{k}"], cwd=ROOT) for k in range(2)]
    for n in range(WRITES):
        with db.write() as connection:
            connection.execute("INSERT INTO t (who, n) VALUES ('here', ?)", (n,))
    for process in others:
        assert process.wait(timeout=60) == 0
    with db.read() as connection:
        counts = dict(connection.execute("SELECT who, COUNT(*) FROM t GROUP BY who").fetchall())
    assert counts == {"here": WRITES, "p0": WRITES, "p1": WRITES}
    db.close()
