"""The embedded local runtime: AWS emulated by moto, the app served over HTTP, its SQS and
schedule handlers fed as Lambda's event sources would, and ECS Fargate stood in for by local
processes, all in one process, with no AWS account and no Docker. State lives in memory and is
gone on exit.

    python -m infra.local.runtime [--host 127.0.0.1] [--port 10000]
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
from typing import Any

from .provision import local_environment, provision


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _cache_moto_service_list() -> None:
    """moto's server lists its ~180 service folders on disk, under one lock, for every request
    it routes; the list never changes while it runs, so read it once (about 8% off each emulated
    call, measured on the 2-core machine)."""
    from moto import backends

    if not getattr(backends.list_of_moto_modules, "cached", False):
        modules = tuple(backends.list_of_moto_modules())

        def cached() -> tuple[str, ...]:
            return modules

        cached.cached = True  # type: ignore[attr-defined]
        backends.list_of_moto_modules = cached  # type: ignore[assignment]


class LocalRuntime:
    def __init__(self, host: str = "127.0.0.1", port: int = 10000, moto_port: int = 0, prefix: str = "fastlane") -> None:
        self.host = host
        self.port = port
        self.moto_port = moto_port or free_port(host)
        self.prefix = prefix
        self._moto: Any = None
        self._http: Any = None
        self._fargate: Any = None
        self._websocket: Any = None
        self._sources: list[Any] = []
        self.stopped = threading.Event()

    def start(self) -> None:
        from moto.server import ThreadedMotoServer

        _cache_moto_service_list()
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._moto = ThreadedMotoServer(ip_address=self.host, port=self.moto_port, verbose=False)
        self._moto.start()
        endpoint = f"http://{self.host}:{self.moto_port}"
        os.environ.update(
            {
                "AWS_ENDPOINT_URL": endpoint,
                "AWS_ACCESS_KEY_ID": "local",
                "AWS_SECRET_ACCESS_KEY": "local",
                "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
                "AWS_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
                "POWERTOOLS_TRACE_DISABLED": "1",
                "POWERTOOLS_METRICS_DISABLED": os.environ.get("POWERTOOLS_METRICS_DISABLED", "1"),
                # Local development posts webhooks to local receivers; links in notifications
                # point at this runtime.
                "WEBHOOK_ALLOW_PRIVATE": os.environ.get("WEBHOOK_ALLOW_PRIVATE", "true"),
                "NOTIFY_BASE_URL": os.environ.get("NOTIFY_BASE_URL")
                or f"http://{'127.0.0.1' if self.host in ('', '0.0.0.0', '::') else self.host}:{self.port}",
                **local_environment(self.prefix),
            }
        )
        import boto3

        from chalicelib import wiring

        wiring.reset()
        sqs, logs = boto3.client("sqs"), boto3.client("logs")
        env = provision(sqs, self.prefix, logs=logs, visibility_timeout=30)
        os.environ.update(env)
        if os.environ.get("MAIL_SENDER"):  # e-mail is captured by the emulator, never delivered
            boto3.client("ses").verify_email_identity(EmailAddress=os.environ["MAIL_SENDER"])

        from .fargate import LocalFargate

        self._fargate = LocalFargate(
            sqs_client=sqs, logs_client=logs, events_queue_url=env["EVENTS_QUEUE_URL"], log_group=env["LOG_GROUP"],
            host=self.host, stop_grace_seconds=float(os.environ.get("STOP_GRACE_SECONDS", "2")),
            engine="docker" if os.environ.get("DOCKER_HOST") else None,
        )
        self._fargate.start()
        os.environ["AWS_ENDPOINT_URL_ECS"] = self._fargate.endpoint
        # Live logs: API Gateway's websocket API (on PORT+1 when free) and its management API,
        # and Lambda's Invoke for the logs function, served by the local gateway.
        from .websocket import LocalWebsocketGateway

        self._websocket = LocalWebsocketGateway(self.host, self.port + 1 if self.port else 0)
        os.environ.update({
            "WEBSOCKET_URL": self._websocket.url,
            "AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI": self._websocket.management_endpoint,
            "AWS_ENDPOINT_URL_LAMBDA": self._websocket.management_endpoint,
            "LOGS_FUNCTION_NAME": f"{self.prefix}-local-logs",
        })
        wiring.reset()

        import app as app_module

        from .event_sources import SqsPoller, Timer
        from .gateway import LocalHttpServer
        from .scheduler import LocalScheduler

        region = os.environ["AWS_DEFAULT_REGION"]
        self._sources = [
            SqsPoller(sqs, env["JOBS_QUEUE_URL"], app_module.dispatch_jobs, name="dispatch", region=region),
            SqsPoller(sqs, env["EVENTS_QUEUE_URL"], app_module.monitor_tasks, name="monitor", region=region),
            SqsPoller(sqs, env["NOTIFY_QUEUE_URL"], app_module.send_notifications, name="notify", region=region),
            Timer(app_module.sweep, float(os.environ.get("SWEEP_INTERVAL", "60")), name="sweeper"),
            LocalScheduler(boto3.client("scheduler"), sqs, env["SCHEDULE_GROUP"],
                           cron_tick_seconds=float(os.environ["LOCAL_CRON_TICK_SECONDS"])
                           if os.environ.get("LOCAL_CRON_TICK_SECONDS") else None),
        ]
        from .log_subscription import LogSubscriptionPoller

        logs_function = app_module.app.handler_map["logs"]
        self._sources.append(LogSubscriptionPoller(logs, env["LOG_GROUP"], logs_function))
        self._websocket.start(app_module.app, {"logs": logs_function})
        wiring.get_live_logs().warm()  # as a warm Lambda container: the first subscriber does not wait
        # CloudWatch reads for live logs, counted at GET <management endpoint>/_local/calls: the
        # app's catch-ups and ends, and the one subscription poller.
        calls = self._websocket.calls
        for client_, name in ((wiring.client("logs"), "AppFilterLogEvents"), (logs, "PollerFilterLogEvents")):
            calls[name] = 0
            client_.meta.events.register("before-call.cloudwatch-logs.FilterLogEvents",
                                         lambda name=name, **_: calls.__setitem__(name, calls[name] + 1))
        for source in self._sources:
            source.start()
        self._http = LocalHttpServer(app_module.app, self.host, self.port)
        self.port = self._http.port
        self._http.start()

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
        if self._http is not None:
            self._http.stop()
        for source in self._sources:
            source.stop()
        if self._websocket is not None:
            self._websocket.stop()
        if self._fargate is not None:
            self._fargate.stop()
        if self._moto is not None:
            self._moto.stop()
        self.stopped.set()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run fastlane locally, with AWS emulated in memory.")
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "10000")))
    parser.add_argument("--moto-port", type=int, default=int(os.environ.get("MOTO_PORT", "0")))
    args = parser.parse_args(argv)

    runtime = LocalRuntime(args.host, args.port, args.moto_port)
    runtime.start()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: threading.Thread(target=runtime.stop, daemon=True).start())
    print(
        f"fastlane local runtime: API on http://{args.host}:{runtime.port} "
        f"(AWS emulated in memory at http://{args.host}:{runtime.moto_port}, ECS stood in for by local processes "
        f"at {runtime.ecs_endpoint}; state is lost on exit). Ctrl-C stops it.",
        file=sys.stderr,
        flush=True,
    )
    print(f"fastlane local runtime: live logs websocket on {runtime.websocket_url} "
          f"(stream pages: http://{args.host}:{runtime.port}/tasks/<task>/jobs/<job>/stream; "
          f"websocket management API at {runtime.websocket_management_endpoint}).",
          file=sys.stderr, flush=True)
    runtime.stopped.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
