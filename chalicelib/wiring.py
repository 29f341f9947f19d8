"""Builds the adapters and services once per Lambda container, from the settings.
Heavy imports (boto3, PynamoDB) happen here, on first use, not when the app module loads."""
from __future__ import annotations

from functools import cache, lru_cache
from typing import Any

from .config import get_settings


@cache
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

    return JobService(get_store(), get_job_queue(), get_settings(), scheduling=get_scheduling())


@lru_cache(maxsize=1)
def get_runner() -> Any:
    from .adapters.ecs import EcsRunner

    return EcsRunner(client("ecs"), get_settings())


@lru_cache(maxsize=1)
def get_engine() -> Any:
    from .adapters.scheduler import EventBridgeScheduler
    from .services.engine import ExecutionEngine
    from .services.scheduling import Scheduling

    settings = get_settings()
    engine = ExecutionEngine(get_store(), get_job_queue(), get_runner(), settings, notifier=get_notifier())
    scheduler = EventBridgeScheduler(client("scheduler"), settings)
    engine.scheduling = Scheduling(get_store(), get_job_queue(), scheduler, engine, settings)
    return engine


def get_scheduling() -> Any:
    return get_engine().scheduling


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
def get_notification_sender() -> Any:
    """Delivers the notify queue's webhooks and e-mails; e-mail is off without MAIL_SENDER."""
    from .adapters.notifications import DeliveryLog, NotifyQueue, SesMailer
    from .services.notify import NotificationSender

    settings = get_settings()
    mailer = SesMailer(client("ses"), settings.mail_sender) if settings.mail_sender else None
    return NotificationSender(get_store(), NotifyQueue(client("sqs"), settings.notify_queue_url),
                              DeliveryLog(client("dynamodb"), settings.deliveries_table), mailer, settings)


@lru_cache(maxsize=1)
def get_output_reader() -> Any:
    from .adapters.logs import CloudWatchLogReader
    from .services.output import OutputReader

    settings = get_settings()
    return OutputReader(CloudWatchLogReader(client("logs"), settings.log_group), settings.log_page_bytes)


@lru_cache(maxsize=1)
def get_live_logs() -> Any:
    """Live logs over websockets: the connections table, API Gateway's management API, the job
    log group, and the logs function that starts subscriptions made on $connect."""
    import boto3
    from botocore.config import Config

    from .adapters.connections import DynamoConnectionStore
    from .adapters.log_events import CloudWatchLogEvents
    from .adapters.websocket import ApiGatewaySockets, LambdaStarter, management_endpoint
    from .services.live_logs import LiveLogs

    settings = get_settings()

    def management_client(endpoint: str) -> Any:
        return boto3.session.Session().client(
            "apigatewaymanagementapi", region_name=settings.region, endpoint_url=endpoint,
            config=Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=10))

    return LiveLogs(
        DynamoConnectionStore(settings),
        ApiGatewaySockets(management_client, settings.websocket_management_endpoint),
        CloudWatchLogEvents(client("logs"), settings.log_group),
        LambdaStarter(client("lambda"), settings.logs_function_name),
        get_job_service(), get_store(),
        endpoint_of=lambda context: management_endpoint(context, settings.region),
    )


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
                   get_notification_sender, get_basic_auth, get_live_logs, get_settings):
        cached.cache_clear()
