"""Processes podlab owns, ended only by their recorded PID *and* start time.

A PID is recorded with its start time (field 22 of /proc/PID/stat), so a recorded PID is only ever signalled
while it still belongs to the process podlab started: a PID the kernel has since reused for someone else's
process is never touched. Everything that ends a process of a lab (teardown, cleanup, the agent, ``bgp stop``)
goes through ``stop_many``/``kill_many`` here; nothing ends a process by name.
"""
from __future__ import annotations

import os
import signal
import time
from typing import Callable

def _stat(pid: int) -> list[bytes] | None:
    """The fields of /proc/PID/stat after the command name (state first; start time is index 19)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    return data[data.rindex(b")") + 2:].split()


def start_time(pid: int) -> int | None:
    fields = _stat(pid)
    return None if fields is None else int(fields[19])


def alive(pid: int, started: int | None) -> bool:
    """Is ``pid`` running (not a zombie) and, if ``started`` is given, still the process that started then?"""
    fields = _stat(pid)
    return fields is not None and fields[0] != b"Z" and (started is None or int(fields[19]) == started)


def stop(pid: int, started: int | None, grace: float = 0.0, wait: float = 2.0, group: bool = False) -> None:
    """Signal a recorded process (only if it is still the one we started): TERM, then KILL after ``grace``;
    return once it is gone (or ``wait`` seconds after the KILL), so a caller can rely on it being dead.
    ``group``: a process leading its own process group (a container, started with ``setsid``) is signalled with
    its group, so what it started (a shell's ``sleep``) ends with it instead of living on under init."""
    stop_many([(pid, started)], grace=grace, wait=wait, group=group)


def _ours(procs: list[tuple[int, int | None]]) -> list[tuple[int, int | None]]:
    """The recorded processes that still run and are still the ones we started (each once)."""
    return list(dict.fromkeys((pid, st) for pid, st in procs if pid and alive(pid, st)))


def _signal(procs: list[tuple[int, int | None]], sig: int, group: bool = False) -> None:
    for pid, _st in procs:
        try:
            if group and _leads_group(pid):
                os.killpg(pid, sig)
            else:
                os.kill(pid, sig)
        except ProcessLookupError:
            pass  # it ended since it was checked: the signal's purpose is served


def wait_gone(procs: list[tuple[int, int | None]], seconds: float = 5.0) -> list[tuple[int, int | None]]:
    """Wait up to ``seconds`` until none of ``procs`` runs any more; return those still running."""
    deadline = time.monotonic() + seconds
    while procs and time.monotonic() < deadline:
        procs = [(pid, st) for pid, st in procs if alive(pid, st)]
        if procs:
            time.sleep(0.002)
    return procs


def stop_many(procs: list[tuple[int, int | None]], grace: float = 0.0, wait: float = 5.0,
              group: bool = False) -> None:
    """End every recorded process that is still the one we started — SIGTERM and ``grace`` seconds first if
    asked, then SIGKILL — signalling them all at once and waiting for them together (a thousand pods'
    containers die in parallel instead of one after the other). ``group``: as for ``stop``."""
    live = _ours(procs)
    if grace:
        _signal(live, signal.SIGTERM, group)
        live = wait_gone(live, grace)
    live = _ours(live)
    _signal(live, signal.SIGKILL, group)
    wait_gone(live, wait)


def kill_many(procs: list[tuple[int, int | None]], group: bool = False) -> list[tuple[int, int | None]]:
    """SIGKILL every recorded process that is still the one we started, without waiting; return them (for
    ``wait_gone``), so the caller can do other work while the kernel ends them. ``group``: as for ``stop``."""
    live = _ours(procs)
    _signal(live, signal.SIGKILL, group)
    return live


def children(pid: int) -> list[int]:
    """The children of every thread of ``pid`` (``/proc/PID/task/TID/children``)."""
    out: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(c) for c in f.read().split()]
        except OSError:  # the thread ended while we listed them: it has no children to report
            continue
    return out


def _stopped(pid: int) -> bool:
    fields = _stat(pid)
    return fields is None or fields[0] in (b"T", b"t", b"Z", b"X")


def _leads_group(pid: int) -> bool:
    try:
        return os.getpgid(pid) == pid
    except OSError:
        return False


def kill_trees(procs: list[tuple[int, int | None]], wait: float = 2.0,
               stopped: Callable[[], None] | None = None
               ) -> tuple[list[tuple[int, int | None]], list[tuple[int, int | None]]]:
    """SIGKILL recorded processes together with the processes they started, without waiting for them to die;
    return (the recorded ones still running, their children), for ``wait_gone``.

    A process killed outright leaves its children to init, unknown; and one caught between starting a child
    and recording it (an agent between ``posix_spawn`` and its container journal) would leave that child
    unrecorded. So the recorded processes are first stopped (SIGSTOP: a stopped process cannot start another,
    and a fork in progress completes first), their children are read from the kernel's parent links
    (``/proc/PID/task/TID/children``), and then all are killed at once — a child that leads its own process
    group (a container: started with ``setsid``) together with its group, which holds what it forked in turn.
    Only recorded processes and their descendants are touched, each by PID and a start time read while its
    parent was stopped. ``stopped()`` is called once they are (the caller may act while none of them can)."""
    top = _ours(procs)
    if not top:
        if stopped is not None:
            stopped()
        return [], []
    _signal(top, signal.SIGSTOP)
    deadline = time.monotonic() + wait
    while not all(_stopped(pid) for pid, _st in top) and time.monotonic() < deadline:
        time.sleep(0.001)
    if stopped is not None:
        stopped()
    seen = {pid for pid, _st in top}
    kids: list[tuple[int, int | None]] = []
    for pid, st in top:
        if alive(pid, st):
            kids += [(c, start_time(c)) for c in children(pid) if c not in seen]
    kids = [(c, st) for c, st in dict.fromkeys(kids) if st is not None]
    for pid, _st in kids:  # while their parents are stopped: a child that ended is a zombie, its PID not reused
        try:
            if _leads_group(pid):
                os.killpg(pid, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:  # already gone: what we wanted
            pass
    _signal(top, signal.SIGKILL)
    return top, kids


def kill_groups(procs: list[tuple[int, int | None]]) -> None:
    """SIGKILL the process group each recorded process leads or led, with what is left in it (a shell's
    background job, once the shell has exited). A group's number stays reserved while any member lives, so a
    group whose leader is gone is still the one the recorded process made; one whose number a live process with
    another start time now leads is someone else's, and left alone."""
    for pid, started in procs:
        if not pid or (started is not None and start_time(pid) not in (None, started)):
            continue  # the PID is another process's now (it may lead a group of its own): not ours
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass  # no such group (never made, or empty): nothing left


def reap() -> list[tuple[int, int]]:
    """Collect exited children (the agent is their parent): [(pid, exit status)]."""
    out = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return out
        if pid == 0:
            return out
        out.append((pid, os.waitstatus_to_exitcode(status)))
