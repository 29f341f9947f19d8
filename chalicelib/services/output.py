"""stdout and stderr of executions, read from CloudWatch Logs in pages that never exceed what
one HTTP response may carry, and never cut silently."""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass

from ..domain.ecs import log_streams
from ..domain.errors import ValidationError
from ..domain.model import Execution
from ..ports import LogReader

SEPARATOR = "-=-"
MAX_CALLS_PER_PAGE = 50
# Calls a tail may take reading back from a stream's end (each up to 1 MB); past them the tail is
# the stream's true end, shorter than asked, flagged as cut (only events of a few bytes each,
# 10,000 to a call, would need more than one or two).
MAX_TAIL_CALLS = 16


@dataclass(frozen=True)
class OutputPage:
    text: str
    next_token: str | None


def _keep_tail(text: str, limit: int) -> tuple[str, bool]:
    """The last `limit` UTF-8 bytes of `text`, cut at a character boundary; and whether it was cut."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text, False
    return data[-limit:].decode("utf-8", "ignore"), True  # a continuation byte alone would not decode


def _encode(index: int, token: str | None) -> str:
    return base64.urlsafe_b64encode(json.dumps([index, token]).encode()).decode().rstrip("=")


def _decode(token: str) -> tuple[int, str | None]:
    try:
        padded = token + "=" * (-len(token) % 4)
        index, inner = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(index, int) or index < 0 or not (inner is None or isinstance(inner, str)):
            raise ValueError
        return index, inner
    except (ValueError, TypeError, json.JSONDecodeError, UnicodeDecodeError):
        raise ValidationError("token is not a page token this service gave out.", field="token") from None


class OutputReader:
    def __init__(self, reader: LogReader, page_bytes: int) -> None:
        self._reader = reader
        # CloudWatch answers up to 1 MB a call; stop adding calls once half a page is filled, so a
        # page stays under page_bytes + 1 MB.
        self._fill = max(1, page_bytes // 2)

    def read(self, execution: Execution, which: str, token: str | None) -> OutputPage:
        """which: 'stdout', 'stderr' or 'logs' (stdout, a line -=-, then stderr)."""
        if not execution.task_arn:
            return OutputPage("", None)  # never launched: no output
        stdout, stderr = log_streams(execution.task_arn)
        streams = {"stdout": [stdout], "stderr": [stderr], "logs": [stdout, stderr]}[which]
        index, inner = _decode(token) if token else (0, None)
        if index >= len(streams):
            raise ValidationError("token is not a page token of this output.", field="token")
        parts: list[str] = []
        size = 0
        for _ in range(MAX_CALLS_PER_PAGE):
            chunk = self._reader.read(streams[index], inner)
            lines, next_inner, at_end = chunk.lines, chunk.next_token, chunk.at_end
            for line in lines:
                parts.append(line + "\n")
                size += len(line) + 1
            if at_end:
                if index + 1 >= len(streams):
                    return OutputPage("".join(parts), None)
                index, inner = index + 1, None
                parts.append(SEPARATOR + "\n")
                continue
            inner = next_inner
            if size >= self._fill:
                break
        return OutputPage("".join(parts), _encode(index, inner))

    def tail(self, execution: Execution, which: str, limit_bytes: int) -> tuple[str, bool]:
        """The last `limit_bytes` of stdout or stderr, read from the stream's end backwards (one
        or two calls, whatever the stream's size); and whether anything before them was left out."""
        if not execution.task_arn:
            return "", False
        stdout, stderr = log_streams(execution.task_arn)
        stream = {"stdout": stdout, "stderr": stderr}[which]
        pages: list[list[str]] = []
        size, token, whole = 0, None, False
        for _ in range(MAX_TAIL_CALLS):
            chunk = self._reader.read_back(stream, token)
            pages.append(chunk.lines)
            size += sum(len(line.encode("utf-8")) + 1 for line in chunk.lines)
            if chunk.at_end:
                whole = True
                break
            if size > limit_bytes:
                break  # more than enough: what is left out before is certain
            token = chunk.next_token
        text, cut = _keep_tail("".join(line + "\n" for page in reversed(pages) for line in page), limit_bytes)
        return text, cut or not whole
