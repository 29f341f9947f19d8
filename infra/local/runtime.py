"""The embedded local runtime: AWS emulated by moto, the app served over HTTP, all in one
process, with no AWS account and no Docker. State lives in memory and is gone on exit.

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


class LocalRuntime:
    def __init__(self, host: str = "127.0.0.1", port: int = 10000, moto_port: int = 0, prefix: str = "fastlane") -> None:
        self.host = host
        self.port = port
        self.moto_port = moto_port or free_port(host)
        self.prefix = prefix
        self._moto: Any = None
        self._http: Any = None
        self.stopped = threading.Event()

    def start(self) -> None:
        from moto.server import ThreadedMotoServer

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
                **local_environment(self.prefix),
            }
        )
        import boto3

        from chalicelib import wiring

        wiring.reset()
        os.environ.update(provision(boto3.client("sqs"), self.prefix))
        wiring.reset()

        from app import app

        from .gateway import LocalHttpServer

        self._http = LocalHttpServer(app, self.host, self.port)
        self.port = self._http.port
        self._http.start()

    def stop(self) -> None:
        if self._http is not None:
            self._http.stop()
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
        f"(AWS emulated in memory on port {runtime.moto_port}; state is lost on exit). Ctrl-C stops it.",
        file=sys.stderr,
        flush=True,
    )
    runtime.stopped.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
