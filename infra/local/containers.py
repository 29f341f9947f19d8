"""One task's container as the local Fargate stand-ins run it: `docker run` with an engine, a (sandboxed) process otherwise."""
from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable

from .commands import CannotStart, Command, Sandbox, docker_command
from .output import OutputShipper
from .processes import ProcessRun

log = logging.getLogger(__name__)

TASK_DIRECTORY_PREFIX = "fastlane-task-"

# Starts the task's process in the given directory (None with docker) and says where its output
# goes; None when it does not start (stopped first, or refused), having recorded why.
Launch = Callable[[str | None], tuple[ProcessRun, OutputShipper] | None]


class Containers:
    def __init__(self, engine: str | None = None, sandbox: Sandbox | None = None) -> None:
        if engine not in (None, "docker"):
            raise ValueError(f"unsupported engine {engine!r}: only 'docker' (or None, for local processes)")
        self.engine = engine
        self.sandbox = sandbox or Sandbox()

    @property
    def isolation(self) -> str:
        """How jobs are isolated from the host, as /status says it."""
        if self.engine == "docker":
            return "Docker containers (DOCKER_HOST)"
        return "local processes: " + self.sandbox.description

    def docker_name(self, task_id: str) -> str | None:
        return f"fastlane-{task_id}" if self.engine == "docker" else None

    def command(self, task_id: str, image: str, argv: list[str], env: dict[str, str], directory: str | None,
                entry_point: list[str] | None = None) -> Command:
        if self.engine == "docker":
            return docker_command(f"fastlane-{task_id}", image, entry_point or [], argv, env)
        if not argv:
            raise CannotStart("CannotStartContainerError: no command specified")
        return self.sandbox.command(argv, env, directory or "/")

    def terminate(self, task_id: str, process: ProcessRun, grace: float) -> None:
        """End the process in the background: SIGTERM (docker stop), then SIGKILL after the grace."""
        threading.Thread(target=process.terminate, args=(grace, self.docker_name(task_id)),
                         name=f"stop-{task_id[:8]}", daemon=True).start()

    def kill(self, task_id: str, process: ProcessRun) -> None:
        process.kill(self.docker_name(task_id))

    def supervise(self, task_id: str, launch: Launch,
                  process: Callable[[], ProcessRun | None]) -> tuple[int | None, Exception | None]:
        """Launch the task's process in a directory of its own (a plain process's /tmp), ship its
        output until it exits, and say how it ended: its exit code, or the error that ended the
        supervision (the process, if any, killed). Never raises."""
        directory: str | None = None
        try:
            if self.engine is None:
                directory = tempfile.mkdtemp(prefix=f"{TASK_DIRECTORY_PREFIX}{task_id[:12]}-")
            started = launch(directory)
            if started is None:
                return None, None
            run, shipper = started
            return run.pump(shipper), None
        except Exception as error:  # noqa: BLE001 - the task ends, with the reason
            log.exception("local ECS task %s failed", task_id)
            run = process()
            if run is not None:
                self.kill(task_id, run)
                run.process.wait()
            return None, error
        finally:
            if directory is not None:
                shutil.rmtree(directory, ignore_errors=True)


def live(process: ProcessRun | None) -> ProcessRun | None:
    """The process while it runs: None before it started and once it exited."""
    return process if process is not None and not process.exited.is_set() else None


def running(processes: Iterable[ProcessRun | None]) -> int:
    return sum(1 for process in processes if live(process) is not None)


def join(threads: Iterable[threading.Thread | None], seconds: float) -> None:
    """Wait for the tasks' threads, `seconds` at most in all."""
    deadline = time.monotonic() + seconds
    for thread in threads:
        if thread is not None:
            thread.join(max(0.0, deadline - time.monotonic()))
