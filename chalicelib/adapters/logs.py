"""CloudWatch Logs: reads the stdout and stderr streams of executions, page by page."""
from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..domain.errors import DependencyDown
from ..ports import LogChunk


class CloudWatchLogReader:
    def __init__(self, client: Any, log_group: str) -> None:
        self._logs = client
        self._group = log_group

    def read(self, stream: str, token: str | None) -> LogChunk:
        """One GetLogEvents call (at most 1 MB): the lines, the token to go on from, and whether
        the end of the reading was reached (CloudWatch then answers no lines and gives back the
        token it was given, in either direction)."""
        return self._call(stream, token, forward=True)

    def read_back(self, stream: str, token: str | None) -> LogChunk:
        """One GetLogEvents call from the stream's end backwards (`startFromHead` false: the
        newest events, at most 1 MB), then on with its backward token."""
        return self._call(stream, token, forward=False)

    def _call(self, stream: str, token: str | None, forward: bool) -> LogChunk:
        request: dict[str, Any] = {"logGroupName": self._group, "logStreamName": stream, "startFromHead": forward}
        if token:
            request["nextToken"] = token
        try:
            response = self._logs.get_log_events(**request)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                return LogChunk([], token, True)  # nothing written yet (or ever)
            raise DependencyDown.of("CloudWatch Logs", error) from error  # throttled, denied, down: 503
        except BotoCoreError as error:
            raise DependencyDown.of("CloudWatch Logs", error) from error
        lines = [event["message"] for event in response.get("events", [])]
        next_token = response.get("nextForwardToken" if forward else "nextBackwardToken")
        return LogChunk(lines, next_token, (not lines and next_token == token) or next_token is None)
