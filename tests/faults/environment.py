"""What the process is set up with while a schedule runs, and given back after.

The deployment's settings, ids drawn from the seed, quiet logs, and the handler failures that the
batch processor turns into partial batch failures, told to the driver."""
from __future__ import annotations

import itertools
import logging
import os
import random
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from unittest.mock import patch

from aws_lambda_powertools.utilities.batch.base import BasePartialProcessor

from chalicelib import wiring
from chalicelib.domain import model
from chalicelib.observability import logger
from chalicelib.services import jobs as job_services
from chalicelib.services import scheduling as scheduling_services
from infra.local.sqlite.queues import EVENTS, JOBS, NOTIFY

from .deployments import MAIL_SENDER
from .workload import Workload

ID_FACTORY = "new_id"  # the function that makes job and execution ids, in the modules that call it


@contextmanager
def deterministic_ids(rng: random.Random) -> Iterator[None]:
    """Ids drawn from the schedule's RNG (in creation order, as UUID v7 ids are), so a seed
    replays the very same schedule: the order of a job's executions depends on their ids."""
    counter = itertools.count(1)

    def new_id() -> str:
        return str(uuid.UUID(int=(next(counter) << 80) | rng.getrandbits(80)))

    # new_execution's module, the one that names new jobs, and the one that versions schedules
    modules = (model, job_services, scheduling_services)
    saved = [module.new_id for module in modules]
    for module in modules:
        setattr(module, ID_FACTORY, new_id)
    try:
        yield
    finally:
        for module, original in zip(modules, saved, strict=True):
            setattr(module, ID_FACTORY, original)


def environment(workload: Workload) -> dict[str, str]:
    """The settings of one schedule's deployment (read by wiring through chalicelib.config)."""
    return {
        "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1", "POWERTOOLS_METRICS_DISABLED": "1",
        "POOLS": workload.limits.pools_json(), "JOBS_QUEUE_URL": f"local:{JOBS}", "EVENTS_QUEUE_URL": f"local:{EVENTS}",
        "NOTIFY_QUEUE_URL": f"local:{NOTIFY}", "MAIL_SENDER": MAIL_SENDER,
        "RECONCILE_GRACE_SECONDS": "120", "WEBHOOK_BACKOFF_MIN": "5", "NOTIFY_BASE_URL": "https://fastlane.example.com",
    }


@contextmanager
def swapped(values: dict[str, str], removed: tuple[str, ...] = ()) -> Iterator[None]:
    """The process's environment with `values` set and `removed` unset, as it was afterwards."""
    with patch.dict(os.environ, values):
        for name in removed:
            os.environ.pop(name, None)
        yield


@contextmanager
def settings(values: dict[str, str]) -> Iterator[None]:
    level = logger.log_level
    logger.setLevel(logging.CRITICAL)  # the services' logs of injected faults are noise here
    try:
        with swapped(values):
            yield
    finally:
        logger.setLevel(level)
        wiring.reset()


@contextmanager
def record_failures(failed: Callable[[BaseException], None]) -> Iterator[None]:
    """`failed` hears of each record a handler failed on, with its exception, as the function's
    log would show it: the batch processor turns the exception into a partial batch failure."""
    original = BasePartialProcessor.failure_handler

    def failure_handler(processor: Any, record: Any, exception: Any) -> Any:
        failed(exception[1])
        return original(processor, record, exception)

    BasePartialProcessor.failure_handler = failure_handler  # type: ignore[method-assign, assignment]
    try:
        yield
    finally:
        BasePartialProcessor.failure_handler = original  # type: ignore[method-assign]
