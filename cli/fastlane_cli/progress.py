"""What `run` and `logs -f` say about a job while it waits and starts: a transient status line on
stderr when stderr is a terminal, and notes ("following the job's retry") as lines on stderr."""
from __future__ import annotations

import time

from rich.console import Console
from rich.status import Status
from rich.text import Text

STATES = {
    "enqueued": "waiting to be launched",
    "pulling": "starting: the platform provisions it and pulls the image",
    "running": "running",
    "scheduled": "scheduled",
}


class Progress:
    def __init__(self, enabled: bool | None = None, quiet: bool = False, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True, highlight=False)
        self.enabled = self.console.is_terminal if enabled is None else enabled
        self.quiet = quiet
        self._status: Status | None = None
        self._since = time.monotonic()
        self._label = ""

    def waiting(self, status: str, why: str | None) -> None:
        """Shows (on a terminal) that the execution waits or starts, and why when the service says."""
        if not self.enabled or not status or status == "running":
            self.clear()
            return
        label = STATES.get(status, status) + (f" ({why})" if why else "")
        if label != self._label:
            self._label = label
            self._since = time.monotonic()
        if self._status is None:
            self._status = self.console.status(self, spinner="dots")
            self._status.start()

    def __rich__(self) -> Text:
        """The status line, drawn again at each refresh: with the time spent in this state."""
        return Text.assemble(("fastlane: ", "dim"), self._label, (f" {time.monotonic() - self._since:.0f}s", "dim"))

    def clear(self) -> None:
        """Takes the status line away (before output is written)."""
        if self._status is not None:
            self._status.stop()
            self._status = None
            self._label = ""

    def note(self, text: str) -> None:
        """A line on stderr, `fastlane: ...` (none with --quiet)."""
        if self.quiet:
            return
        self.clear()
        self.console.print(f"fastlane: {text}", markup=False, highlight=False, soft_wrap=True)
