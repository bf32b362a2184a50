"""Who this process is, and whether another one is still running, as far as this machine can tell.

A lease records its holder's process so that a run on the same machine can see at once that the
holder is gone (killed, crashed, its machine rebooted) instead of waiting for its heartbeat to go
stale. A pid only means something inside one pid namespace of one boot of one machine: two
containers on one machine may both have a pid 7, and pids are reused. So a process is known by
its pid, its *scope* (boot id and pid namespace on Linux, else the host name) and its start time
(Linux: clock ticks since boot), which tells a reused pid from the process that held it.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True)
class ProcessId:
    host: str
    pid: int
    scope: str  # where `pid` names one process: processes with the same scope can check each other
    started: int | None  # start time in clock ticks since boot (Linux), None where unknown


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, start ticks) from /proc/<pid>/stat, None when there is no such process (or no /proc)."""
    text = _read(PROC / str(pid) / "stat")
    if text is None:
        return None
    fields = text[text.rfind(")") + 2 :].split()  # the command name in parentheses may hold spaces
    return fields[0], int(fields[19])  # fields 3 and 22 of proc(5), counted from the state


def _scope() -> str:
    boot = _read(PROC / "sys" / "kernel" / "random" / "boot_id")
    try:
        namespace = os.readlink(PROC / "self" / "ns" / "pid")
    except OSError:
        namespace = None
    if boot and namespace:
        return f"boot {boot} {namespace}"
    return f"host {socket.gethostname()}"


def this_process() -> ProcessId:
    stat = _stat(os.getpid())
    return ProcessId(socket.gethostname(), os.getpid(), _scope(), stat[1] if stat else None)


def visible(process: ProcessId) -> bool:
    """Whether this process can check that one: same machine, same boot, same pid namespace."""
    return process.scope == _scope()


def is_running(process: ProcessId) -> bool | None:
    """True or False for a process this machine can see (same scope); None for one it cannot."""
    if not visible(process):
        return None
    stat = _stat(process.pid)
    if stat is not None:
        state, started = stat
        if state in ("Z", "X"):  # killed, not yet reaped by its parent: it runs no code any more
            return False
        return process.started is None or started == process.started  # else: the pid was reused
    try:  # no /proc, or it hides other users' processes: ask the kernel
        os.kill(process.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True
