"""How a job's command is started: a plain process, one in a bubblewrap sandbox, or `docker run`."""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass

log = logging.getLogger(__name__)

class CannotStart(Exception):
    """The command could not be started; `reason` is what ECS would say."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


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


