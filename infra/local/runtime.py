"""The embedded local runtime: the app served over HTTP and websockets, its queue and schedule
handlers fed as Lambda's event sources would, and containers stood in for by local processes,
with no AWS account and no Docker. This process is the engine; on the local backend the HTTP API
is served by front processes it starts and supervises (fronts.py).

Two backends (docs/local-runtime.md):
- `local` (the default): one SQLite file holds every port's state (tasks, jobs, executions,
  queues, log streams, schedules, ECS tasks), kept across restarts; `--fresh` starts empty.
- `aws`: the app's AWS adapters, against moto's server started here, or against the endpoint
  AWS_ENDPOINT_URL names (LocalStack, a real account), with the same stand-ins for ECS (local
  processes behind an ECS API), Scheduler's firing, the log subscription and the websocket API.

    python -m infra.local.runtime [--host 127.0.0.1] [--port 10000] [--backend local|aws]
                                  [--state .fastlane/local.db] [--fresh]
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .provision import local_environment, provision
from .settings import DEFAULT_RETENTION_DAYS, DEFAULT_STATE, RuntimeSettings, check_listen_address

if TYPE_CHECKING:
    from .event_sources import Queue

BACKENDS = ("local", "aws")
RETENTION_CHECK_SECONDS = 3600.0
__all__ = ["DEFAULT_RETENTION_DAYS", "LocalRuntime", "expire_output", "retention_days"]


def retention_days(settings: RuntimeSettings | None = None) -> float | None:
    """LOG_RETENTION_DAYS: how long the local backend keeps job output; None (0) keeps it for ever."""
    return (settings or RuntimeSettings.from_environment()).retention_days


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def expire_output(store: Any, days: float | None) -> int:
    """Forget job output older than `days`, as a log group's retention does; returns how many lines."""
    if days is None:
        return 0
    removed = int(store.expire(int((time.time() - days * 86400) * 1000)))
    if removed:
        print(f"fastlane local runtime: {removed} line(s) of job output older than {days:g} days forgotten "
              "(LOG_RETENTION_DAYS).", flush=True)
    return removed


@dataclass
class _Backend:
    """What a backend gives the shared start-up: the queues the app's handlers read, its
    Scheduler's firing, and how its log group is followed."""

    jobs: Queue
    events: Queue
    notify: Queue
    scheduler: Any
    subscription: Callable[[Callable[[dict[str, Any], Any], Any]], Any]
    concurrency: tuple[int, int, int]  # dispatch, monitor, notify
    region: str = "us-east-1"
    more: list[Any] = field(default_factory=list)  # stand-ins of this backend alone
    recover: Callable[[], int] = lambda: 0  # stops the ECS tasks a previous run left; how many


class LocalRuntime:
    def __init__(self, host: str = "127.0.0.1", port: int = 10000, moto_port: int = 0, prefix: str = "fastlane",
                 *, backend: str = "local", state: str | os.PathLike[str] | None = None, fresh: bool = False,
                 settings: RuntimeSettings | None = None) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"--backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
        self.host = host
        self.port = port
        self.moto_port = moto_port
        self.prefix = prefix
        self.backend_name = backend
        self.state = str(state or DEFAULT_STATE)
        self.fresh = fresh
        self.settings = settings
        self.aws_endpoint = ""  # the aws backend's endpoint
        self.isolation = ""
        self.recovered = 0  # ECS tasks a previous run left, stopped on start
        self.retention: float | None = None  # days job output is kept on the local backend; None: for ever
        self.warning: str | None = None  # said first when the runtime has started
        self._moto: Any = None
        self._http: Any = None
        self._listening: socket.socket | None = None  # the API's socket, when HTTP fronts serve it
        self._fronts: Any = None
        self._fargate: Any = None
        self._websocket: Any = None
        self._handles: Any = None
        self._sources: list[Any] = []
        self.stopped = threading.Event()

    # shared ---------------------------------------------------------------------------------------

    def _public_host(self) -> str:
        return "127.0.0.1" if self.host in ("", "0.0.0.0", "::") else self.host

    def _common_environment(self) -> None:
        region = os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
        os.environ.update({
            "AWS_DEFAULT_REGION": region,
            "AWS_REGION": region,
            "POWERTOOLS_TRACE_DISABLED": "1",
            "POWERTOOLS_METRICS_DISABLED": os.environ.get("POWERTOOLS_METRICS_DISABLED", "1"),
            # Local development posts webhooks to local receivers; links in notifications point
            # at this runtime.
            "WEBHOOK_ALLOW_PRIVATE": os.environ.get("WEBHOOK_ALLOW_PRIVATE", "true"),
            "NOTIFY_BASE_URL": os.environ.get("NOTIFY_BASE_URL") or f"http://{self._public_host()}:{self.port}",
            **local_environment(self.prefix),
        })

    def _start_websocket(self) -> Any:
        """API Gateway's websocket API (on PORT+1 when free) and its management API."""
        from .websocket import LocalWebsocketGateway

        self._websocket = LocalWebsocketGateway(self.host, self.port + 1 if self.port else 0)
        os.environ.update({
            "WEBSOCKET_URL": self._websocket.url,
            "AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI": self._websocket.management_endpoint,
            "AWS_ENDPOINT_URL_LAMBDA": self._websocket.management_endpoint,
            "LOGS_FUNCTION_NAME": f"{self.prefix}-local-logs",
        })
        return self._websocket

    def _isolation(self, settings: RuntimeSettings, hidden: tuple[str, ...] = ()) -> tuple[str | None, Any]:
        """The container engine (docker with DOCKER_HOST) or, without one, the sandbox of the processes."""
        from .commands import Sandbox

        if settings.docker:
            return "docker", None
        return None, Sandbox.choose(settings.sandbox, network=settings.sandbox_network, hidden=hidden)

    def start(self) -> None:
        settings = self.settings = self.settings or RuntimeSettings.from_environment()
        self.warning = check_listen_address(self.host, self.backend_name, settings)
        self._common_environment()
        backend = self._start_local(settings) if self.backend_name == "local" else self._start_aws(settings)

        import app as app_module
        from chalicelib import wiring
        from chalicelib.config import get_settings

        from .event_sources import QueuePoller, Timer
        from .gateway import LocalHttpServer, OriginPolicy, listen, refuse_half_configured_auth

        dispatch, monitor, notify = backend.concurrency
        logs_handler = app_module.app.handler_map["logs"]
        self._sources = [
            QueuePoller(backend.jobs, app_module.dispatch_jobs, name="dispatch", concurrency=dispatch,
                        region=backend.region),
            QueuePoller(backend.events, app_module.monitor_tasks, name="monitor", concurrency=monitor,
                        region=backend.region),
            QueuePoller(backend.notify, app_module.send_notifications, name="notify", concurrency=notify,
                        region=backend.region),
            Timer(app_module.reconcile, get_settings().reconcile_interval, name="reconciler"),  # the app's setting
            backend.scheduler,
            backend.subscription(logs_handler),
            *backend.more,
        ]
        self.recovered = backend.recover()
        fronts = self._front_count(settings)
        # Bound, not yet serving.
        if fronts:
            refuse_half_configured_auth()
            self._listening = listen(self.host, self.port)
            self.port = self._listening.getsockname()[1]
            policy = OriginPolicy(self.host, self.port, settings.allowed_hosts)
        else:
            self._http = LocalHttpServer(app_module.app, self.host, self.port, allowed_hosts=settings.allowed_hosts)
            self.port = self._http.port
            policy = self._http.policy
        self._websocket.start(app_module.app, {"logs": logs_handler}, policy)
        wiring.get_live_logs().warm()  # as a warm Lambda container: the first subscriber does not wait
        for source in self._sources:
            source.start()
        if self._listening is not None:
            self._start_fronts(fronts)
        else:
            self._http.start()

    def _front_count(self, settings: RuntimeSettings) -> int:
        """HTTP fronts of the local backend (fronts.py). The aws backend serves HTTP in this process:
        its calls are the ones the IAM checks and the bench count here."""
        from .fronts import default_count

        if self.backend_name != "local":
            return 0
        return default_count() if settings.http_processes is None else settings.http_processes

    def _start_fronts(self, count: int) -> None:
        from .fronts import EngineHooks, Fronts

        assert self._handles is not None and self._listening is not None
        handles = self._handles
        self._fronts = Fronts(count, self._listening,
                              EngineHooks(queue=handles.queues.wake, schedule=handles.scheduler.changed,
                                          stop=handles.runner.stop),
                              host=self.host, state=self.state, isolation=self.isolation)
        self._fronts.start()
        fronts = self._fronts
        assert self._websocket is not None
        self._websocket.counters.update({
            "FrontProcessStarts": lambda: fronts.started, "FrontQueuedMessages": lambda: fronts.heard["queue"],
            "FrontScheduleWakes": lambda: fronts.heard["schedule"], "FrontStopTasks": lambda: fronts.heard["stop"]})

    # the local backend ------------------------------------------------------------------------------

    def _start_local(self, settings: RuntimeSettings) -> _Backend:
        from chalicelib import wiring
        from chalicelib.config import Settings

        from .event_sources import LocalQueue, Periodic
        from .log_subscription import LogSubscription, StoreFollower
        from .sqlite.backend import handles_of, open_local_backend
        from .sqlite.queues import EVENTS, JOBS, NOTIFY

        # Names only: the settings of a deployment read them; the local backend has its queues.
        os.environ.update({f"{role.upper()}_QUEUE_URL": f"local:{name}" for role, name in
                           (("jobs", JOBS), ("events", EVENTS), ("notify", NOTIFY))})
        os.environ.setdefault("MAIL_SENDER", "fastlane@localhost")  # e-mail is kept in the state file, never sent
        gateway = self._start_websocket()
        wiring.reset()
        app_settings = Settings.from_environment()
        self.retention = settings.retention_days
        # Jobs may read the host, but not the runtime's own state.
        engine, sandbox = self._isolation(settings, hidden=(os.path.dirname(os.path.abspath(self.state)),))
        backend = open_local_backend(
            self.state, app_settings, gateway=gateway, fresh=self.fresh, sandbox=sandbox, engine=engine,
            stop_grace_seconds=settings.stop_grace_seconds, cron_tick_seconds=settings.cron_tick_seconds,
            visibility_timeout=settings.visibility_timeout)
        handles = self._handles = handles_of(backend)
        self.isolation = backend.isolation
        wiring.use_backend(backend)

        def subscription(handler: Callable[[dict[str, Any], Any], Any]) -> Any:
            followed = LogSubscription(StoreFollower(handles.log_store), app_settings.log_group, handler)
            # Log reads for live logs, counted at GET <management endpoint>/_local/calls: the app's
            # catch-ups and ends, and the one subscription.
            gateway.counters.update({"AppFilterLogEvents": lambda: handles.log_events.reads,
                                     "PollerFilterLogEvents": lambda: followed.reads})
            return followed

        more = []
        if self.retention is not None:
            days = self.retention
            more.append(Periodic(lambda: expire_output(handles.log_store, days), RETENTION_CHECK_SECONDS,
                                 name="retention", pause=60.0, at_start=True))
        queues = handles.queues
        return _Backend(LocalQueue(queues, JOBS), LocalQueue(queues, EVENTS), LocalQueue(queues, NOTIFY),
                        handles.scheduler, subscription, concurrency=(8, 4, 4), more=more,
                        recover=handles.runner.recover)

    # the aws backend --------------------------------------------------------------------------------

    def _start_aws(self, settings: RuntimeSettings) -> _Backend:
        import boto3

        from chalicelib import wiring

        from .botocore_models import share_botocore_models
        from .event_sources import SqsQueue
        from .fargate import LocalFargate
        from .log_subscription import FilterLogEventsPoller, LogSubscription
        from .scheduler import ScheduleFirer

        share_botocore_models()  # its many threads each make their own sessions
        if settings.aws_endpoint:
            self.aws_endpoint = settings.aws_endpoint
        else:
            from moto.server import ThreadedMotoServer

            from . import moto_server

            moto_server.cache_service_list()
            moto_server.serialize_dynamodb()
            logging.getLogger("werkzeug").setLevel(logging.ERROR)
            self.moto_port = self.moto_port or free_port(self.host)
            self._moto = ThreadedMotoServer(ip_address=self.host, port=self.moto_port, verbose=False)
            self._moto.start()
            self.aws_endpoint = f"http://{self.host}:{self.moto_port}"
            os.environ.update({"AWS_ENDPOINT_URL": self.aws_endpoint, "AWS_ACCESS_KEY_ID": "local",
                               "AWS_SECRET_ACCESS_KEY": "local"})
        wiring.reset()
        sqs, logs = boto3.client("sqs"), boto3.client("logs")
        env = provision(sqs, self.prefix, logs=logs, visibility_timeout=30)
        os.environ.update(env)
        if os.environ.get("MAIL_SENDER"):  # e-mail is captured by the emulator, never delivered
            boto3.client("ses").verify_email_identity(EmailAddress=os.environ["MAIL_SENDER"])

        engine, sandbox = self._isolation(settings)
        self._fargate = LocalFargate(
            sqs_client=sqs, logs_client=logs, events_queue_url=env["EVENTS_QUEUE_URL"], log_group=env["LOG_GROUP"],
            host=self.host, stop_grace_seconds=settings.stop_grace_seconds, engine=engine, sandbox=sandbox,
            allowed_hosts=settings.allowed_hosts)
        self._fargate.start()
        self.isolation = self._fargate.isolation
        os.environ["AWS_ENDPOINT_URL_ECS"] = self._fargate.endpoint
        self._start_websocket()
        wiring.reset()

        def subscription(handler: Callable[[dict[str, Any], Any], Any]) -> Any:
            poller = LogSubscription(FilterLogEventsPoller(logs, env["LOG_GROUP"]), env["LOG_GROUP"], handler)
            # CloudWatch reads for live logs, counted at GET <management endpoint>/_local/calls: the
            # app's catch-ups and ends, and the one subscription poller.
            calls = self._websocket.calls
            for client_, name in ((wiring.client("logs"), "AppFilterLogEvents"), (logs, "PollerFilterLogEvents")):
                calls[name] = 0
                client_.meta.events.register("before-call.cloudwatch-logs.FilterLogEvents",
                                             lambda name=name, **_: calls.__setitem__(name, calls[name] + 1))
            return poller

        scheduler = ScheduleFirer(boto3.client("scheduler"), sqs, env["SCHEDULE_GROUP"],
                                  cron_tick_seconds=settings.cron_tick_seconds)
        return _Backend(SqsQueue(sqs, env["JOBS_QUEUE_URL"]), SqsQueue(sqs, env["EVENTS_QUEUE_URL"]),
                        SqsQueue(sqs, env["NOTIFY_QUEUE_URL"]), scheduler, subscription,
                        concurrency=(2, 2, 2), region=os.environ["AWS_DEFAULT_REGION"])

    # -------------------------------------------------------------------------------------------------

    @property
    def websocket_url(self) -> str:
        return self._websocket.url if self._websocket is not None else ""

    @property
    def websocket_management_endpoint(self) -> str:
        return self._websocket.management_endpoint if self._websocket is not None else ""

    @property
    def ecs_endpoint(self) -> str:
        return self._fargate.endpoint if self._fargate is not None else ""

    def stop(self) -> None:
        if self._fronts is not None:
            self._fronts.stop()
        if self._listening is not None:
            self._listening.close()
        if self._http is not None:
            self._http.stop()
        if self._handles is not None:
            self._handles.queues.close()  # wakes the pollers waiting for messages
        # Together: each may be waiting out a receive (a second on SQS) before it sees the flag.
        stopping = [threading.Thread(target=source.stop) for source in self._sources]
        for thread in stopping:
            thread.start()
        for thread in stopping:
            thread.join()
        if self._handles is not None:
            self._handles.close()  # the running processes are killed; their STOPPED events stay queued
        if self._websocket is not None:
            self._websocket.stop()
        if self._fargate is not None:
            self._fargate.stop()
        if self._moto is not None:
            self._moto.stop()
        self.stopped.set()

    def describe(self) -> list[str]:
        """What the runtime says when it has started."""
        host = self._public_host()
        lines = [f"fastlane local runtime: {self.warning}"] if self.warning else []
        served = f", {len(self._fronts.pids)} HTTP front process(es)" if self._fronts is not None else ""
        lines.append(f"fastlane local runtime: API on http://{host}:{self.port} ({self.backend_name} backend{served}). "
                     "Ctrl-C stops it.")
        lines.append(f"fastlane local runtime: job browser on http://{host}:{self.port}/ui (docs/ui.md).")
        if self.backend_name == "local":
            lines.append(f"fastlane local runtime: state in {self.state} (kept across restarts; --fresh or "
                         f"`make reset` starts empty)" + (f"; {self.recovered} ECS task(s) left running by the "
                                                          "previous run were stopped" if self.recovered else "") + ".")
            kept = "for ever" if self.retention is None else f"{self.retention:g} days"
            lines.append(f"fastlane local runtime: job output is kept {kept} (LOG_RETENTION_DAYS), as the job log "
                         f"group keeps it in AWS.")
        else:
            emulated = "moto, in memory: lost on exit" if self._moto is not None else "the given endpoint"
            lines.append(f"fastlane local runtime: AWS at {self.aws_endpoint} ({emulated}); ECS stood in for by "
                         f"local processes at {self.ecs_endpoint}.")
        lines.append(f"fastlane local runtime: jobs run as {self.isolation}.")
        lines.append(f"fastlane local runtime: live logs websocket on {self.websocket_url} "
                     f"(stream pages: http://{host}:{self.port}/tasks/<task>/jobs/<job>/stream; "
                     f"websocket management API at {self.websocket_management_endpoint}).")
        return lines


def main(argv: list[str] | None = None) -> int:
    try:
        settings = RuntimeSettings.from_environment()
    except ValueError as error:
        print(f"fastlane local runtime: cannot start: {error}", file=sys.stderr, flush=True)
        return 2
    parser = argparse.ArgumentParser(description="Run fastlane locally: one command, no AWS account, no Docker.")
    parser.add_argument("--host", default=settings.host)
    parser.add_argument("--port", type=int, default=settings.port)
    parser.add_argument("--backend", choices=BACKENDS, default=settings.backend,
                        help="local: one SQLite state file (default); aws: the AWS adapters on moto or AWS_ENDPOINT_URL")
    parser.add_argument("--state", default=settings.state_file,
                        help="the local backend's state file (default .fastlane/local.db in the project)")
    parser.add_argument("--fresh", action="store_true", help="start the local backend with an empty state file")
    parser.add_argument("--moto-port", type=int, default=settings.moto_port)
    args = parser.parse_args(argv)

    runtime = LocalRuntime(args.host, args.port, args.moto_port, backend=args.backend, state=args.state,
                           fresh=args.fresh, settings=settings)
    try:
        runtime.start()
    except Exception as error:  # noqa: BLE001 - said plainly, not as a traceback, when it is the user's setup
        from .sqlite.backend import StateInUse

        if isinstance(error, (StateInUse, ValueError, RuntimeError)):
            print(f"fastlane local runtime: cannot start: {error}", file=sys.stderr, flush=True)
            runtime.stop()
            return 2
        raise
    # The handlers only note the request: the main thread stops the runtime itself. A handler
    # runs in the main thread between two of its bytecodes, where starting a thread or taking a
    # lock can meet a lock the interrupted code holds.
    requested: list[int] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda number, _frame: requested.append(number))
    for line in runtime.describe():
        print(line, file=sys.stderr, flush=True)
    while not requested and not runtime.stopped.is_set():
        time.sleep(0.2)
    if not runtime.stopped.is_set():
        runtime.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
