"""The processes the backend starts: who a recorded one was, whether it is provably gone, and which
processes carry a mark in their environment.

A pid alone names a process only while it lives: after it ends the number is reused, and after a reboot
(a power loss) every number means something else. A process's identity is therefore its host, the boot
it ran in, its pid namespace (a container sees other pids), its pid and its start time (in clock ticks
since boot, /proc/<pid>/stat). A process recorded that way is *gone* when, on the same host and in the
same pid namespace, its boot ended or its pid no longer names a process started at that time. Elsewhere
nothing can be proved, and the process counts as alive.

A mark is an environment variable every process started below a task inherits, even one that left the
task's process group and session (``callr::r_bg()``, ``processx``, ``setsid``): a task's processes are
found by it once the task has ended, as Jenkins' ProcessTreeKiller finds a build's.
"""
from __future__ import annotations

import os
import signal
import socket
import uuid
from typing import Any

PROC = "/proc"
# Executions (runs) this process holds: a reader in the same process (an R session that ran the run) sees
# one that ended without recording its end as gone although the process itself lives on.
_held: set[str] = set()


def stat_fields(pid: int) -> list[bytes] | None:
    """The fields of /proc/<pid>/stat after the command name (state, ppid, pgrp, session, ...), or None when
    there is no such process (or no /proc)."""
    try:
        with open(f"{PROC}/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return None
    return stat[stat.rfind(b")") + 2:].split()  # the name, in parentheses, may hold spaces


def _start_time(pid: int, fields: list[bytes] | None = None) -> int | None:
    fields = stat_fields(pid) if fields is None else fields
    return int(fields[19]) if fields and len(fields) > 19 else None  # field 22 of stat: starttime


def _read(path: str) -> str | None:
    try:
        with open(path) as handle:
            return handle.read().strip()
    except OSError:
        return None


def _pid_namespace() -> str | None:
    try:
        return os.readlink(f"{PROC}/self/ns/pid")
    except OSError:
        return None


def identity(pid: int | None = None) -> dict[str, Any]:
    """Who process ``pid`` (default: this one) is, as ``gone()`` reads it back, from any process."""
    pid = pid or os.getpid()
    return {"host": socket.gethostname(), "boot_id": _read(f"{PROC}/sys/kernel/random/boot_id"),
            "pid_namespace": _pid_namespace(), "pid": pid, "started": _start_time(pid)}


def hold() -> dict[str, Any]:
    """This process's identity, holding a new execution until ``release()``."""
    held = {**identity(), "execution": uuid.uuid4().hex}
    _held.add(held["execution"])
    return held


def release(held: dict[str, Any] | None) -> None:
    _held.discard((held or {}).get("execution"))


def gone(recorded: dict[str, Any]) -> bool:
    """Whether the process ``identity()`` or ``hold()`` recorded has provably ended (see the module's doc)."""
    here = identity()
    if not recorded.get("host") or recorded["host"] != here["host"]:
        return False
    if recorded.get("boot_id") and here["boot_id"] and recorded["boot_id"] != here["boot_id"]:
        return True  # the machine restarted since
    if recorded.get("pid_namespace") != here["pid_namespace"]:
        return False
    pid = recorded.get("pid")
    if not isinstance(pid, int):
        return False
    if pid == here["pid"] and recorded.get("started") == here["started"] and "execution" in recorded:
        return recorded["execution"] not in _held
    return state(recorded) != "running"


def state(recorded: dict[str, Any]) -> str:
    """What became of a process recorded on this host and in this pid namespace: "running", "zombie" (it
    ended; its parent has not collected it) or "gone". Without /proc (macOS) a zombie, or another process
    given the same pid, cannot be told from the one recorded: it reads "running"."""
    pid = recorded["pid"]
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return "gone"
    except PermissionError:
        pass  # another user's: the pid is taken, by the one recorded or by another since
    fields = stat_fields(pid)
    if fields is None:
        return "running"
    started = _start_time(pid, fields)
    if recorded.get("started") is not None and started is not None and started != recorded["started"]:
        return "gone"
    return "zombie" if fields[0] == b"Z" else "running"


def descendants(pid: int) -> list[int]:
    """The processes below ``pid`` (its children, theirs, ...), from /proc or, without it, from ps. A fork
    carries no mark of its own (its environment is its parent's, as that one was started): it is found so."""
    if os.path.isdir(PROC):
        parents = {}
        for entry in _pids():
            fields = stat_fields(entry)
            if fields and len(fields) > 1:
                parents[entry] = int(fields[1])
    else:
        import subprocess

        listing = subprocess.run(["ps", "-A", "-o", "pid=,ppid="], capture_output=True, text=True).stdout
        parents = {int(p): int(pp) for p, pp in (line.split() for line in listing.splitlines())}
    children: dict[int, list[int]] = {}
    for child, parent in parents.items():
        children.setdefault(parent, []).append(child)
    found, queue = [], list(children.get(pid, []))
    while queue:
        found.append(queue.pop())
        queue += children.get(found[-1], [])
    return found


def marked(name: str, value: str) -> list[int]:
    """The processes whose environment, as they were started, has ``name`` set to ``value`` or to a path
    below it (Linux; elsewhere none are found)."""
    wanted = f"{name}={value}".encode()
    found = []
    for entry in _pids():
        try:
            with open(f"{PROC}/{entry}/environ", "rb") as handle:
                variables = handle.read().split(b"\0")
        except OSError:
            continue  # ended meanwhile, or not ours to read
        if any(v == wanted or v.startswith(wanted + b"/") for v in variables):
            found.append(entry)
    return found


def kill_marked(name: str, value: str, sig: int = signal.SIGKILL) -> None:
    """End every process marked so (never this one)."""
    for pid in marked(name, value):
        if pid != os.getpid():
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass


def _pids() -> list[int]:
    try:
        return [int(name) for name in os.listdir(PROC) if name.isdigit()]
    except OSError:
        return []
