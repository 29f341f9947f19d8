"""Following a job's output live over the websocket API (docs/live-logs.md), as `run` and
`logs -f` do: stdout to stdout and stderr to stderr as they are written, resumed from the last
position after a dropped connection, into the job's retries (unless told not to), to the end frame,
whose status gives the exit code."""
from __future__ import annotations

import json
import re
import sys
import time
from dataclasses import dataclass
from typing import IO, Any
from urllib.parse import urlencode

from .client import Api, path
from .errors import AUTH, NOT_FOUND, NOT_RUN, STOPPED, TIMEDOUT, UNAVAILABLE, UNEXPECTED, CliError
from .progress import Progress

FINAL = {"done", "failed", "timedout", "expired", "stopped"}
STREAMS = ("stdout", "stderr")
# With nothing from the websocket for this long, ask the API whether the execution ended (a
# stream whose end was lost); the pause doubles to SILENCE_MAX while nothing comes.
SILENCE_FIRST, SILENCE_MAX = 0.25, 15.0
# The API says the execution ended but the stream has not: reconnect (a subscriber that comes after
# the end gets the rest, the end frame and `done`), waiting twice as long before each next
# reconnect, and after END_GIVE_UP take the API's word for it.
END_GRACE, END_GIVE_UP = 0.25, 20.0
PING_EVERY = 60.0  # API Gateway drops a connection idle for 10 minutes
RECONNECT_WINDOW = 60.0  # give up after failing to (re)connect for this long in a row
WAIT_CAP = 5.0  # the most to wait before asking again for a job that has not started
_CONFIG = re.compile(r'<script type="application/json" id="config">(.*?)</script>', re.S)


@dataclass(frozen=True)
class Ending:
    execution_id: str | None
    status: str
    code: int | None  # the container's exit code, when it gave one
    error: str | None

    @classmethod
    def of(cls, frame: dict[str, Any]) -> Ending:
        code = frame.get("exitCode")
        return cls(frame.get("executionId"), str(frame.get("status")), code if isinstance(code, int) else None,
                   frame.get("error") if isinstance(frame.get("error"), str) else None)

    def exit_code(self) -> int:
        """`docker run`'s rule: the container's code; the command line's own for endings without one."""
        if self.status == "done":
            return 0
        if self.status == "timedout":
            return TIMEDOUT
        if self.status == "stopped":
            return STOPPED
        if self.status == "failed" and self.code is not None and 0 < self.code < 256:
            return self.code
        return NOT_RUN

    def reason(self) -> str | None:
        """The line that says why, on stderr, for an ending the container did not choose."""
        said = f": {self.error}" if self.error else ""
        if self.status == "timedout":
            return f"execution {self.execution_id} timed out{said}"
        if self.status == "stopped":
            return f"execution {self.execution_id} was stopped{said or ' by a client'}"
        if self.status == "expired":
            return f"execution {self.execution_id} expired before it could start{said}"
        if self.status == "failed" and (self.code is None or self.code == 0):
            return f"execution {self.execution_id} could not run{said}"
        if self.status == "failed" and self.error:
            return f"execution {self.execution_id} failed with exit code {self.code}{said}"
        return None


class _Dropped(Exception):
    """The connection ended without a close frame (or we ended it to resume)."""


def websocket_base(api: Api, task: str, job: str) -> str:
    """The live-log websocket's URL: configured (--ws-url, FASTLANE_WS_URL), or the one the job's
    stream page is served with (an authorized GET; the service knows where its websocket is)."""
    if api.settings.ws_url:
        return api.settings.ws_url
    page = api.request("GET", path("tasks", task, "jobs", job, "stream"), headers={"Accept": "text/html"}).text
    match = _CONFIG.search(page)
    try:
        url = json.loads(match.group(1)).get("websocketUrl") if match else None
    except ValueError:
        url = None
    if not isinstance(url, str):
        raise CliError("could not find the live-log websocket's URL in the job's stream page; give --ws-url", UNEXPECTED)
    if not url:
        raise CliError("live logs are not configured on this service (WEBSOCKET_URL is unset); give --ws-url, or "
                       "use `fastlane logs` once the job has ended", UNAVAILABLE)
    return url


class Follower:
    def __init__(self, api: Api, task: str, job: str, execution: str | None = None, follow_retries: bool = True,
                 progress: Progress | None = None, out: IO[bytes] | None = None, err: IO[bytes] | None = None,
                 start: str | None = None) -> None:
        """Follows `execution` only, or the job from `start` (an execution `run` or `retry` just
        created: it may have ended, and been retried, before the first connection) or from its
        latest execution."""
        self.api = api
        self.task = task
        self.job = job
        self.pinned = execution  # `logs -f TASK JOB EXECUTION` follows that one only
        self.current = execution or start
        self.follow_retries = follow_retries and execution is None
        self.progress = progress or Progress(enabled=False)
        self.outputs = {"stdout": out or sys.stdout.buffer, "stderr": err or sys.stderr.buffer}
        self.position: str | None = None
        self.ended: dict[str, Ending] = {}
        self.partial = dict.fromkeys(STREAMS, "")  # the unfinished line of each stream, as written so far
        self.resumed = dict.fromkeys(STREAMS, False)
        self.connections = 0
        self._base: str | None = None
        self._final_since: float | None = None
        self._end_wait = END_GRACE  # how long after the last reconnect for a lost end to ask again
        self._end_check_at = 0.0

    # the loop ----------------------------------------------------------------------------------

    def follow(self) -> Ending:
        """Follows until the last execution it follows ends; returns how it ended."""
        failing_since: float | None = None
        pause = 0.0
        try:
            while True:
                resuming = self.current is not None and self.current not in self.ended
                params: dict[str, str | None] = {"taskId": self.task, "jobId": self.job}
                if self.pinned or resuming:
                    params.update(executionId=self.pinned or self.current, after=self.position)
                connections = self.connections
                try:
                    reason, retry_after = self._session(params)
                    failing_since, pause = None, 0.0
                except _Dropped:
                    reason, retry_after = None, None
                    now = time.monotonic()
                    if self.connections > connections:
                        failing_since, pause = None, 0.0  # it was open: resume at once
                    failing_since = failing_since or now
                    if now - failing_since > RECONNECT_WINDOW:
                        raise CliError(f"lost the live-log connection for {RECONNECT_WINDOW:.0f} s; "
                                       f"`fastlane logs {self.task} {self.job}` prints the output", UNAVAILABLE) from None
                    if self.current is None or self.current not in self.ended:
                        time.sleep(pause)
                        pause = min(max(pause * 2, 0.25), 5.0)
                        continue
                ending = self.ended.get(self.current or "")
                if ending is not None:
                    if not self._goes_on(ending, reason):
                        return ending
                    if reason == "retry":
                        time.sleep(min(max(retry_after or 0.1, 0.1), WAIT_CAP))
                    continue
                if reason == "retry":
                    self._wait(retry_after)
                elif reason == "done":
                    raise CliError("the live logs ended without saying how the execution ended", UNEXPECTED)
        finally:
            self.progress.clear()

    def _goes_on(self, ending: Ending, reason: str | None) -> bool:
        """Whether a job whose execution ended has another to follow (a retry), and moves to it."""
        if not self.follow_retries or ending.status in ("done", "stopped", "expired"):
            return False
        if reason == "retry":
            self.progress.note(f"execution {ending.execution_id} ended {self._said(ending)}; following the job's retry")
            return True
        # An execution's subscription ends with `done` even when the job retries it: ask the job.
        latest = self.api.get(path("tasks", self.task, "jobs", self.job)).get("job", {}).get("executions") or []
        newest = latest[0].get("executionId") if latest else None
        if newest and newest != self.current and newest not in self.ended:
            self.progress.note(f"execution {ending.execution_id} ended {self._said(ending)}; following the job's retry")
            self._switch(newest)
            return True
        return False

    @staticmethod
    def _said(ending: Ending) -> str:
        return f"{ending.status} (exit code {ending.code})" if ending.code is not None else ending.status

    def _switch(self, execution: str) -> None:
        self.current = execution
        self.position = None
        self.partial = dict.fromkeys(STREAMS, "")
        self.resumed = dict.fromkeys(STREAMS, False)
        self._final_since, self._end_wait, self._end_check_at = None, END_GRACE, 0.0

    def _wait(self, retry_after: float | None) -> None:
        """The job has not started: say so (and why, where the service says) and ask again soon;
        a scheduled job that has not run yet, when it is due (at least every 30 s)."""
        pause = min(max(retry_after or 1.0, 0.1), WAIT_CAP)
        if self.current:
            if self.progress.enabled:
                execution = self._execution()
                if execution:
                    self.progress.waiting(execution.get("status", "enqueued"), execution.get("waitingFor"))
        else:
            job = self.api.get(path("tasks", self.task, "jobs", self.job)).get("job") or {}
            schedule = job.get("schedule") or {}
            due = schedule.get("nextRunAt")
            if not job.get("executions") and not (schedule.get("pending") and isinstance(due, (int, float))):
                raise CliError(f"job {self.job} will not run: it was stopped before it started", STOPPED)
            if isinstance(due, (int, float)):
                starts = time.strftime("%H:%M:%S", time.localtime(due))
                self.progress.waiting("scheduled", f"starts at {starts}")
                pause = min(max(due - time.time() + 0.2, 0.2), 30.0)
        time.sleep(pause)

    def _execution(self) -> dict[str, Any] | None:
        if not self.current:
            return None
        details = self.api.get(path("tasks", self.task, "jobs", self.job, "executions", self.current))
        found = details.get("execution") if isinstance(details, dict) else None
        return found if isinstance(found, dict) else None

    # one connection ----------------------------------------------------------------------------

    def _url(self, params: dict[str, str | None]) -> str:
        if self._base is None:
            self._base = websocket_base(self.api, self.task, self.job)
        query = {k: v for k, v in params.items() if v}
        if self.api.auth.mode != "none":
            token = self.api.post(path("tasks", self.task, "jobs", self.job, "stream", "token")).get("token")
            if token:
                query["token"] = token
        return self._base + ("&" if "?" in self._base else "?") + urlencode(query)

    def _session(self, params: dict[str, str | None]) -> tuple[str | None, float | None]:
        """One websocket connection: its frames handled, and its close reason and retryAfter.
        Raises _Dropped when it ends without a close frame."""
        from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
        from websockets.sync.client import connect

        url = self._url(params)
        try:
            socket = connect(url, additional_headers=self.api.auth.websocket_headers(), open_timeout=15,
                             max_size=2 ** 22, user_agent_header="fastlane-cli", compression=None, close_timeout=2)
        except InvalidStatus as refused:
            status = refused.response.status_code
            if status in (401, 403):
                raise CliError(f"the live-log websocket refused the connection ({status}); check the credentials "
                               "(Basic auth opens it; other modes need the service's stream token)", AUTH) from None
            raise _Dropped() from None
        except (OSError, InvalidHandshake, TimeoutError):
            raise _Dropped() from None
        self.connections += 1
        for stream in STREAMS:
            self.resumed[stream] = bool(self.partial[stream])
        graceful = False  # a close frame came: close politely; else drop the socket at once
        try:
            silence = SILENCE_FIRST
            check_at = time.monotonic() + silence
            ping_at = time.monotonic() + PING_EVERY
            while True:
                try:
                    raw = socket.recv(timeout=max(0.05, check_at - time.monotonic()))
                except TimeoutError:
                    now = time.monotonic()
                    ended = self._ended_elsewhere(now)
                    if ended is True:
                        raise _Dropped() from None  # resume: the service sends the rest and the end
                    silence = END_GRACE if ended is None else min(silence * 2, SILENCE_MAX)
                    check_at = now + silence
                    if now >= ping_at:
                        socket.send(json.dumps({"action": "ping"}))
                        ping_at = now + PING_EVERY
                    continue
                except ConnectionClosed as closed:
                    if closed.rcvd is not None and closed.rcvd.reason in ("done", "retry", "error"):
                        return closed.rcvd.reason, None
                    raise _Dropped() from None
                silence = SILENCE_FIRST
                check_at = time.monotonic() + silence
                frame = json.loads(raw)
                if not isinstance(frame, dict):
                    continue
                kind = frame.get("type")
                if kind == "close":
                    graceful = True
                    retry_after = frame.get("retryAfter")
                    return str(frame.get("reason")), float(retry_after) if isinstance(retry_after, (int, float)) else None
                if kind == "subscribed":
                    self._subscribed(frame)
                elif kind == "output":
                    self._output(frame)
                elif kind == "end":
                    ending = Ending.of(frame)
                    if ending.execution_id:
                        self.ended[ending.execution_id] = ending
                        self.current = ending.execution_id
                elif kind == "error":
                    self._error(frame)
        finally:
            if graceful:
                socket.close()
            else:
                socket.close_socket()

    def _ended_elsewhere(self, now: float) -> bool | None:
        """Whether the API says the followed execution ended while its stream has not: a lost end
        (reconnect for it), or one that never comes (after END_GIVE_UP, taken from the API). None:
        it ended, and its end frame may be on its way (ask again in END_GRACE)."""
        if not self.current or self.current in self.ended:
            return False
        execution = self._execution()
        if execution is None or execution.get("status") not in FINAL:
            if execution is not None:
                self.progress.waiting(execution.get("status", ""), execution.get("waitingFor"))
            self._final_since, self._end_wait, self._end_check_at = None, END_GRACE, 0.0
            return False
        if self._final_since is None:
            self._final_since, self._end_check_at = now, now + END_GRACE
        if now - self._final_since >= END_GIVE_UP:
            self.ended[self.current] = Ending.of({**execution, "error": execution.get("reason")})
            self.progress.note(f"the live logs of execution {self.current} did not end; the output above may be "
                               f"incomplete: `fastlane logs {self.task} {self.job} {self.current}` prints it all")
            return True
        if now < self._end_check_at:
            return None
        # Reconnect for the end; the next reconnect waits twice as long, so an end that never
        # comes costs a handful of connections before END_GIVE_UP, not one every END_GRACE.
        self._end_wait = min(self._end_wait * 2, END_GIVE_UP / 4)
        self._end_check_at = now + self._end_wait
        return True

    # frames ------------------------------------------------------------------------------------

    def _subscribed(self, frame: dict[str, Any]) -> None:
        execution, status = frame.get("executionId"), frame.get("status")
        if execution and execution != self.current:
            self._switch(execution)
        if not execution:
            self.progress.waiting("scheduled", "the job has not run yet")
        elif status in ("enqueued", "pulling"):
            self.progress.waiting(str(status), None)

    def _output(self, frame: dict[str, Any]) -> None:
        if self.current in self.ended:
            return  # the output of an execution already followed to its end, sent again
        stream = frame.get("stream")
        lines = frame.get("lines")
        if stream not in STREAMS or not isinstance(lines, list):
            return
        lines = [str(line) for line in lines]
        if not lines:
            return
        self.progress.clear()
        unfinished = self.partial[stream]
        whole_first = lines[0] if self.resumed[stream] else unfinished + lines[0]
        if self.resumed[stream] and unfinished and lines[0].startswith(unfinished):
            lines[0] = lines[0][len(unfinished):]  # a resumed stream sends a cut line whole again
        self.resumed[stream] = False
        partial = bool(frame.get("partial"))
        text = "\n".join(lines) + ("" if partial else "\n")
        self.partial[stream] = ((whole_first if len(lines) == 1 else lines[-1]) if partial else "")
        target = self.outputs[stream]
        target.write(text.encode("utf-8", errors="replace"))
        target.flush()
        if isinstance(frame.get("position"), str):
            self.position = frame["position"]

    def _error(self, frame: dict[str, Any]) -> None:
        message = str(frame.get("error") or "live logs refused the subscription")
        field = frame.get("field")
        if field == "token":
            raise CliError(f"live logs: {message}", AUTH)
        if field in ("taskId", "jobId", "executionId") or "not found" in message:
            raise CliError(f"live logs: {message}", NOT_FOUND)
        raise CliError(f"live logs: {message}", UNEXPECTED)
