"""What a job left running, found by its execution id and its verified pid, and killed."""
from __future__ import annotations

import functools
import logging
import os
import signal

log = logging.getLogger(__name__)

def send_signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


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
            send_signal(pid, signal.SIGKILL)
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
