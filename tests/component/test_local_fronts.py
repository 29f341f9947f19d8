"""The fronts' supervisor (infra/local/fronts.py) when a front cannot start: the runtime is told
why, in the front's own words, and nothing it started is left behind."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from infra.local.fronts import EngineHooks, Fronts
from infra.local.gateway import listen


def ignored(*_args: object) -> None:
    pass


def test_a_front_that_cannot_open_the_state_file_stops_the_start_with_its_reason(tmp_path: Path) -> None:
    listening = listen("127.0.0.1", 0)
    fronts = Fronts(2, listening, EngineHooks(queue=ignored, schedule=ignored, stop=ignored), host="127.0.0.1",
                    state=str(tmp_path / "missing" / "state.db"), isolation="local processes")
    try:
        with pytest.raises(RuntimeError, match=r"an HTTP front exited as it started \(status 1\): .*open"):
            fronts.start()
        pids = fronts.pids
        assert pids, "the fronts were started"
    finally:
        fronts.stop()
        listening.close()
    assert fronts.heard["error"] >= 1 and fronts.heard["ready"] == 0
    for pid in pids:  # stop() reaped them: none is running, none is a zombie
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
