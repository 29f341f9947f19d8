"""The one place that builds a backend and the services on it, once per Lambda container.

The aws backend is built from the settings on first use; the local runtime (and a test) injects
a backend of its own with `use_backend`. Heavy imports (boto3, PynamoDB) happen here, on first
use, not when the app module loads, and each AWS client is created when it is first called."""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING, Any

from .adapters import aws_session
from .config import Settings, get_settings
from .domain.model import now
from .ports import Backend

if TYPE_CHECKING:  # the services are imported on first use, off the cold-start path
    from .api.auth import BasicAuth
    from .services.engine import Engine
    from .services.jobs import JobService
    from .services.live_logs import LiveLogs
    from .services.notify import NotificationPublisher, NotificationSender
    from .services.output import OutputReader
    from .services.scheduling import Scheduling

_injected: Backend | None = None
# The time the services read and how they wait: the wall clock, unless a test injects a virtual one.
_clock: Callable[[], float] = now
_sleep: Callable[[float], None] = time.sleep


@cache
def client(service: str) -> Any:
    from botocore.config import Config

    settings = get_settings()
    return aws_session.create_client(
        service,
        region_name=settings.region,
        config=Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=20),
    )


class LazyClient:
    """A boto3 client created on first use: a Lambda function that never calls ECS, say, never
    pays for creating its client (tens of ms of a cold start each)."""

    def __init__(self, service: str) -> None:
        self._service = service

    def __getattr__(self, name: str) -> Any:
        return getattr(client(self._service), name)


def lazy_client(service: str) -> Any:
    return LazyClient(service)


def build_aws_backend(settings: Settings) -> Backend:
    """Every port on AWS: DynamoDB, SQS, ECS, Scheduler, CloudWatch Logs, API Gateway's
    management API, Lambda and SES."""
    from botocore.config import Config

    from .adapters import webhooks
    from .adapters.connections import DynamoConnectionStore
    from .adapters.deliveries import DeliveryLog
    from .adapters.dynamo.executions import DynamoExecutions
    from .adapters.dynamo.jobs import DynamoJobs
    from .adapters.dynamo.pools import DynamoPools
    from .adapters.dynamo.schedules import DynamoSchedules
    from .adapters.dynamo.statistics import DynamoStatistics
    from .adapters.dynamo.tables import Tables
    from .adapters.ecs import EcsRunner
    from .adapters.idempotency import PowertoolsIdempotencyKeys
    from .adapters.log_events import CloudWatchLogEvents
    from .adapters.logs import CloudWatchLogReader
    from .adapters.mail import SesMailer
    from .adapters.queues import SqsJobQueue, SqsNotifyQueue, SqsQueueDepths
    from .adapters.scheduler import EventBridgeScheduler
    from .adapters.websocket import ApiGatewaySockets, LambdaStarter

    tables = Tables(settings)
    statistics = DynamoStatistics(tables)
    sqs = lazy_client("sqs")

    def management_client(endpoint: str) -> Any:
        return aws_session.create_client(
            "apigatewaymanagementapi", region_name=settings.region, endpoint_url=endpoint,
            config=Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=10))

    def read_secret(secret_id: str) -> dict[str, str]:
        value: dict[str, str] = json.loads(client("secretsmanager").get_secret_value(SecretId=secret_id)["SecretString"])
        return value

    return Backend(
        name="aws",
        jobs=DynamoJobs(tables, statistics),
        executions=DynamoExecutions(tables, statistics),
        pools=DynamoPools(tables),
        schedules=DynamoSchedules(tables, statistics),
        statistics=statistics,
        deliveries=DeliveryLog(lazy_client("dynamodb"), settings.deliveries_table),
        connections=DynamoConnectionStore(settings),
        job_queue=SqsJobQueue(sqs, settings.jobs_queue_url),
        notify_queue=SqsNotifyQueue(sqs, settings.notify_queue_url) if settings.notify_queue_url else None,
        queue_depths=SqsQueueDepths(sqs, {
            "jobs": settings.jobs_queue_url, "jobsDeadLetter": settings.jobs_dlq_url,
            "events": settings.events_queue_url, "eventsDeadLetter": settings.events_dlq_url,
            "notify": settings.notify_queue_url, "notifyDeadLetter": settings.notify_dlq_url}),
        scheduler=EventBridgeScheduler(lazy_client("scheduler"), settings),
        runner=EcsRunner(lazy_client("ecs"), settings),
        logs=CloudWatchLogReader(lazy_client("logs"), settings.log_group),
        log_events=CloudWatchLogEvents(lazy_client("logs"), settings.log_group),
        sockets=ApiGatewaySockets(management_client, settings.websocket_management_endpoint),
        starter=LambdaStarter(lazy_client("lambda"), settings.logs_function_name),
        mailer=SesMailer(lazy_client("ses"), settings.mail_sender) if settings.mail_sender else None,
        webhooks=webhooks.post,
        read_secret=read_secret,
        extras={"tables": tables},
        idempotency_keys=PowertoolsIdempotencyKeys(lazy_client("dynamodb"), settings.idempotency_table),
    )


def use_backend(backend: Backend, *, clock: Callable[[], float] | None = None,
                sleep: Callable[[float], None] | None = None) -> None:
    """From now on every handler works on `backend` (the local runtime's, or a test's), and, when
    given, reads the time from `clock` and waits with `sleep` (a virtual clock: hours in seconds)."""
    global _injected, _clock, _sleep
    _clear()
    _injected = backend
    _clock = clock or now
    _sleep = sleep or time.sleep


@cache
def backend() -> Backend:
    return _injected if _injected is not None else build_aws_backend(get_settings())


@cache
def get_notifier() -> NotificationPublisher | None:
    """Publishes notifications of started and ended executions to the notify queue; None when
    the deployment has no notify queue."""
    from .services.notify import NotificationPublisher

    queue = backend().notify_queue
    return NotificationPublisher(queue, get_settings()) if queue is not None else None


@cache
def get_engine() -> Engine:
    from .services.engine import build_engine

    b = backend()
    return build_engine(b.jobs, b.executions, b.pools, b.statistics, b.job_queue, b.runner, get_settings(),
                           clock=_clock, notifier=get_notifier())


@cache
def get_scheduling() -> Scheduling:
    from .services.scheduling import Scheduling

    b = backend()
    return Scheduling(b.jobs, b.executions, b.schedules, b.job_queue, b.scheduler, get_engine(), get_settings(),
                      clock=_clock, sleep=_sleep)


@cache
def get_job_service() -> JobService:
    from .services.jobs import JobService

    b = backend()
    return JobService(b.jobs, b.executions, get_engine(), get_scheduling(), get_settings(), clock=_clock)


@cache
def get_notification_sender() -> NotificationSender:
    """Delivers the notify queue's webhooks and e-mails; e-mail is off without a mailer."""
    from .services.notify import NotificationSender

    b = backend()
    return NotificationSender(b.jobs, b.executions, b.notify_queue, b.deliveries, b.mailer, get_settings(),
                              post=b.webhooks, clock=_clock)


@cache
def get_output_reader() -> OutputReader:
    from .services.output import OutputReader

    return OutputReader(backend().logs, get_settings().log_page_bytes)


@cache
def get_live_logs() -> LiveLogs:
    """Live logs over websockets: subscribers, the websocket API, the job log group, and the logs
    function that starts subscriptions made on $connect."""
    from .services.live_logs import LiveLogs

    b = backend()
    return LiveLogs(b.connections, b.sockets, b.log_events, b.starter, b.jobs, b.executions)


@cache
def get_basic_auth() -> BasicAuth:
    from .api.auth import BasicAuth

    return BasicAuth(get_settings(), backend().read_secret)


_BUILT = (backend, get_notifier, get_engine, get_scheduling, get_job_service, get_notification_sender,
          get_output_reader, get_live_logs, get_basic_auth)


def _clear() -> None:
    for cached in _BUILT:
        cached.cache_clear()


def reset() -> None:
    """Forget every built object, the injected backend and the settings (tests change the
    environment between runs)."""
    global _injected, _clock, _sleep
    _injected = None
    _clock, _sleep = now, time.sleep
    _clear()
    client.cache_clear()
    aws_session.reset()
    get_settings.cache_clear()
