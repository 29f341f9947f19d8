"""The end of an execution's stdout and stderr, as execution details carry them in `log` and
`error`: read through the output reader, bounded. docs/decisions.md (output in execution details)."""
from __future__ import annotations

from typing import Any

from ..domain.contract import OutputTail
from ..domain.model import Execution

# What `log` and `error` hold at most, each (UTF-8 bytes); the full text is at .../stdout, /stderr.
OUTPUT_TAIL_BYTES = 64 * 1024
# How many pages of one stream the details read to find its end (each at most LOG_PAGE_BYTES,
# 1 MiB by default). Past them the details hold the end of what was read, flagged as cut.
MAX_SCAN_PAGES = 16


def _keep_tail(text: str, limit: int) -> tuple[str, bool]:
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text, False
    # Cut at a character boundary: a continuation byte would not decode on its own.
    return data[-limit:].decode("utf-8", "ignore"), True


def _tail(reader: Any, execution: Execution, which: str, limit: int) -> tuple[str, bool]:
    text, cut, token = "", False, None
    for _ in range(MAX_SCAN_PAGES):
        page = reader.read(execution, which, token)
        text, dropped = _keep_tail(text + page.text, limit)
        cut = cut or dropped
        if not page.next_token:
            return text, cut
        token = page.next_token
    return text, True


def output_tail(reader: Any, execution: Execution, limit: int = OUTPUT_TAIL_BYTES) -> OutputTail | None:
    """None for an execution that never had a container (nothing was written)."""
    if not execution.task_arn:
        return None
    stdout, stdout_cut = _tail(reader, execution, "stdout", limit)
    stderr, stderr_cut = _tail(reader, execution, "stderr", limit)
    return OutputTail(stdout=stdout, stderr=stderr, stdout_truncated=stdout_cut, stderr_truncated=stderr_cut,
                      limit_bytes=limit)
