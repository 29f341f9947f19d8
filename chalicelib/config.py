"""One typed settings object, read once from the environment that .chalice/config.json or the
local runtime sets."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache

# Env names that look secret contain one of these (case-insensitive); SECRET_ENV_PATTERNS replaces the list.
DEFAULT_SECRET_ENV_PATTERNS = ("password", "passwd", "pass", "pwd", "secret", "token", "key", "auth", "credential",
                               "cookie", "session", "private", "cert", "client_id")


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return default if raw in (None, "") else int(raw)


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return default if raw in (None, "") else float(raw)


def _bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    return raw.strip().lower() in ("1", "true", "yes", "on")


def _list(name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _sibling_function(name: str, prefix: str) -> str:
    """Another function of this deployment: Chalice names them `<app>-<stage>-<name>`."""
    current = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
    return f"{current.rsplit('-', 1)[0]}-{name}" if "-" in current else f"{prefix}-{name}"


@dataclass(frozen=True)
class Settings:
    """What every handler needs to know about its deployment."""

    region: str
    tasks_table: str
    jobs_table: str
    executions_table: str
    jobs_queue_url: str
    events_queue_url: str = ""
    jobs_dlq_url: str = ""
    events_dlq_url: str = ""
    log_group: str = "/fastlane/jobs"
    pools_json: str = ""
    ecs_cluster: str = "fastlane"
    subnets: tuple[str, ...] = ()
    security_groups: tuple[str, ...] = ()
    assign_public_ip: str = "DISABLED"
    task_cpu: str = "256"
    task_memory: str = "512"
    max_running: int = 0
    execution_role_arn: str = ""
    task_role_arn: str = ""
    log_router_image: str = ""
    retry_backoff_min: float = 2.0
    retry_backoff_factor: float = 2.0
    retry_backoff_max: float = 3600.0
    sweep_grace_seconds: float = 120.0
    # How often the reconciler runs (the sweeper's schedule: a minute in AWS; SWEEP_INTERVAL
    # locally): timeouts longer than two intervals get their check from its last pass before them.
    reconcile_interval: float = 60.0
    # The reconciler (docs/execution.md#the-reconciler): how long a task ECS does not know yet
    # (DescribeTasks answers MISSING just after RunTask) or no longer knows is given before its
    # execution is finalised, and how many times a lost launch message is resent.
    missing_grace_seconds: float = 60.0
    launch_resends: int = 5
    # The most lost launches one reconciler pass sends again (soonest due first; the rest are
    # the next pass's): bounds the writes and messages of a pass after a long queue outage.
    reconcile_batch: int = 500
    # The most executions of one job that have not ended (docs/scheduling.md#how-many-executions-a-job-may-have):
    # a cron tick finding that many is skipped and counted, a PUT that would run the job gets 409.
    max_active_per_job: int = 100
    # Fargate's sustained task launch rate for the account and region (its token bucket refills
    # 20 a second): throttled launches spread their next attempts over the backlog at this rate.
    launch_rate: float = 20.0
    log_page_bytes: int = 1024 * 1024
    # scheduling
    schedule_group: str = "fastlane"
    scheduler_role_arn: str = ""
    jobs_queue_arn: str = ""
    scheduler_lead_seconds: float = 60.0
    # notifications
    notify_queue_url: str = ""
    notify_dlq_url: str = ""
    mail_sender: str = ""
    webhook_signing_secret: str = ""
    webhook_timeout: float = 10.0
    webhook_allow_private: bool = False
    webhook_backoff_min: float = 5.0  # seconds before the first retry of a webhook; doubles each time
    deliveries_table: str = "fastlane-deliveries"
    notify_base_url: str = ""  # base of links in notifications when PUBLIC_BASE_URL is not set
    # Idempotency-Key: the DynamoDB table of keys and their first answers
    idempotency_table: str = "fastlane-idempotency"
    # live logs
    connections_table: str = ""
    websocket_url: str = ""
    websocket_management_endpoint: str = ""  # set locally; in AWS built from the connection's API id
    logs_function_name: str = ""
    public_base_url: str | None = None
    per_page: int = 10
    max_body_bytes: int = 256 * 1024
    default_timeout: float = 1800.0
    max_timeout: float = 1800.0
    max_retries: int = 100
    secret_env_patterns: tuple[str, ...] = field(default=DEFAULT_SECRET_ENV_PATTERNS)
    basic_auth_username: str | None = None
    basic_auth_password: str | None = None
    basic_auth_secret_id: str | None = None
    # names the Secrets Manager secret {"key": ...} that signs live-log tokens when API Gateway,
    # not the app, authorizes requests (docs/deploy.md#access)
    stream_token_secret_id: str | None = None
    version: str = "0.1.0"

    @property
    def basic_auth_enabled(self) -> bool:
        """On as soon as any part of it is configured: half a pair is refused, never ignored."""
        return bool(self.basic_auth_username or self.basic_auth_password or self.basic_auth_secret_id)

    @classmethod
    def from_environment(cls) -> Settings:
        prefix = os.environ.get("FASTLANE_PREFIX", "fastlane")
        return cls(
            region=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
            tasks_table=os.environ.get("TASKS_TABLE", f"{prefix}-tasks"),
            jobs_table=os.environ.get("JOBS_TABLE", f"{prefix}-jobs"),
            executions_table=os.environ.get("EXECUTIONS_TABLE", f"{prefix}-executions"),
            jobs_queue_url=os.environ.get("JOBS_QUEUE_URL", ""),
            events_queue_url=os.environ.get("EVENTS_QUEUE_URL", ""),
            jobs_dlq_url=os.environ.get("JOBS_DLQ_URL", ""),
            events_dlq_url=os.environ.get("EVENTS_DLQ_URL", ""),
            log_group=os.environ.get("LOG_GROUP", f"/{prefix}/jobs"),
            pools_json=os.environ.get("POOLS", ""),
            ecs_cluster=os.environ.get("ECS_CLUSTER", prefix),
            subnets=_list("SUBNETS", ()),
            security_groups=_list("SECURITY_GROUPS", ()),
            assign_public_ip=os.environ.get("ASSIGN_PUBLIC_IP", "DISABLED"),
            task_cpu=os.environ.get("TASK_CPU", "256"),
            task_memory=os.environ.get("TASK_MEMORY", "512"),
            max_running=_int("MAX_RUNNING", 0),
            execution_role_arn=os.environ.get("TASK_EXECUTION_ROLE_ARN", ""),
            task_role_arn=os.environ.get("TASK_ROLE_ARN", ""),
            log_router_image=os.environ.get("LOG_ROUTER_IMAGE", ""),
            retry_backoff_min=_float("RETRY_BACKOFF_MIN", 2.0),
            retry_backoff_factor=_float("RETRY_BACKOFF_FACTOR", 2.0),
            retry_backoff_max=_float("RETRY_BACKOFF_MAX", 3600.0),
            sweep_grace_seconds=_float("SWEEP_GRACE_SECONDS", 120.0),
            reconcile_interval=_float("SWEEP_INTERVAL", 60.0),
            missing_grace_seconds=_float("MISSING_GRACE_SECONDS", 60.0),
            launch_resends=_int("LAUNCH_RESENDS", 5),
            reconcile_batch=_int("RECONCILE_BATCH", 500),
            max_active_per_job=_int("MAX_ACTIVE_PER_JOB", 100),
            launch_rate=_float("LAUNCH_RATE", 20.0),
            log_page_bytes=_int("LOG_PAGE_BYTES", 1024 * 1024),
            schedule_group=os.environ.get("SCHEDULE_GROUP", prefix),
            scheduler_role_arn=os.environ.get("SCHEDULER_ROLE_ARN", ""),
            jobs_queue_arn=os.environ.get("JOBS_QUEUE_ARN", ""),
            scheduler_lead_seconds=_float("SCHEDULER_LEAD_SECONDS", 60.0),
            notify_queue_url=os.environ.get("NOTIFY_QUEUE_URL", ""),
            notify_dlq_url=os.environ.get("NOTIFY_DLQ_URL", ""),
            mail_sender=os.environ.get("MAIL_SENDER", ""),
            webhook_signing_secret=os.environ.get("WEBHOOK_SIGNING_SECRET", ""),
            webhook_timeout=_float("WEBHOOK_TIMEOUT", 10.0),
            webhook_allow_private=_bool("WEBHOOK_ALLOW_PRIVATE", False),
            webhook_backoff_min=_float("WEBHOOK_BACKOFF_MIN", 5.0),
            deliveries_table=os.environ.get("DELIVERIES_TABLE", f"{prefix}-deliveries"),
            notify_base_url=os.environ.get("NOTIFY_BASE_URL", ""),
            idempotency_table=os.environ.get("IDEMPOTENCY_TABLE", f"{prefix}-idempotency"),
            connections_table=os.environ.get("CONNECTIONS_TABLE", f"{prefix}-connections"),
            websocket_url=os.environ.get("WEBSOCKET_URL", ""),
            websocket_management_endpoint=os.environ.get("AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI", ""),
            logs_function_name=os.environ.get("LOGS_FUNCTION_NAME") or _sibling_function("logs", prefix),
            public_base_url=(os.environ.get("PUBLIC_BASE_URL") or None),
            per_page=_int("PER_PAGE", 10),
            max_body_bytes=_int("MAX_BODY_BYTES", 256 * 1024),
            default_timeout=_float("DEFAULT_TIMEOUT", 1800.0),
            max_timeout=_float("MAX_TIMEOUT", 1800.0),
            max_retries=_int("MAX_RETRIES", 100),
            secret_env_patterns=_list("SECRET_ENV_PATTERNS", DEFAULT_SECRET_ENV_PATTERNS),
            basic_auth_username=os.environ.get("BASIC_AUTH_USERNAME") or None,
            basic_auth_password=os.environ.get("BASIC_AUTH_PASSWORD") or None,
            basic_auth_secret_id=os.environ.get("BASIC_AUTH_SECRET_ID") or None,
            stream_token_secret_id=os.environ.get("STREAM_TOKEN_SECRET_ID") or None,
            version=os.environ.get("FASTLANE_VERSION", "0.1.0"),
        )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings.from_environment()
