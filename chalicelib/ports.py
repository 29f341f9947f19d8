"""The small interfaces the services are written against; adapters provide them."""
from __future__ import annotations

from typing import Protocol

from .domain.model import Execution, Job, Page, Task


class JobStore(Protocol):
    def save_new_job(self, job: Job, execution: Execution | None) -> tuple[Job, Execution | None]:
        """Create the job (and its task when new) with its first execution, atomically.
        Returns them with their sequence numbers."""

    def replace_job(self, job: Job, execution: Execution | None) -> tuple[Job, Execution | None]:
        """Replace an existing job's specification, adding an execution, atomically."""

    def get_task(self, task_id: str) -> Task | None: ...

    def list_tasks(self, page: int, per_page: int) -> Page: ...

    def list_jobs(self, task_id: str, page: int, per_page: int) -> Page: ...

    def get_job(self, job_id: str) -> Job | None: ...

    def list_executions(self, job_id: str, page: int, per_page: int, total: int | None = None) -> Page:
        """Newest first; `total` saves a read when the caller has the job at hand."""

    def get_execution(self, job_id: str, execution_id: str) -> Execution | None: ...

    def ping(self) -> None:
        """Raise when the store cannot be reached."""


class JobQueue(Protocol):
    def send_launch(self, execution: Execution, delay_seconds: int = 0) -> str:
        """Ask the dispatcher to launch an execution; returns the message id."""

    def ping(self) -> None: ...
