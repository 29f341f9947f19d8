"""The local runtime's HTTP fronts: the app's routes served by processes of their own, beside the
engine process that runs everything else (the queue handlers, the scheduler's firing, the
process runner, the reconciler, the websocket gateway).

Serving HTTP is Python work a request (parsing, the app's router and validation, the answer);
in the engine's process it shares one interpreter lock with the launches and endings of the jobs
already posted, so posting slows as jobs run. A front is a process of its own, `python -m
infra.local.fronts`, started by the engine: LOCAL_HTTP_PROCESSES of them (one per core by
default), all accepting on the one listening socket the engine bound (so clients see one port,
and a connection goes to whichever front is free to accept it). Each opens the state file as a
client of its own: its writes take the file's cross-process write lock (sqlite/db.py) and are as
durable as the engine's, so a 200 still means the job is stored.

What a front does that the engine must act on, it says on a stream socket of its own (a
socketpair, one JSON object a line): the messages it sent to a queue (the engine wakes that
queue's receivers, so a posted job launches at once, as in one process), a schedule it put (the
engine's firing loop looks again), a StopTask (the engine's runner ends the process). A word lost
in a crash costs at most the receivers' idle look (1 s). When the engine goes, so does the socket:
a front exits at its end of file, and the engine stops its fronts first when it stops (they let
go within a second, then are killed). A front that dies unexpectedly is started again.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .settings import ROOT

log = logging.getLogger("fastlane.local.fronts")

READY_SECONDS = 30.0  # a front that has not said it serves by then failed to start
STOP_SECONDS = 1.0  # a front that has not exited by then is killed
RESPAWN_PAUSE_SECONDS = 1.0  # between two starts of one front that keeps dying
HEARD = ("queue", "schedule", "stop", "ready", "error")  # the words a front says, one a line


def default_count() -> int:
    """One front per core this process may use (at most 8)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(8, cores))


# the engine's side ----------------------------------------------------------------------------------


@dataclass
class EngineHooks:
    """What the engine does when a front says it sent messages to a queue, put a schedule, or asks
    for an ECS task to stop."""

    queue: Callable[[str, int], None]
    schedule: Callable[[], None]
    stop: Callable[[str, str], None]


@dataclass
class _Front:
    number: int
    process: subprocess.Popen[bytes] | None = None
    channel: socket.socket | None = None
    ready: threading.Event = field(default_factory=threading.Event)
    said: list[str] = field(default_factory=list)  # why it did not start, when it said


class Fronts:
    """`count` front processes serving the app on `listening`, supervised by the engine."""

    def __init__(self, count: int, listening: socket.socket, hooks: EngineHooks, *, host: str, state: str,
                 isolation: str, python: str = sys.executable) -> None:
        self._listening = listening
        self._host = host
        self._hooks = hooks
        self._state = os.path.abspath(state)
        self._isolation = isolation
        self._python = python
        self._fronts = [_Front(number) for number in range(count)]
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        # What the fronts said, by word (for queues, how many messages they told of), and how many
        # fronts were started: the runtime serves them
        # with its counters (GET <websocket management endpoint>/_local/calls).
        self.heard = dict.fromkeys(HEARD, 0)
        self.started = 0

    @property
    def pids(self) -> list[int]:
        with self._lock:
            return [front.process.pid for front in self._fronts if front.process is not None]

    def start(self) -> None:
        """Start every front and wait until each serves; RuntimeError when one cannot."""
        for front in self._fronts:
            self._spawn(front)
        deadline = time.monotonic() + READY_SECONDS
        for front in self._fronts:
            while not front.ready.wait(0.05):
                process = front.process
                if process is not None and process.poll() is not None:
                    raise RuntimeError(f"an HTTP front exited as it started (status {process.returncode})"
                                       + (f": {front.said[-1]}" if front.said else "; its error is above"))
                if time.monotonic() > deadline:
                    raise RuntimeError(f"an HTTP front did not start serving within {READY_SECONDS:g} s")
        for front in self._fronts:
            thread = threading.Thread(target=self._supervise, args=(front,), name=f"front-{front.number}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _spawn(self, front: _Front) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        argv = [self._python, "-m", "infra.local.fronts", "--listen-fd", str(self._listening.fileno()),
                "--engine-fd", str(theirs.fileno()), "--host", self._host, "--state", self._state,
                "--isolation", self._isolation]
        front.ready.clear()
        try:
            process = subprocess.Popen(argv, pass_fds=(self._listening.fileno(), theirs.fileno()), cwd=ROOT,
                                       stdin=subprocess.DEVNULL)
        finally:
            theirs.close()
        with self._lock:
            front.process, front.channel = process, ours
            self.started += 1
        threading.Thread(target=self._listen, args=(front, ours), name=f"front-{front.number}-says",
                         daemon=True).start()

    def _listen(self, front: _Front, channel: socket.socket) -> None:
        """Act on what the front says, a line at a time, until it goes."""
        with channel.makefile("rb") as lines:
            for line in lines:
                try:
                    self._act(front, json.loads(line))
                except Exception:  # noqa: BLE001 - one bad word must not deafen the engine to the rest
                    log.exception("local runtime: could not act on what an HTTP front said: %r", line[:200])

    def _act(self, front: _Front, said: dict[str, Any]) -> None:
        kind = next((word for word in HEARD if word in said), None)
        if kind is None:
            raise ValueError("not a word fronts say")
        with self._lock:
            self.heard[kind] += int(said.get("count", 1)) if kind == "queue" else 1
        if kind == "queue":
            self._hooks.queue(str(said["queue"]), int(said.get("count", 1)))
        elif kind == "schedule":
            self._hooks.schedule()
        elif kind == "stop":
            self._hooks.stop(str(said["stop"]), str(said.get("reason", "")))
        elif kind == "ready":
            front.ready.set()
        else:
            front.said.append(str(said["error"]))

    def _supervise(self, front: _Front) -> None:
        """Start the front again when it dies, unless the runtime stops."""
        while not self._stopping.is_set():
            process = front.process
            if process is None:
                return
            process.wait()
            if self._stopping.is_set():
                return
            log.error("local runtime: HTTP front %d (pid %d) exited with status %s; starting it again",
                      front.number, process.pid, process.returncode)
            if self._stopping.wait(RESPAWN_PAUSE_SECONDS):
                return
            try:
                self._spawn(front)
            except OSError:
                log.exception("local runtime: cannot start HTTP front %d again", front.number)
                return

    def stop(self) -> None:
        """Close each front's socket (it stops serving and exits), kill those still there a second
        later, and reap them."""
        self._stopping.set()
        with self._lock:
            fronts = [(front.process, front.channel) for front in self._fronts]
        for _, channel in fronts:
            if channel is not None:
                try:
                    channel.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        deadline = time.monotonic() + STOP_SECONDS
        for process, _ in fronts:
            if process is None:
                continue
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for _, channel in fronts:
            if channel is not None:
                channel.close()
        for thread in self._threads:
            thread.join(timeout=1.0)


# a front's side -------------------------------------------------------------------------------------


class EngineLink:
    """A front's end of its socket to the engine: thread-safe, one JSON object a line."""

    def __init__(self, channel: socket.socket) -> None:
        self._channel = channel
        self._lock = threading.Lock()
        # Sends to announce, by queue, gathered while the announcer was busy: under a burst of
        # posts one line tells of many, instead of a line (and a read by the engine) a post.
        self._sent: dict[str, int] = {}
        self._sent_lock = threading.Lock()
        self._to_announce = threading.Event()
        threading.Thread(target=self._announce, name="engine-link", daemon=True).start()

    def _say(self, **what: Any) -> None:
        line = (json.dumps(what, separators=(",", ":")) + "\n").encode("utf-8")
        with self._lock:
            self._channel.sendall(line)

    def queue(self, name: str, count: int) -> None:
        """Messages were sent to the queue `name`: its receivers in the engine look at once."""
        with self._sent_lock:
            self._sent[name] = self._sent.get(name, 0) + count
        self._to_announce.set()

    def _announce(self) -> None:
        while self._to_announce.wait():
            with self._sent_lock:
                sent, self._sent = self._sent, {}
                self._to_announce.clear()
            try:
                for name, count in sent.items():
                    self._say(queue=name, count=count)
            except OSError:
                return  # the engine is going (the front follows); the receivers look again within a second anyway

    def schedule(self) -> None:
        try:
            self._say(schedule=1)
        except OSError:
            pass  # as for a queue: the firing loop looks again within a second

    def stop(self, task_arn: str, reason: str) -> None:
        """StopTask, run by the engine's runner, which holds the processes."""
        from chalicelib.domain.errors import DependencyDown

        try:
            self._say(stop=task_arn, reason=reason)
        except OSError as error:
            raise DependencyDown(f"the local runtime's engine cannot be reached to stop {task_arn}: {error}") from error

    def ready(self) -> None:
        self._say(ready=os.getpid())

    def error(self, message: str) -> None:
        try:
            self._say(error=message)
        except OSError:
            pass

    def wait_for_end(self) -> None:
        """Until the engine closes its end (it stops, or it died)."""
        while True:
            try:
                if not self._channel.recv(4096):
                    return
            except InterruptedError:
                continue
            except OSError:
                return


def serve(listen_fd: int, engine_fd: int, host: str, state: str, isolation: str) -> int:
    """A front's life: open the state file, serve the app on the inherited socket until the
    engine's end of `engine_fd` closes."""
    # Ctrl-C reaches every process of the terminal's group: the engine decides when fronts stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    link = EngineLink(socket.socket(fileno=engine_fd))
    listening = socket.socket(fileno=listen_fd)
    try:
        import app as app_module
        from chalicelib import wiring
        from chalicelib.config import Settings

        from .gateway import LocalHttpServer
        from .settings import RuntimeSettings
        from .sqlite.backend import open_front_backend

        settings = RuntimeSettings.from_environment()
        wiring.reset()
        backend = open_front_backend(state, Settings.from_environment(), link=link, isolation=isolation,
                                     cron_tick_seconds=settings.cron_tick_seconds)
        wiring.use_backend(backend)
        http = LocalHttpServer(app_module.app, host, 0, allowed_hosts=settings.allowed_hosts, listening=listening)
    except (Exception, SystemExit) as error:  # said to the engine, which says why the runtime cannot start
        link.error(str(error) or type(error).__name__)
        raise
    http.start()
    link.ready()
    link.wait_for_end()
    http.stop()
    backend.extras["front"].close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="One HTTP front of the local runtime (started by the runtime).")
    parser.add_argument("--listen-fd", type=int, required=True)
    parser.add_argument("--engine-fd", type=int, required=True)
    parser.add_argument("--host", required=True)
    parser.add_argument("--state", required=True)
    parser.add_argument("--isolation", default="")
    args = parser.parse_args(argv)
    return serve(args.listen_fd, args.engine_fd, args.host, args.state, args.isolation)


if __name__ == "__main__":
    sys.exit(main())
