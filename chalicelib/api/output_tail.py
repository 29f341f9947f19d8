"""The end of an execution's stdout and stderr, as execution details carry them in `log` and
`error`: read back from each stream's end through the output reader, bounded.
docs/decisions.md (output in execution details)."""
from __future__ import annotations

from typing import Any

from ..domain.contract import OutputTail
from ..domain.model import Execution

# What `log` and `error` hold at most, each (UTF-8 bytes); the full text is at .../stdout, /stderr.
OUTPUT_TAIL_BYTES = 64 * 1024


def output_tail(reader: Any, execution: Execution, limit: int = OUTPUT_TAIL_BYTES) -> OutputTail | None:
    """None for an execution that never had a container (nothing was written)."""
    if not execution.task_arn:
        return None
    stdout, stdout_cut = reader.tail(execution, "stdout", limit)
    stderr, stderr_cut = reader.tail(execution, "stderr", limit)
    return OutputTail(stdout=stdout, stderr=stderr, stdout_truncated=stdout_cut, stderr_truncated=stderr_cut,
                      limit_bytes=limit)
