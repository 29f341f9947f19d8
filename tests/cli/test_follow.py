"""The follower's handling of frames, in process: lines cut into partial frames written once
whole, a resumed stream's repeated line not written twice, the exit codes and reasons of each
ending, and the status line shown (on a terminal only) while a job waits."""
from __future__ import annotations

import io
from typing import Any

import pytest
from fastlane_cli.config import Settings
from fastlane_cli.follow import Ending, Follower
from fastlane_cli.progress import Progress
from rich.console import Console


class Api:
    settings = Settings()


def follower() -> tuple[Follower, io.BytesIO, io.BytesIO]:
    out, err = io.BytesIO(), io.BytesIO()
    return Follower(Api(), "t", "j", out=out, err=err), out, err  # type: ignore[arg-type]


def output(stream: str, lines: list[str], position: str, partial: bool = False) -> dict[str, Any]:
    return {"type": "output", "stream": stream, "lines": lines, "position": position, "partial": partial}


def test_partial_frames_make_one_line_and_a_resumed_stream_does_not_repeat_it() -> None:
    follow, out, err = follower()
    follow._subscribed({"executionId": "e1", "status": "running"})
    follow._output(output("stdout", ["first", "a long li"], "1-1,", partial=True))
    follow._output(output("stdout", ["ne cut in"], "1-1,", partial=True))
    follow._output(output("stderr", ["oops"], "1-1,2-2"))
    # The connection drops; the service sends the cut line whole again after the position.
    for stream in ("stdout", "stderr"):
        follow.resumed[stream] = bool(follow.partial[stream])
    follow._subscribed({"executionId": "e1", "status": "running"})
    follow._output(output("stdout", ["a long line cut in three", "last"], "3-3,2-2"))
    assert out.getvalue() == b"first\na long line cut in three\nlast\n"
    assert err.getvalue() == b"oops\n"
    assert follow.position == "3-3,2-2"


def test_the_output_of_an_execution_already_ended_is_not_written_again() -> None:
    follow, out, _ = follower()
    follow._subscribed({"executionId": "e1", "status": "running"})
    follow._output(output("stdout", ["once"], "1-1,"))
    follow.ended["e1"] = Ending("e1", "failed", 1, None)
    follow._output(output("stdout", ["once"], "1-1,"))
    follow._subscribed({"executionId": "e2", "status": "running"})  # its retry
    follow._output(output("stdout", ["twice"], "5-5,"))
    assert out.getvalue() == b"once\ntwice\n"


@pytest.mark.parametrize(("ending", "code", "says"), [
    (Ending("e", "done", 0, None), 0, None),
    (Ending("e", "failed", 3, None), 3, None),
    (Ending("e", "failed", 137, "OutOfMemoryError: container killed"), 137, "OutOfMemoryError"),
    (Ending("e", "timedout", 137, "ran longer than its timeout of 1 s"), 124, "timed out"),
    (Ending("e", "stopped", 143, None), 123, "was stopped by a client"),
    (Ending("e", "failed", None, "CannotPullContainerError: no such image"), 125, "could not run"),
    (Ending("e", "expired", None, None), 125, "expired"),
])
def test_exit_codes_and_reasons(ending: Ending, code: int, says: str | None) -> None:
    assert ending.exit_code() == code
    reason = ending.reason()
    assert (reason is None) if says is None else (says in (reason or ""))


def test_the_status_line_shows_on_a_terminal_only() -> None:
    screen = io.StringIO()
    shown = Progress(console=Console(file=screen, force_terminal=True, width=100))
    assert shown.enabled
    shown.waiting("enqueued", "the pool default is full (2 of 2 running)")
    shown.clear()
    assert "waiting to be launched (the pool default is full (2 of 2 running))" in screen.getvalue()

    piped = io.StringIO()
    quiet = Progress(console=Console(file=piped, force_terminal=False))
    assert not quiet.enabled
    quiet.waiting("enqueued", None)
    quiet.note("following the job's retry")
    assert piped.getvalue() == "fastlane: following the job's retry\n"
