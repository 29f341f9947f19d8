"""Enqueue, replace and read jobs."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..config import Settings
from ..domain import timeline as timelines
from ..domain.errors import Conflict, DependencyDown, NotFound, ValidationError
from ..domain.listing import check_depth
from ..domain.model import Execution, Job, JobSpec, Page, Task, new_execution, new_id, now
from ..domain.payload import validate_job_payload, validate_uuid
from ..observability import MetricUnit, logger, metrics
from ..ports import Executions, Jobs
from .engine import Engine
from .scheduling import Scheduling


@dataclass(frozen=True)
class Enqueued:
    job: Job
    execution: Execution | None
    queue_job_id: str | None


def find_job(jobs: Jobs, task_id: str, job_id: str) -> Job:
    """The job of a task, or NotFound (an id that is not a UUID names no job)."""
    job = None
    try:
        job = jobs.get_job(validate_uuid(job_id, "jobId"))
    except ValidationError:
        pass
    if job is None or job.task_id != task_id:
        raise NotFound(f"Job '{job_id}' was not found in task '{task_id}'.", field="jobId")
    return job


class JobService:
    """What clients do with jobs: enqueue or replace them, read them, stop and retry them."""

    def __init__(self, jobs: Jobs, executions: Executions, engine: Engine,
                 scheduling: Scheduling, settings: Settings, clock: Callable[[], float] = now) -> None:
        self._jobs = jobs
        self._executions = executions
        self._engine = engine
        self._scheduling = scheduling
        self._settings = settings
        self._clock = clock

    def validate(self, task_id: str, payload: dict[str, object]) -> JobSpec:
        """The job a request's payload asks for, checked whole before anything is written:
        ValidationError (TooLarge) naming the first bad field otherwise. The task id is checked
        by the caller (it is part of the route)."""
        settings = self._settings
        try:
            return validate_job_payload(payload, max_timeout=settings.max_timeout, max_retries=settings.max_retries,
                                        clock=self._clock, task_id=task_id, max_stored_bytes=settings.max_body_bytes)
        except ValidationError:
            metrics.add_metric(name="ValidationRejections", unit=MetricUnit.Count, value=1)
            raise

    def enqueue(self, task_id: str, spec: JobSpec, request_ip: str | None, job_id: str | None = None) -> Enqueued:
        """Store the job a validated payload asks for (and its first execution when it runs
        now), then send the launch. With a job_id the job is created or replaced (PUT)."""
        existing = self._jobs.get_job(job_id) if job_id is not None else None
        if existing is not None and existing.task_id != task_id:
            raise Conflict(f"job {job_id} belongs to task '{existing.task_id}', not '{task_id}'.", field="jobId")

        at = self._clock()
        job = Job(
            task_id=task_id,
            job_id=job_id or new_id(),
            spec=spec,
            created_at=at,
            last_modified_at=at,
            request_ip=request_ip,
        )
        job = self._scheduling.plan(job)
        why = timelines.accepted(at, timelines.REPLACED if existing is not None else timelines.POSTED)
        execution = None if spec.scheduled else new_execution(job, at, placement=self._engine.placement(task_id),
                                                               request_ip=request_ip, accepted=why)
        if existing is None:
            job, execution = self._jobs.save_new_job(job, execution, known_absent=True)  # a new id, or just read
        else:
            # A cron job's ticks are bounded by the store as they are taken; any other PUT runs
            # the job (now, or once later), and is refused while the job is full.
            job, execution = self._jobs.replace_job(
                job, execution, max_active=None if spec.cron else self._settings.max_active_per_job)
        logger.append_keys(task_id=task_id, job_id=job.job_id,
                           execution_id=execution.execution_id if execution else None)
        metrics.add_metric(name="JobsEnqueued", unit=MetricUnit.Count, value=1)

        queue_job_id = None
        had_schedule = existing is not None and existing.schedule_version is not None
        if spec.scheduled or had_schedule:
            try:
                queue_job_id = self._scheduling.arm(job, had_schedule=had_schedule)
            except DependencyDown:
                # The job is stored with its next run: the reconciler fires overdue schedules.
                logger.exception("schedule not armed; the reconciler will fire it when due")
        if execution is not None:
            queue_job_id = self._engine.launches.send(execution)
        logger.info("job enqueued", extra={"scheduled": spec.scheduled, "queue_job_id": queue_job_id})
        return Enqueued(job=job, execution=execution, queue_job_id=queue_job_id)

    # reads --------------------------------------------------------------------------------

    def list_tasks(self, page: int, prefix: str | None = None) -> Page:
        """Every task, oldest first; with a `prefix`, those whose id starts with it, by id."""
        per_page = self._settings.per_page
        if prefix is None:
            result = self._jobs.list_tasks(page, per_page)
        else:
            check_depth(page, per_page, "tasks", "narrow it with a longer prefix")
            result = self._jobs.list_tasks_by_prefix(prefix, page, per_page)
        check_page(result)
        return result

    def task(self, task_id: str, page: int) -> tuple[Task, Page]:
        task = self._jobs.get_task(task_id)
        if task is None:
            raise NotFound(f"Task '{task_id}' was not found.", field="taskId")
        jobs = self._jobs.list_jobs(task_id, page, self._settings.per_page)
        check_page(jobs)
        return task, jobs

    def job(self, task_id: str, job_id: str) -> Job:
        return find_job(self._jobs, task_id, job_id)

    def job_with_executions(self, task_id: str, job_id: str, page: int) -> tuple[Job, Page]:
        job = self.job(task_id, job_id)
        executions = self._executions.list_executions(job.job_id, page, self._settings.per_page, total=job.execution_count)
        check_page(executions)
        return job, executions

    def execution(self, task_id: str, job_id: str, execution_id: str) -> tuple[Job, Execution]:
        job = self.job(task_id, job_id)
        execution = self._executions.get_execution(job.job_id, execution_id)
        if execution is None:
            raise NotFound(f"Execution '{execution_id}' was not found in job '{job_id}'.", field="executionId")
        return job, execution


    # stop and retry -----------------------------------------------------------------------------

    def stop_job(self, job: Job) -> list[str]:
        """Stop the job's executions and every future run (retries, schedules) until it is put
        again or retried."""
        self._jobs.set_job_stopped(job.job_id, True)
        if job.spec.scheduled or job.schedule_version:
            self._scheduling.disarm(job)
        # Read again: a retry added before the flag was set is stopped too; none is added after.
        job = self._jobs.get_job(job.job_id) or job
        stopped = []
        for execution_id in sorted(job.active):
            execution = self._executions.get_execution(job.job_id, execution_id)
            if execution is not None and self._engine.ending.stop(execution):
                stopped.append(execution_id)
        return stopped

    def stop_execution(self, task_id: str, job_id: str, execution_id: str) -> Execution:
        """Stop one execution of a job; Conflict when it has already ended."""
        _, execution = self.execution(task_id, job_id, execution_id)
        if not self._engine.ending.stop(execution):
            raise Conflict(f"Execution '{execution_id}' has already ended ({execution.status.value}).",
                           field="executionId")
        return execution

    def retry_job(self, job: Job) -> tuple[Execution, str | None]:
        """A new execution of the job now, on a client's request: the job is no longer stopped.
        For a scheduled job it is "run now": one execution now, even if it never ran, its schedule
        (paused or not) unchanged."""
        scheduled = job.spec.scheduled
        if job.execution_count == 0 and not scheduled:
            raise ValidationError("The job has never run, so it cannot be retried.", field="jobId")
        said = {"runNow": True} if scheduled else {"retriedByClient": True}

        def make(current: Job) -> Execution:
            at = self._clock()
            why = timelines.accepted(at, timelines.RUN_NOW if scheduled else timelines.RETRIED)
            return new_execution(current, at, placement=self._engine.placement(current.task_id), metadata=said,
                                 accepted=why)

        _, execution = self._jobs.add_execution(job.job_id, make, require_idle=True, clear_stopped=True)
        return execution, self._engine.launches.send(execution)


    # schedule controls ---------------------------------------------------------------------------

    def pause_job(self, job: Job) -> Job:
        """Its schedule fires nothing until resumed; Conflict for a job with no schedule, a
        stopped one, or one with nothing left to fire."""
        return self._scheduling.pausing.pause(job)

    def resume_job(self, job: Job) -> Job:
        return self._scheduling.pausing.resume(job)


def check_page(page: Page) -> None:
    if page.page > 1 and page.page > page.pages:
        raise NotFound(f"Page {page.page} does not exist; there are {page.pages} pages.", field="page")

