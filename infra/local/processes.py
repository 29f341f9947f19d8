"""Job commands as local processes, for the local runner and the local Fargate: how a command
is started (a plain process, one inside a bubblewrap sandbox, or `docker run` through the
docker CLI), how its stdout and stderr become log events as they are written, how it is
stopped (SIGTERM to its process group, then SIGKILL after a grace), with exit statuses as
Docker reports them, and how it dies with the runtime, however the runtime ends."""
from __future__ import annotations

import ctypes
import functools
import json
import logging
import math
import os
import queue
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

log = logging.getLogger(__name__)

# CloudWatch Logs takes events of at most 256 KB and calls of at most 1 MB / 10,000 events;
# these stay well inside, as the awslogs driver does (the local log store keeps the same).
MAX_LINE_BYTES = 200_000
MAX_BATCH_EVENTS = 1_000
MAX_BATCH_BYTES = 800 * 1024
EVENT_OVERHEAD_BYTES = 26  # what CloudWatch counts per event on top of the message
READ_BYTES = 65_536
POLL_SECONDS = 0.2
# After the main process exits its group is killed; output still buffered in the pipes is read
# until EOF, but a process that left the group could hold them open for ever.
DRAIN_IDLE_SECONDS = 1.0
DRAIN_MAX_SECONDS = 120.0  # generous: shipping a large output after the exit takes time
STREAMS = ("stdout", "stderr")


def exit_status(returncode: int) -> int:
    """Popen reports death by signal N as -N; Docker (and so ECS) reports 128 + N."""
    return returncode if returncode >= 0 else 128 - returncode


def killpg(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass  # the group is already gone


def utf8_cut(data: bytes, limit: int) -> int:
    """Where to cut `data` at most `limit` bytes in without splitting a UTF-8 character."""
    cut = limit
    while cut > limit - 4 and cut > 0 and 0x80 <= data[cut] <= 0xBF:
        cut -= 1
    return cut if cut > limit - 4 and cut > 0 else limit


class CannotStart(Exception):
    """The command could not be started; `reason` is what ECS would say."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# how a command is started -----------------------------------------------------------------------


INFO_FD = "{info-fd}"  # where bubblewrap is told to write the host pid of the sandbox's PID 1


@dataclass(frozen=True)
class Command:
    argv: list[str]
    env: dict[str, str]
    cwd: str | None = None
    # The command is PID 1 of its own PID namespace (bubblewrap): SIGTERM goes to it alone, as
    # `docker stop` sends it to a container's PID 1; the host pid comes through INFO_FD.
    pid_namespace: bool = False
    # The command asks for a parent-death signal itself (bubblewrap's --die-with-parent).
    dies_with_parent: bool = False
    # What ends the job when the runtime dies and the death of the command's process would not
    # (a container outlives its `docker run` client): run by a watchdog that outlives the runtime.
    cleanup: tuple[str, ...] = ()


def job_environment(env: dict[str, str], home: str) -> dict[str, str]:
    """Only the job's environment, on top of what any program expects to find."""
    return {"PATH": os.environ.get("PATH", os.defpath), "LANG": "C.UTF-8", "HOME": home, **env}


SANDBOX_MODES = ("auto", "bwrap", "none")


@dataclass(frozen=True)
class Sandbox:
    """How local processes are isolated from the host: `bwrap` (bubblewrap: the host read-only,
    private /tmp and working directory, new namespaces but the network, which `network` keeps
    on, and `hidden` paths covered by empty directories) or `none` (plain processes)."""

    kind: str = "none"
    network: bool = True
    hidden: tuple[str, ...] = ()
    why: str = ""  # why plain processes, when bubblewrap was wanted

    WORKDIR = "/tmp/work"  # inside the sandbox; /tmp is the task's own directory

    @classmethod
    def choose(cls, mode: str = "auto", network: bool = True, hidden: Sequence[str] = ()) -> Sandbox:
        """`auto`: bubblewrap when `bwrap` is on PATH and can start a sandbox here, else plain
        processes; `bwrap`: bubblewrap or an error; `none`: plain processes."""
        if mode not in SANDBOX_MODES:
            raise ValueError(f"LOCAL_SANDBOX must be one of {', '.join(SANDBOX_MODES)}, not {mode!r}")
        if mode == "none":
            return cls("none", network, why="LOCAL_SANDBOX=none")
        problem = cls.probe(network)
        if problem is None:
            return cls("bwrap", network, tuple(p for p in hidden if p and os.path.isdir(p)))
        if mode == "bwrap":
            raise RuntimeError(f"LOCAL_SANDBOX=bwrap, but bubblewrap cannot run here: {problem}")
        return cls("none", network, why=problem)

    @staticmethod
    def probe(network: bool) -> str | None:
        """None when bubblewrap starts a sandbox as jobs get it; else why not."""
        if shutil.which("bwrap") is None:
            return "bwrap is not on PATH (Debian package bubblewrap)"
        try:
            argv = ["bwrap", "--ro-bind", "/", "/", "--unshare-all", *([] if not network else ["--share-net"]),
                    "--die-with-parent", "--", "true"]
            done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, timeout=10, check=False)
        except (OSError, subprocess.TimeoutExpired) as error:
            return f"bwrap failed to start: {error}"
        if done.returncode != 0:
            return f"bwrap cannot make a sandbox here: {done.stderr.decode(errors='replace').strip()[:200]}"
        return None

    @property
    def description(self) -> str:
        """What /status says about how jobs are isolated from the host."""
        if self.kind == "bwrap":
            network = "network on" if self.network else "no network"
            return f"bubblewrap sandbox (read-only host, private /tmp and working directory, {network})"
        return f"plain processes, no sandbox ({self.why or 'not asked for'})"

    def command(self, argv: list[str], env: dict[str, str], directory: str) -> Command:
        """The command that runs `argv` with only `env`, in the task's own `directory`."""
        if self.kind != "bwrap" or not argv:
            return Command(argv, job_environment(env, directory), directory)
        environment = job_environment(env, self.WORKDIR)
        _check_executable(argv[0], environment["PATH"])
        os.makedirs(os.path.join(directory, "work"), exist_ok=True)
        # The command is PID 1 of the sandbox, as in a container (no reaper in between), and
        # stays in bubblewrap's process group, so a stop reaches every process of the job.
        wrapper = ["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
                   "--bind", directory, "/tmp", "--chdir", self.WORKDIR,
                   "--unshare-all", *([] if not self.network else ["--share-net"]),
                   "--die-with-parent", "--as-pid-1", "--info-fd", INFO_FD]
        for path in self.hidden:
            if not _within(path, tempfile.gettempdir()):
                wrapper += ["--tmpfs", path]
        # bwrap passes its own environment on: the process starts with the job's only.
        return Command([*wrapper, "--", *argv], environment, None, pid_namespace=True, dies_with_parent=True)


def _within(path: str, folder: str) -> bool:
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _check_executable(program: str, path: str) -> None:
    """What exec would say inside the sandbox (the host is the same there, read-only), said
    before it starts, so a missing command fails to start as in ECS rather than exiting 1."""
    found = program if os.sep in program else shutil.which(program, mode=os.F_OK, path=path)
    if found is None or not os.path.exists(found):
        raise CannotStart(f'CannotStartContainerError: exec: "{program}": executable file not found in $PATH')
    if os.path.isdir(found) or not os.access(found, os.X_OK):
        raise CannotStart(f'CannotStartContainerError: exec: "{program}": permission denied')


def docker_command(name: str, image: str, entry_point: list[str], argv: list[str], env: dict[str, str]) -> Command:
    """`docker run` of the image under `name`, with the job's environment. Without a command the
    image's own CMD runs, as in ECS."""
    if not image or image.startswith("-"):
        # It would be read as an option of `docker run`.
        raise CannotStart(f"CannotPullContainerError: invalid reference format: {image!r}")
    command = ["docker", "run", "--rm", "--name", name]
    for key, value in env.items():
        command += ["-e", f"{key}={value}"]
    if entry_point:
        command += ["--entrypoint", entry_point[0]]
    command += [image, *argv[1:]] if entry_point else [image, *argv]
    return Command(command, dict(os.environ), None, cleanup=("docker", "rm", "-f", name))


def docker_quietly(args: list[str], timeout: float) -> None:
    try:
        subprocess.run(["docker", *args], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        log.warning("docker %s failed: %s", " ".join(args[:1]), error)


# output as log events -----------------------------------------------------------------------------

# Puts a batch of events ({"timestamp": ms, "message": text}, oldest first) into a log stream.
PutEvents = Callable[[str, list[dict[str, Any]]], None]


class OutputShipper:
    """Turns one task's output bytes into log events, one per line, and puts them in batches
    at most `flush_seconds` after they were read (0: at once). Used by one thread only."""

    def __init__(self, put: PutEvents, names: dict[str, str], flush_seconds: float = 0.0) -> None:
        self.put = put
        self.names = names  # stdout/stderr -> the log stream's name
        self.flush_seconds = flush_seconds
        self.partial = {stream: b"" for stream in STREAMS}
        self.pending: dict[str, list[dict[str, Any]]] = {stream: [] for stream in STREAMS}
        self.last_timestamp = {stream: 0 for stream in STREAMS}
        self.pending_events = 0
        self.pending_bytes = 0
        self.oldest_pending: float | None = None

    def feed(self, stream: str, data: bytes) -> None:
        buffer = self.partial[stream] + data
        *lines, rest = buffer.split(b"\n")
        for line in lines:
            self._add(stream, line)
        # A line that never ends is shipped in pieces rather than held in memory.
        while len(rest) > MAX_LINE_BYTES:
            cut = utf8_cut(rest, MAX_LINE_BYTES)
            self._add(stream, rest[:cut])
            rest = rest[cut:]
        self.partial[stream] = rest

    def end(self, stream: str) -> None:
        """The stream reached EOF: its last line may have had no newline."""
        rest, self.partial[stream] = self.partial[stream], b""
        self._add(stream, rest)

    def _add(self, stream: str, line: bytes) -> None:
        # CloudWatch rejects empty messages, so blank lines are not shipped (as with awslogs).
        if not line:
            return
        # Decoding first: a replaced byte takes three, so the size limit applies after it.
        text = line.decode("utf-8", errors="replace").encode("utf-8")
        now = time.time()
        timestamp = max(int(now * 1000), self.last_timestamp[stream])
        self.last_timestamp[stream] = timestamp
        while text:
            cut = utf8_cut(text, MAX_LINE_BYTES) if len(text) > MAX_LINE_BYTES else len(text)
            piece, text = text[:cut], text[cut:]
            self.pending[stream].append({"timestamp": timestamp, "message": piece.decode("utf-8")})
            self.pending_events += 1
            self.pending_bytes += len(piece) + EVENT_OVERHEAD_BYTES
        if self.oldest_pending is None:
            self.oldest_pending = now

    def seconds_to_flush(self) -> float | None:
        if self.oldest_pending is None:
            return None
        return max(0.0, self.oldest_pending + self.flush_seconds - time.time())

    def due(self) -> bool:
        if self.oldest_pending is None:
            return False
        return (self.pending_events >= MAX_BATCH_EVENTS or self.pending_bytes >= MAX_BATCH_BYTES
                or time.time() >= self.oldest_pending + self.flush_seconds)

    def flush(self) -> None:
        for stream in STREAMS:
            events, self.pending[stream] = self.pending[stream], []
            start = 0
            while start < len(events):
                end, size = start, 0
                while end < len(events) and end - start < MAX_BATCH_EVENTS:
                    event_size = len(events[end]["message"].encode("utf-8")) + EVENT_OVERHEAD_BYTES
                    if end > start and size + event_size > MAX_BATCH_BYTES:
                        break
                    size += event_size
                    end += 1
                self._put(self.names[stream], events[start:end])
                start = end
        self.pending_events = self.pending_bytes = 0
        self.oldest_pending = None

    def _put(self, name: str, events: list[dict[str, Any]]) -> None:
        # Losing a batch is better than stopping the task, or the rest of its output.
        try:
            self.put(name, events)
        except Exception:  # noqa: BLE001 - logged; the task runs on
            log.exception("cannot put %d log events into %s", len(events), name)


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
                    _kill(self.main_pid, signal.SIGTERM)
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


def _kill(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


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


DEAD = ("Z", "X")  # states of /proc/<pid>/stat of a process that has ended


@functools.cache
def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as boot:
            return boot.read().strip()
    except OSError:
        return ""


def _stat(pid: int) -> tuple[str, int, str] | None:
    """A process's state, session id and start time (clock ticks since boot), or None when it is
    gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return fields[0], int(fields[3]), fields[19]
    except (OSError, IndexError, ValueError):
        return None


def process_identity(pid: int) -> str | None:
    """What tells a process from a later one given its pid: the boot it runs in and its start
    time in that boot. None when it is gone."""
    stat = _stat(pid)
    return None if stat is None or stat[0] in DEAD else f"{_boot_id()}/{stat[2]}"


def _pids() -> list[int]:
    """The ids of the processes running now, as /proc names them."""
    try:
        return [int(name) for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return []


def _carries(pid: int, entry: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as environ:
            return entry in environ.read().split(b"\0")
    except OSError:
        return False


def kill_leftovers(entry: str, leader: int | None = None, identity: str | None = None) -> int:
    """SIGKILL what a job left running when the runtime that started it was killed, before its
    pid was recorded or after: every process whose environment holds `entry` (`NAME=value`, the
    execution's id, which a job's processes inherit), and the processes of the job's session (its
    process was started in a session of its own, led by the recorded pid `leader`, recorded with
    its `identity`) when that session is verifiably the job's.

    A pid is not given to a new process while a session still bears it, so the session is the
    job's when its leader is still the recorded process, or when one of its processes carries
    `entry`. Otherwise it is another's, begun after the job's session ended by a process given
    the same pid, and is left alone (a job's process that dropped its environment is missed then).
    Returns how many were killed."""
    wanted = entry.encode()
    killed: set[int] = set()
    while doomed := _leftovers(wanted, leader, identity) - killed:  # again: one may have forked meanwhile
        for pid in doomed:
            _kill(pid, signal.SIGKILL)
        killed |= doomed
    return len(killed)


def _leftovers(entry: bytes, leader: int | None, identity: str | None) -> set[int]:
    carriers: set[int] = set()
    session: set[int] = set()
    leader_is_the_jobs = False
    for pid in _pids():
        stat = _stat(pid)
        if pid == os.getpid() or stat is None or stat[0] in DEAD:
            continue
        if _carries(pid, entry):
            carriers.add(pid)
        if leader is not None and (stat[1] == leader or pid == leader):
            session.add(pid)
            if pid == leader and identity is not None and f"{_boot_id()}/{stat[2]}" == identity:
                leader_is_the_jobs = True
    return carriers | session if leader_is_the_jobs or session & carriers else carriers
