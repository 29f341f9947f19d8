"""The state file carries its schema version: a new file gets this one, and a file another
version wrote (or one from before files carried a version) is refused as it is, the runtime
exiting with one line that says what to do."""
from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from infra.local.sqlite.db import Database
from infra.local.sqlite.stores import open_stores
from infra.local.sqlite.version import SCHEMA_VERSION, StateVersionMismatch

ROOT = Path(__file__).resolve().parents[2]


def user_version(path: Path) -> int:
    with sqlite3.connect(path) as connection:
        return int(connection.execute("PRAGMA user_version").fetchone()[0])


def written_by(path: Path, version: int) -> Path:
    """A state file with a table of its own and `version` (0: none, as before files carried one)."""
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE executions (execution_id TEXT PRIMARY KEY)")
        connection.execute(f"PRAGMA user_version = {version}")
    return path


def tables(path: Path) -> list[str]:
    with sqlite3.connect(path) as connection:
        return [row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]


def test_a_new_state_file_gets_the_current_version_and_opens_again(tmp_path: Path) -> None:
    path = tmp_path / "local.db"
    open_stores(Database(str(path)))
    assert user_version(path) == SCHEMA_VERSION
    open_stores(Database(str(path)))  # the same version: opened as it is
    assert user_version(path) == SCHEMA_VERSION


@pytest.mark.parametrize("version", [0, SCHEMA_VERSION + 1])
def test_a_file_of_another_version_is_refused_and_left_as_it_is(tmp_path: Path, version: int) -> None:
    path = written_by(tmp_path / "local.db", version)
    with pytest.raises(StateVersionMismatch) as refused:
        open_stores(Database(str(path)))
    assert "make reset" in str(refused.value) and "run the version that wrote it" in str(refused.value)
    assert (user_version(path), tables(path)) == (version, ["executions"])


def test_the_runtime_refuses_a_state_file_of_another_version_with_one_line(tmp_path: Path) -> None:
    path = written_by(tmp_path / "local.db", SCHEMA_VERSION + 1)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {key: value for key, value in os.environ.items() if key not in ("AWS_ENDPOINT_URL", "BACKEND", "STATE_FILE")}
    done = subprocess.run([sys.executable, "-m", "infra.local.runtime", "--port", str(port), "--backend", "local",
                           "--state", str(path)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("fastlane local runtime: cannot start: the state file ") and "make reset" in lines[0]
    assert (user_version(path), tables(path)) == (SCHEMA_VERSION + 1, ["executions"])
