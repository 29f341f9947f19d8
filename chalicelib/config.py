"""One typed settings object, read once from the environment that the deployment template or the
local runtime sets; each setting's default is written once, here (docs/deploy.md#settings-one-source-each)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from functools import lru_cache

# Env names that look secret contain one of these (case-insensitive); SECRET_ENV_PATTERNS replaces the list.
DEFAULT_SECRET_ENV_PATTERNS = ("password", "passwd", "pass", "pwd", "secret", "token", "key", "auth", "credential",
                               "cookie", "session", "private", "cert", "client_id")


def _sibling_function(name: str, prefix: str) -> str:
    """Another function of this deployment: Chalice names them `<app>-<stage>-<name>`."""
    current = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
    return f"{current.rsplit('-', 1)[0]}-{name}" if "-" in current else f"{prefix}-{name}"


# The variable each setting is read from: a setting is declared once, as a field of Settings with
# its default, and named once here (tests/infra/test_drift.py holds the template to these names).
VARIABLES = {
    "tasks_table": "TASKS_TABLE", "jobs_table": "JOBS_TABLE", "executions_table": "EXECUTIONS_TABLE",
    "jobs_queue_url": "JOBS_QUEUE_URL", "events_queue_url": "EVENTS_QUEUE_URL", "jobs_dlq_url": "JOBS_DLQ_URL",
    "events_dlq_url": "EVENTS_DLQ_URL", "log_group": "LOG_GROUP", "pools_json": "POOLS", "ecs_cluster": "ECS_CLUSTER",
    "subnets": "SUBNETS", "security_groups": "SECURITY_GROUPS", "assign_public_ip": "ASSIGN_PUBLIC_IP",
    "task_cpu": "TASK_CPU", "task_memory": "TASK_MEMORY", "max_running": "MAX_RUNNING",
    "execution_role_arn": "TASK_EXECUTION_ROLE_ARN", "task_role_arn": "TASK_ROLE_ARN",
    "log_router_image": "LOG_ROUTER_IMAGE", "retry_backoff_min": "RETRY_BACKOFF_MIN",
    "retry_backoff_factor": "RETRY_BACKOFF_FACTOR", "retry_backoff_max": "RETRY_BACKOFF_MAX",
    "reconcile_grace_seconds": "RECONCILE_GRACE_SECONDS", "reconcile_interval": "RECONCILE_INTERVAL",
    "missing_grace_seconds": "MISSING_GRACE_SECONDS", "launch_resends": "LAUNCH_RESENDS",
    "reconcile_batch": "RECONCILE_BATCH", "max_active_per_job": "MAX_ACTIVE_PER_JOB", "launch_rate": "LAUNCH_RATE",
    "log_page_bytes": "LOG_PAGE_BYTES", "schedule_group": "SCHEDULE_GROUP", "scheduler_role_arn": "SCHEDULER_ROLE_ARN",
    "jobs_queue_arn": "JOBS_QUEUE_ARN", "scheduler_lead_seconds": "SCHEDULER_LEAD_SECONDS",
    "notify_queue_url": "NOTIFY_QUEUE_URL", "notify_dlq_url": "NOTIFY_DLQ_URL", "mail_sender": "MAIL_SENDER",
    "webhook_signing_secret": "WEBHOOK_SIGNING_SECRET", "webhook_timeout": "WEBHOOK_TIMEOUT",
    "webhook_allow_private": "WEBHOOK_ALLOW_PRIVATE", "webhook_backoff_min": "WEBHOOK_BACKOFF_MIN",
    "deliveries_table": "DELIVERIES_TABLE", "notify_base_url": "NOTIFY_BASE_URL",
    "idempotency_table": "IDEMPOTENCY_TABLE", "connections_table": "CONNECTIONS_TABLE",
    "websocket_url": "WEBSOCKET_URL", "websocket_management_endpoint": "AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI",
    "logs_function_name": "LOGS_FUNCTION_NAME", "public_base_url": "PUBLIC_BASE_URL", "per_page": "PER_PAGE",
    "max_body_bytes": "MAX_BODY_BYTES", "default_timeout": "DEFAULT_TIMEOUT", "max_timeout": "MAX_TIMEOUT",
    "max_retries": "MAX_RETRIES", "secret_env_patterns": "SECRET_ENV_PATTERNS",
    "basic_auth_username": "BASIC_AUTH_USERNAME", "basic_auth_password": "BASIC_AUTH_PASSWORD",
    "basic_auth_secret_id": "BASIC_AUTH_SECRET_ID", "stream_token_secret_id": "STREAM_TOKEN_SECRET_ID",
    "version": "FASTLANE_VERSION",
}
# Resources named after the deployment's prefix (FASTLANE_PREFIX) when their variable is unset.
DEFAULT_PREFIX = "fastlane"
PER_PREFIX = {
    "tasks_table": "{prefix}-tasks", "jobs_table": "{prefix}-jobs", "executions_table": "{prefix}-executions",
    "log_group": "/{prefix}/jobs", "ecs_cluster": "{prefix}", "schedule_group": "{prefix}",
    "deliveries_table": "{prefix}-deliveries", "idempotency_table": "{prefix}-idempotency",
    "connections_table": "{prefix}-connections",
}


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
    log_group: str = PER_PREFIX["log_group"].format(prefix=DEFAULT_PREFIX)
    pools_json: str = ""
    ecs_cluster: str = PER_PREFIX["ecs_cluster"].format(prefix=DEFAULT_PREFIX)
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
    reconcile_grace_seconds: float = 120.0
    # How often the reconciler runs (the reconciler's schedule: a minute in AWS; RECONCILE_INTERVAL
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
    schedule_group: str = PER_PREFIX["schedule_group"].format(prefix=DEFAULT_PREFIX)
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
    deliveries_table: str = PER_PREFIX["deliveries_table"].format(prefix=DEFAULT_PREFIX)
    notify_base_url: str = ""  # base of links in notifications when PUBLIC_BASE_URL is not set
    # Idempotency-Key: the DynamoDB table of keys and their first answers
    idempotency_table: str = PER_PREFIX["idempotency_table"].format(prefix=DEFAULT_PREFIX)
    # live logs
    connections_table: str = PER_PREFIX["connections_table"].format(prefix=DEFAULT_PREFIX)
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
        """Each field from its variable (VARIABLES), parsed by the field's type; unset (or empty,
        for numbers and switches), the field's own default, or for the resources named after the
        deployment, its prefix's."""
        prefix = os.environ.get("FASTLANE_PREFIX", DEFAULT_PREFIX)
        values: dict[str, object] = {}
        for item in fields(cls):
            raw = os.environ.get(VARIABLES[item.name]) if item.name in VARIABLES else None
            if item.name in PER_PREFIX and raw is None:
                values[item.name] = PER_PREFIX[item.name].format(prefix=prefix)
            elif raw is not None:
                parsed = _parse(str(item.type), raw)
                if parsed is not None:
                    values[item.name] = parsed
        values["region"] = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        values.setdefault("jobs_queue_url", "")
        if not values.get("logs_function_name"):
            values["logs_function_name"] = _sibling_function("logs", prefix)
        return cls(**values)  # type: ignore[arg-type]


def _parse(kind: str, raw: str) -> object:
    """A variable's text as its field's type; None leaves the field at its default (an empty
    number or switch, or an empty optional string)."""
    if kind in ("int", "float", "bool") and raw.strip() == "":
        return None
    if kind == "int":
        return int(raw)
    if kind == "float":
        return float(raw)
    if kind == "bool":
        return raw.strip().lower() in ("1", "true", "yes", "on")
    if kind == "tuple[str, ...]":
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    if kind == "str | None":
        return raw or None
    return raw


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings.from_environment()
