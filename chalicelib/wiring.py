"""Builds the adapters and services once per Lambda container, from the settings.
Heavy imports (boto3, PynamoDB) happen here, on first use, not when the app module loads."""
from __future__ import annotations

from functools import lru_cache
from typing import Any

from .config import get_settings


@lru_cache(maxsize=None)
def client(service: str) -> Any:
    import boto3
    from botocore.config import Config

    settings = get_settings()
    return boto3.session.Session().client(
        service,
        region_name=settings.region,
        config=Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=20),
    )


@lru_cache(maxsize=1)
def get_store() -> Any:
    from .adapters.store import DynamoJobStore

    return DynamoJobStore(get_settings())


@lru_cache(maxsize=1)
def get_job_queue() -> Any:
    from .adapters.queues import SqsJobQueue

    return SqsJobQueue(client("sqs"), get_settings().jobs_queue_url)


@lru_cache(maxsize=1)
def get_job_service() -> Any:
    from .services.jobs import JobService

    return JobService(get_store(), get_job_queue(), get_settings())


@lru_cache(maxsize=1)
def get_runner() -> Any:
    from .adapters.ecs import EcsRunner

    return EcsRunner(client("ecs"), get_settings())


@lru_cache(maxsize=1)
def get_engine() -> Any:
    from .services.engine import ExecutionEngine

    return ExecutionEngine(get_store(), get_job_queue(), get_runner(), get_settings(), notifier=get_notifier())


@lru_cache(maxsize=1)
def get_notifier() -> Any:
    """Publishes notifications of started and ended executions to the notify queue; None when
    the deployment has no notify queue."""
    settings = get_settings()
    if not settings.notify_queue_url:
        return None
    from .services.notify import NotificationPublisher

    return NotificationPublisher(client("sqs"), settings)


@lru_cache(maxsize=1)
def get_output_reader() -> Any:
    from .adapters.logs import CloudWatchLogReader
    from .services.output import OutputReader

    settings = get_settings()
    return OutputReader(CloudWatchLogReader(client("logs"), settings.log_group), settings.log_page_bytes)


@lru_cache(maxsize=1)
def get_basic_auth() -> Any:
    import json

    from .api.http import BasicAuth

    def read_secret(secret_id: str) -> dict[str, str]:
        return json.loads(client("secretsmanager").get_secret_value(SecretId=secret_id)["SecretString"])

    return BasicAuth(get_settings(), read_secret)


def reset() -> None:
    """Forget every built object and the settings (tests change the environment between runs)."""
    for cached in (client, get_store, get_job_queue, get_job_service, get_runner, get_engine, get_notifier, get_output_reader,
                   get_basic_auth, get_settings):
        cached.cache_clear()
