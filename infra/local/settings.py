"""The local runtime's own settings: its environment variables, read once when it starts."""
from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_STATE = ROOT / ".fastlane" / "local.db"
# Job output is kept this many days, as the deployment's job log group keeps it (JobLogRetentionDays).
DEFAULT_RETENTION_DAYS = 30.0
REMOTE_OPT_IN = "ALLOW_UNAUTHENTICATED_REMOTE"


def _flag(raw: str | None, default: bool) -> bool:
    raw = (raw or "").strip().lower()
    return default if not raw else raw in ("1", "true", "yes", "on")


MAX_HTTP_PROCESSES = 64


def _processes(raw: str | None) -> int | None:
    raw = (raw or "").strip()
    if not raw:
        return None
    if not raw.isdigit() or int(raw) > MAX_HTTP_PROCESSES:
        raise ValueError(f"LOCAL_HTTP_PROCESSES must be a whole number from 0 (the engine serves HTTP itself) to "
                         f"{MAX_HTTP_PROCESSES}, or empty for one per core; not {raw!r}")
    return int(raw)


@dataclass(frozen=True)
class RuntimeSettings:
    """What the runtime itself reads (the app's own settings are chalicelib.config.Settings)."""

    host: str = "127.0.0.1"  # HOST
    port: int = 10000  # PORT
    backend: str = "local"  # BACKEND
    state_file: str = str(DEFAULT_STATE)  # STATE_FILE
    moto_port: int = 0  # MOTO_PORT
    allowed_hosts: str = ""  # ALLOWED_HOSTS: more Host names the runtime answers to, comma-separated
    open_remote: bool = False  # ALLOW_UNAUTHENTICATED_REMOTE
    # LOG_RETENTION_DAYS as written: only the local backend keeps output, so only it refuses a bad value.
    log_retention: str = ""
    docker: bool = False  # DOCKER_HOST set: jobs run as docker containers
    sandbox: str = "auto"  # LOCAL_SANDBOX
    sandbox_network: bool = True  # LOCAL_SANDBOX_NETWORK
    stop_grace_seconds: float = 2.0  # STOP_GRACE_SECONDS
    cron_tick_seconds: float | None = None  # LOCAL_CRON_TICK_SECONDS
    visibility_timeout: float = 30.0  # LOCAL_VISIBILITY_TIMEOUT
    aws_endpoint: str = ""  # AWS_ENDPOINT_URL: the aws backend's endpoint, when not the moto server started here
    # LOCAL_HTTP_PROCESSES: the local backend's HTTP fronts (fronts.py); None: one per core; 0: none,
    # the engine's process serves HTTP itself.
    http_processes: int | None = None

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> RuntimeSettings:
        env = os.environ if environ is None else environ
        tick = env.get("LOCAL_CRON_TICK_SECONDS")
        return cls(
            host=env.get("HOST", "127.0.0.1"),
            port=int(env.get("PORT", "10000")),
            backend=env.get("BACKEND") or "local",
            state_file=env.get("STATE_FILE") or str(DEFAULT_STATE),
            moto_port=int(env.get("MOTO_PORT", "0")),
            allowed_hosts=env.get("ALLOWED_HOSTS", ""),
            open_remote=_flag(env.get(REMOTE_OPT_IN), False),
            log_retention=env.get("LOG_RETENTION_DAYS", ""),
            docker=bool(env.get("DOCKER_HOST")),
            sandbox=env.get("LOCAL_SANDBOX") or "auto",
            sandbox_network=_flag(env.get("LOCAL_SANDBOX_NETWORK"), True),
            stop_grace_seconds=float(env.get("STOP_GRACE_SECONDS", "2")),
            cron_tick_seconds=float(tick) if tick else None,
            visibility_timeout=float(env.get("LOCAL_VISIBILITY_TIMEOUT", "30")),
            aws_endpoint=env.get("AWS_ENDPOINT_URL", ""),
            http_processes=_processes(env.get("LOCAL_HTTP_PROCESSES")),
        )

    @property
    def retention_days(self) -> float | None:
        """How long the local backend keeps job output; None (0) keeps it for ever."""
        raw = self.log_retention.strip()
        try:
            days = float(raw) if raw else DEFAULT_RETENTION_DAYS
        except ValueError:
            days = -1.0
        if not days >= 0 or days == float("inf"):
            raise ValueError(f"LOG_RETENTION_DAYS must be a number of days, 0 to keep job output for ever; not {raw!r}")
        return days or None


def is_loopback(host: str) -> bool:
    """Whether listening on `host` keeps the runtime on this machine ("" and 0.0.0.0 are every address)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: whatever it resolves to, others may reach it


def check_listen_address(host: str, backend: str = "local", settings: RuntimeSettings | None = None) -> str | None:
    """The runtime runs any command posted to it: on an address other machines reach, it starts only
    behind Basic auth (on the aws backend not even then: its moto server and ECS stand-in take no
    auth), or when ALLOW_UNAUTHENTICATED_REMOTE=true says so, and then with the warning this
    returns. Raises ValueError otherwise, before anything listens."""
    from chalicelib.config import Settings

    if is_loopback(host):
        return None
    where = host or "every address"
    if backend == "local" and Settings.from_environment().basic_auth_enabled:
        return None
    if (settings or RuntimeSettings.from_environment()).open_remote:
        return (f"WARNING: listening on {where} with no auth ({REMOTE_OPT_IN}=true): anyone who can reach this "
                "machine can run any command on it.")
    if backend == "local":
        raise ValueError(f"listening on {where} (HOST) lets other machines reach the API, which runs any command "
                         f"posted to it: set BASIC_AUTH_USERNAME and BASIC_AUTH_PASSWORD, or {REMOTE_OPT_IN}=true to "
                         "run it open anyway.")
    raise ValueError(f"listening on {where} (HOST) with the {backend} backend lets other machines reach its moto server "
                     f"and ECS stand-in, which take no auth and run any command: keep HOST on loopback, or set "
                     f"{REMOTE_OPT_IN}=true to run it open anyway.")
