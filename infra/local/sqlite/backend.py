"""The local backend: one SQLite database file behind every port of chalicelib.ports (the
stores, queues, log streams, scheduler, process runner, mailer), assembled into a Backend, with
the handles the local runtime needs to run it (the database, the queues its pollers read, the
loops it starts and stops)."""
from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from chalicelib.adapters import webhooks
from chalicelib.config import Settings
from chalicelib.domain.errors import DependencyDown
from chalicelib.ports import Backend

from ..commands import Sandbox
from ..runner import FrontRunner, LocalRunner
from .db import WRITER_SUFFIX, Database
from .logs import LocalLogEvents, LocalLogReader, LocalLogStore
from .mail import LocalMailer
from .queues import LocalJobQueue, LocalNotifyQueue, LocalQueueDepths, LocalQueues, create_queues
from .scheduler import SqliteScheduler
from .stores import Stores, open_stores

DEFAULT_SENDER = "fastlane@localhost"


class StateInUse(RuntimeError):
    """Another local runtime uses this state file."""


@dataclass
class LocalHandles:
    """What the local runtime runs the backend with, besides the ports."""

    path: str
    db: Database
    stores: Stores
    queues: LocalQueues
    log_store: LocalLogStore
    log_events: LocalLogEvents
    runner: LocalRunner
    scheduler: SqliteScheduler
    mailer: LocalMailer
    lock_fd: int | None = None
    closed: bool = field(default=False)

    def close(self) -> None:
        """Stop the processes (their STOPPED events stay queued for the next start), wake every
        waiter, and let go of the file."""
        if self.closed:
            return
        self.closed = True
        self.scheduler.stop()
        self.runner.close()
        self.queues.close()
        self.log_store.wake()
        self.db.close()
        if self.lock_fd is not None:
            os.close(self.lock_fd)  # releases the lock


class _NoSockets:
    """Sockets before a websocket gateway is attached: every connection is gone."""

    def post(self, endpoint: str, connection_id: str, data: str) -> bool:
        return False

    def close(self, endpoint: str, connection_id: str) -> None:
        return None

    def warm(self) -> None:
        return None


class _NoStarter:
    def start(self, payload: dict[str, Any]) -> None:
        raise DependencyDown("live logs are not served: the local backend has no websocket gateway")


def _no_secrets(secret_id: str) -> dict[str, str]:
    raise DependencyDown(f"the local backend has no Secrets Manager to read {secret_id!r} from; set "
                         "BASIC_AUTH_USERNAME and BASIC_AUTH_PASSWORD instead")


def remove_state(path: str) -> None:
    """Delete a state file and its WAL companions (a fresh start)."""
    for suffix in ("", "-wal", "-shm", WRITER_SUFFIX):
        try:
            os.remove(path + suffix)
        except FileNotFoundError:
            pass


def _lock(path: str) -> int:
    """Hold `<state>.lock` while the runtime runs: two runtimes on one file would each take the
    other's running ECS tasks for leftovers of a restart."""
    fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StateInUse(f"another local runtime uses {path} (its lock file {path}.lock is held)") from None
    return fd


def open_local_backend(path: str, settings: Settings, *, gateway: Any = None, fresh: bool = False,
                       sandbox: Sandbox | None = None, engine: str | None = None, stop_grace_seconds: float = 2.0,
                       cron_tick_seconds: float | None = None, visibility_timeout: float = 30.0,
                       max_receive_count: int = 5, exclusive: bool = True,
                       clock: Callable[[], float] = time.time) -> Backend:
    """The Backend on the state file at `path` (created when missing; emptied first with
    `fresh`). `gateway` (a LocalWebsocketGateway) serves live logs; `exclusive` takes the
    file's lock. The runtime's handles are `backend.extras["local"]` (LocalHandles)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    lock_fd = _lock(path) if exclusive else None
    try:
        if fresh:
            remove_state(path)
        db = Database(path)
        stores = open_stores(db, clock)
        queues = LocalQueues(db, clock)
        create_queues(queues, visibility_timeout, max_receive_count)
        log_store = LocalLogStore(db)
        log_events = LocalLogEvents(log_store)
        runner = LocalRunner(db, queues, log_store, stop_grace_seconds=stop_grace_seconds, engine=engine,
                             sandbox=sandbox or Sandbox.choose("none"), region=settings.region, clock=clock)
        scheduler = SqliteScheduler(db, queues, cron_tick_seconds=cron_tick_seconds, clock=clock)
        mailer = LocalMailer(db, settings.mail_sender or DEFAULT_SENDER, clock)  # used when MAIL_SENDER is set
    except BaseException:
        if lock_fd is not None:
            os.close(lock_fd)
        raise
    handles = LocalHandles(path=path, db=db, stores=stores, queues=queues, log_store=log_store,
                           log_events=log_events, runner=runner, scheduler=scheduler, mailer=mailer, lock_fd=lock_fd)
    if gateway is not None:
        from .sockets import GatewaySockets, GatewayStarter

        sockets: Any = GatewaySockets(gateway)
        starter: Any = GatewayStarter(gateway)
    else:
        sockets, starter = _NoSockets(), _NoStarter()
    return _backend(settings, stores, queues, log_store, log_events, scheduler, runner, mailer, sockets, starter,
                    {"local": handles})


class EngineLink(Protocol):
    """What an HTTP front tells the runtime's engine (infra/local/fronts.py)."""

    def queue(self, name: str, count: int) -> None: ...

    def schedule(self) -> None: ...

    def stop(self, task_arn: str, reason: str) -> None: ...


def open_front_backend(path: str, settings: Settings, *, link: EngineLink, isolation: str,
                       cron_tick_seconds: float | None = None, clock: Callable[[], float] = time.time) -> Backend:
    """The Backend of an HTTP front on the state file the engine opened: the same stores, queues
    and schedules, whose sends and puts `link` announces to the engine; StopTask goes to the
    engine's runner. Live logs are the engine's (its websocket gateway). Its Database is
    `backend.extras["front"]`."""
    db = Database(path)
    stores = open_stores(db, clock)
    queues = LocalQueues(db, clock, announce=link.queue)
    log_store = LocalLogStore(db)
    scheduler = SqliteScheduler(db, queues, cron_tick_seconds=cron_tick_seconds, clock=clock, announce=link.schedule)
    mailer = LocalMailer(db, settings.mail_sender or DEFAULT_SENDER, clock)
    runner = FrontRunner(db, link.stop, isolation)
    return _backend(settings, stores, queues, log_store, LocalLogEvents(log_store), scheduler, runner, mailer,
                    _NoSockets(), _NoStarter(), {"front": db})


def _backend(settings: Settings, stores: Stores, queues: LocalQueues, log_store: LocalLogStore,
             log_events: LocalLogEvents, scheduler: SqliteScheduler, runner: LocalRunner | FrontRunner,
             mailer: LocalMailer, sockets: Any, starter: Any, extras: dict[str, Any]) -> Backend:
    return Backend(
        name="local",
        jobs=stores.jobs,
        executions=stores.executions,
        pools=stores.pools,
        schedules=stores.schedules,
        statistics=stores.statistics,
        deliveries=stores.deliveries,
        connections=stores.connections,
        job_queue=LocalJobQueue(queues),
        notify_queue=LocalNotifyQueue(queues),
        queue_depths=LocalQueueDepths(queues),
        scheduler=scheduler,
        runner=runner,
        logs=LocalLogReader(log_store),
        log_events=log_events,
        sockets=sockets,
        starter=starter,
        mailer=mailer if settings.mail_sender else None,  # as in AWS: e-mail is off without a sender
        read_secret=_no_secrets,
        webhooks=webhooks.post,  # a plain HTTP client: the same one as in AWS
        isolation=runner.isolation,
        extras=extras,
        idempotency_keys=stores.idempotency_keys,
    )


def handles_of(backend: Backend) -> LocalHandles:
    handles = backend.extras.get("local")
    if not isinstance(handles, LocalHandles):
        raise TypeError("not a local backend")
    return handles
