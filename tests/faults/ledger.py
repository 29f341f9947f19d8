"""What really happened in one schedule, as the fault layer saw it take effect (not as the
callers were told): jobs stored and their specifications over time, stops, retries and PUTs,
webhooks and e-mails that reached their receivers."""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from chalicelib.domain.model import Execution, Job, JobSpec
from chalicelib.domain.webhooks import DELIVERY_HEADER, HookResult


@dataclass(frozen=True)
class Received:
    """One request a notification receiver got."""

    at: float
    delivery: str  # <executionId>/<kind>/<event>/<index>/<attempt>

    @property
    def execution_id(self) -> str:
        return self.delivery.split("/")[0]

    @property
    def event(self) -> str:
        return self.delivery.split("/")[2]

    @property
    def attempt(self) -> int:
        return int(self.delivery.split("/")[4])


@dataclass
class Ledger:
    clock: Callable[[], float]
    specs: dict[str, list[tuple[float, JobSpec]]] = field(default_factory=dict)  # job -> (since, spec)
    replaced: dict[str, list[float]] = field(default_factory=dict)
    retried: dict[str, list[float]] = field(default_factory=dict)  # new executions a client asked for
    stopped: dict[str, list[float]] = field(default_factory=dict)  # stop_job answered success
    marked_stopped: set[str] = field(default_factory=set)  # set_job_stopped(True) took effect
    pauses: dict[str, list[float]] = field(default_factory=dict)  # pause_job answered success (in effect since)
    resumes: dict[str, list[float]] = field(default_factory=dict)  # resume_job first tried (not in effect before)
    received: list[Received] = field(default_factory=list)
    mails: list[tuple[float, str, str]] = field(default_factory=list)  # (at, execution id, event)

    # observers of the fault layer -----------------------------------------------------------------

    def jobs_call(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any) -> None:
        at = self.clock()
        if method in ("save_new_job", "replace_job"):
            job: Job = result[0]
            self.specs.setdefault(job.job_id, []).append((at, job.spec))
            if method == "replace_job":
                self.replaced.setdefault(job.job_id, []).append(at)
        elif method == "add_execution":
            self.retried.setdefault(str(args[0]), []).append(at)
        elif method == "set_job_stopped" and args[1]:
            self.marked_stopped.add(str(args[0]))

    def mail_call(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any) -> None:
        text = str(args[2])
        execution = re.search(r"^Execution:\s+(\S+)$", text, re.MULTILINE)
        event = re.search(r"^Event:\s+(\S+)$", text, re.MULTILINE)
        if execution and event:
            self.mails.append((self.clock(), execution.group(1), event.group(1)))

    def receiver(self, url: str, body: bytes, headers: dict[str, str], *, timeout: float,
                 allow_private: bool = False) -> HookResult:
        """The webhook receiver: every POST that reaches it is recorded and answered 204."""
        self.received.append(Received(self.clock(), headers.get(DELIVERY_HEADER, "")))
        return HookResult(status_code=204)

    # reading it -----------------------------------------------------------------------------------

    def spec_at(self, execution: Execution) -> JobSpec | None:
        """The job's specification when the execution was created: what it must run with."""
        found = None
        for since, spec in self.specs.get(execution.job_id, []):
            if since <= execution.created_at:
                found = spec
        return found

    def paused_intervals(self, job_id: str) -> list[tuple[float, float]]:
        """When the job was surely paused: from a pause's answer to the next resume's first try."""
        resumes = sorted(self.resumes.get(job_id, []))
        return [(pause, next((moment for moment in resumes if moment > pause), float("inf")))
                for pause in sorted(self.pauses.get(job_id, []))]

    def disturbed(self, job_id: str) -> bool:
        """A client changed the job's course: stopped, replaced or retried it."""
        return bool(job_id in self.marked_stopped or self.stopped.get(job_id) or self.replaced.get(job_id)
                    or self.retried.get(job_id))
