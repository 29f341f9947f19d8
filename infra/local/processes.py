"""A job's command as a local process: started so that it dies with the runtime, its output pumped,
stopped with a grace, its exit status as Docker reports it."""
from __future__ import annotations

import ctypes
import json
import logging
import math
import os
import queue
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from .commands import INFO_FD, CannotStart, Command, docker_quietly
from .leftovers import send_signal
from .output import OutputShipper

log = logging.getLogger(__name__)

READ_BYTES = 65_536
POLL_SECONDS = 0.2
# After the main process exits its group is killed; output still buffered in the pipes is read
# until EOF, but a process that left the group could hold them open for ever.
DRAIN_IDLE_SECONDS = 1.0
DRAIN_MAX_SECONDS = 120.0  # generous: shipping a large output after the exit takes time


def exit_status(returncode: int) -> int:
    """Popen reports death by signal N as -N; Docker (and so ECS) reports 128 + N."""
    return returncode if returncode >= 0 else 128 - returncode


def killpg(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass  # the group is already gone


# dying with the runtime ---------------------------------------------------------------------------

PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent ends

# Runs its arguments unless the runtime writes "done" on its stdin first: the pipe's other end is
# the runtime's alone, so it reads EOF once the runtime is gone, however it ended.
WATCHDOG = 'read -r word; [ "$word" = done ] || exec "$@" >/dev/null 2>&1'

Result = TypeVar("Result")


def _libc_prctl() -> Callable[..., int] | None:
    """libc's prctl, looked up once in the runtime (a forked child only calls it); None where there
    is none."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl


_PRCTL = _libc_prctl()


def _die_with_parent() -> Callable[[], None] | None:
    """What a child runs between its fork and its exec so that SIGKILL ends it when the runtime
    ends, even by SIGKILL, when no cleanup of the runtime's can run."""
    prctl = _PRCTL
    if prctl is None:
        return None
    parent, kill = os.getpid(), int(signal.SIGKILL)

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, kill, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(128 + kill)  # the runtime ended between the fork and the prctl: no signal will come

    return preexec


class _Starter:
    """The one thread that starts every job's process. A parent-death signal (ours, or the one
    bubblewrap's --die-with-parent asks for) is sent when the *thread* that forked the child
    ends, not its process: a job started by a thread that then ends would be killed with it. This
    thread never ends, so a job dies with the runtime and not before."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def call(self, start: Callable[[], Result]) -> Result:
        """What `start` returns (or raises), called in the starter thread."""
        done: Future[Result] = Future()
        with self._lock:
            # Started when first needed, and again in a forked copy of the runtime (threads do not fork).
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._serve, name="process-starter", daemon=True)
                self._thread.start()
        self._calls.put((start, done))
        return done.result()

    def _serve(self) -> None:
        while True:
            start, done = self._calls.get()
            try:
                done.set_result(start())
            except BaseException as error:  # noqa: BLE001 - the caller's to handle; this thread must go on
                done.set_exception(error)


_STARTER = _Starter()


# a started process ------------------------------------------------------------------------------


class ProcessRun:
    """One started command in its own process group: its output pumped into a shipper until it
    exits and every byte is drained; stopped on request."""

    def __init__(self, command: Command) -> None:
        argv = command.argv
        if not argv:
            raise CannotStart("CannotStartContainerError: no command specified")
        info: tuple[int, int] | None = os.pipe() if command.pid_namespace else None
        if info is not None:
            argv = [str(info[1]) if arg == INFO_FD else arg for arg in argv]
        # Where bubblewrap asks for the parent-death signal itself, no preexec step: without one the
        # child is started by vfork, about 4 ms less of the runtime's time per job.
        preexec = None if command.dies_with_parent else _die_with_parent()
        try:
            self.process = _STARTER.call(lambda: subprocess.Popen(
                argv, env=command.env, cwd=command.cwd, start_new_session=True, preexec_fn=preexec,
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                pass_fds=(info[1],) if info else ()))
        except OSError as error:
            if info is not None:
                os.close(info[0])
            raise CannotStart(_exec_error(argv[0], error)) from None
        finally:
            if info is not None:
                os.close(info[1])
        self.pid = self.process.pid
        self.exited = threading.Event()
        self.exit_code: int | None = None
        # Who gets the SIGTERM of a stop: the whole group, or the sandbox's PID 1 alone, whose
        # host pid is read when first needed (bubblewrap writes it once the namespaces exist,
        # which takes milliseconds the task's start need not wait for).
        self._info_fd = info[0] if info is not None else None
        self._main_pid: int | None = None
        self._info_lock = threading.Lock()
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._watchdog_fd: int | None = None
        self._watchdog_lock = threading.Lock()  # the pump's thread and a killer's may both release it
        if command.cleanup:
            self._watch(command)

    def _watch(self, command: Command) -> None:
        """Start the watchdog that runs the command's cleanup if the runtime dies before the job
        ends. Its own session: a signal to the runtime's process group (a closed terminal) must
        not end it with the runtime."""
        read, write = os.pipe()
        try:
            self._watchdog = subprocess.Popen(["sh", "-c", WATCHDOG, "watchdog", *command.cleanup], stdin=read,
                                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=command.env,
                                              start_new_session=True)
        except OSError as error:
            os.close(write)
            log.warning("no watchdog for process %s, which may outlive the runtime: %s", self.pid, error)
            return
        finally:
            os.close(read)
        self._watchdog_fd = write

    def _release_watchdog(self) -> None:
        """The job ended, or was ended: the watchdog leaves without acting."""
        with self._watchdog_lock:
            fd, self._watchdog_fd = self._watchdog_fd, None
        if fd is None or self._watchdog is None:
            return
        try:
            os.write(fd, b"done\n")
        except OSError:
            pass  # it is gone already
        finally:
            os.close(fd)
        try:
            self._watchdog.wait(timeout=10)
        except subprocess.TimeoutExpired:
            log.warning("the watchdog of process %s did not leave", self.pid)

    @property
    def main_pid(self) -> int | None:
        with self._info_lock:
            if self._info_fd is not None:
                fd, self._info_fd = self._info_fd, None
                self._main_pid = _read_child_pid(fd)
            return self._main_pid

    def pump(self, shipper: OutputShipper) -> int:
        """Read the output into the shipper until the process exits and all it wrote is
        shipped; returns the exit status."""
        process = self.process
        assert process.stdout is not None and process.stderr is not None
        selector = selectors.DefaultSelector()
        selector.register(process.stdout.fileno(), selectors.EVENT_READ, "stdout")
        selector.register(process.stderr.fileno(), selectors.EVENT_READ, "stderr")
        exited_at: float | None = None
        # Idle means pipes with nothing to read, not time spent shipping (which can be long
        # under load while the pipes stay full).
        idle_since: float | None = None
        try:
            while selector.get_map():
                wait = shipper.seconds_to_flush()
                ready = selector.select(POLL_SECONDS if wait is None else min(wait, POLL_SECONDS))
                if ready:
                    idle_since = None
                elif idle_since is None:
                    idle_since = time.monotonic()
                for key, _ in ready:
                    data = os.read(key.fd, READ_BYTES)
                    if data:
                        shipper.feed(key.data, data)
                    else:
                        selector.unregister(key.fd)
                        shipper.end(key.data)
                if shipper.due():
                    shipper.flush()
                if exited_at is None and process.poll() is not None:
                    self._reaped()
                    exited_at = time.monotonic()
                if exited_at is not None:
                    now = time.monotonic()
                    idle = idle_since is not None and now - idle_since > DRAIN_IDLE_SECONDS
                    if idle or now - exited_at > DRAIN_MAX_SECONDS:
                        break
            for stream in selector.get_map().values():
                shipper.end(stream.data)
            shipper.flush()
        finally:
            selector.close()
            process.stdout.close()
            process.stderr.close()
            self.main_pid  # noqa: B018 - reads (and closes) the info pipe while it can still be read
            if exited_at is None:
                # Both pipes closed: the process is ending, or closed them and runs on until
                # stopped.
                process.wait()
                self._reaped()
        assert self.exit_code is not None
        return self.exit_code

    def _reaped(self) -> None:
        # In a container everything dies with the main process; here its group does.
        killpg(self.pid, signal.SIGKILL)
        self.exit_code = exit_status(self.process.returncode)
        self.exited.set()
        self._release_watchdog()

    def terminate(self, grace: float, docker_name: str | None = None) -> None:
        """SIGTERM (or `docker stop`), then SIGKILL once the grace is over. Blocks until then."""
        try:
            if docker_name is not None:
                docker_quietly(["stop", "-t", str(max(0, math.ceil(grace))), docker_name], timeout=grace + 10)
                # If the container did not exist (yet), the CLI itself is what holds the task.
                if self.exited.wait(2.0):
                    return
            elif grace > 0:
                if self.main_pid is not None:
                    send_signal(self.main_pid, signal.SIGTERM)
                else:
                    killpg(self.pid, signal.SIGTERM)
                if self.exited.wait(grace):
                    return
            if not self.exited.is_set():
                killpg(self.pid, signal.SIGKILL)
        except Exception:  # noqa: BLE001 - a stop must not kill its caller
            log.exception("cannot stop process %s", self.pid)

    def kill(self, docker_name: str | None = None) -> None:
        if not self.exited.is_set():
            killpg(self.pid, signal.SIGKILL)
            if docker_name is not None:
                docker_quietly(["rm", "-f", docker_name], timeout=10)  # killing the CLI leaves its container running
        self._release_watchdog()  # what it would have done is done


def _exec_error(program: str, error: OSError) -> str:
    """What ECS says of a container whose command cannot be executed."""
    if isinstance(error, FileNotFoundError):
        if program == "docker":
            return "CannotStartContainerError: the docker CLI is not in $PATH"
        return f'CannotStartContainerError: exec: "{program}": executable file not found in $PATH'
    if isinstance(error, PermissionError):
        return f'CannotStartContainerError: exec: "{program}": permission denied'
    return f'CannotStartContainerError: exec: "{program}": {error.strerror or error}'


def _read_child_pid(fd: int) -> int | None:
    """bubblewrap writes {"child-pid": N} to its info fd once the sandbox exists, then closes it
    (or exits without writing when it cannot start)."""
    data = b""
    try:
        while chunk := os.read(fd, 4096):
            data += chunk
    finally:
        os.close(fd)
    try:
        pid = json.loads(data.decode()).get("child-pid")
    except (ValueError, AttributeError):
        return None
    return pid if isinstance(pid, int) and pid > 0 else None
