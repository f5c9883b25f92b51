"""Starting the lab's daemons (node agents, kube-proxy per node, the controller-manager, the DNS server).

``spawn`` (or ``spawn_many``, which forks them all before waiting for any) forks the calling process twice (no interpreter start: a daemon is up in milliseconds), the grandchild
detaches (``setsid``), optionally enters a network namespace for the whole process (it is single-threaded, so
``setns`` is safe), sends its PID back through a pipe and runs ``target``. The caller records that PID, with its
start time, in the lab record, so ``down`` ends exactly this process. Output goes to the daemon's log file.
Readiness: daemons publish a small JSON status file, and the component waits for it (``state.store.wait_file``).
"""
from __future__ import annotations

import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Callable

from emulator.errors import ProcessError
from emulator.netlink import netns


def spawn(target: Callable[[], None], log: Path, ns: str | None = None, title: str = "") -> int:
    """Run ``target()`` as a detached daemon (inside namespace ``ns``, named ``title`` in ps); return its PID."""
    return collect(start(target, log, ns, title))


def spawn_many(specs: list[tuple[Callable[[], None], Path, str | None, str]]) -> list[int]:
    """Start several daemons at once ((target, log, ns, title) each): every fork is made before any is waited
    for, so the daemons start up side by side; return their PIDs in order."""
    started = []
    try:
        for spec in specs:
            started.append(start(*spec))
    finally:
        pids = []
        for s in started:  # reaped even if a later fork failed (the started daemons are found by their pidfiles)
            pids.append(collect(s))
    return pids


def start(target: Callable[[], None], log: Path, ns: str | None = None, title: str = "") -> tuple[int, int, Path]:
    """Fork the daemon; return (intermediate child, read end of its PID pipe, log) for ``collect``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    r, w = os.pipe()
    pid = os.fork()
    if pid:
        os.close(w)
        return pid, r, log
    code = 1
    try:
        os.close(r)
        os.setsid()
        if os.fork():
            os._exit(0)
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        nul = os.open(os.devnull, os.O_RDONLY)
        os.dup2(nul, 0)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.closerange(3, w)
        os.closerange(w + 1, 65536)
        sys.stdout = os.fdopen(1, "w", buffering=1)
        sys.stderr = os.fdopen(2, "w", buffering=1)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if ns:
            netns.setns(netns.open_fd(ns))
        if title:
            with open("/proc/self/comm", "w") as f:
                f.write(title[:15])
        os.write(w, str(os.getpid()).encode())
        os.close(w)
        target()
        code = 0
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(code)


def collect(started: tuple[int, int, Path]) -> int:
    """Reap the intermediate child and read the daemon's PID (``ProcessError`` naming its log if it died before
    reporting)."""
    pid, r, log = started
    os.waitpid(pid, 0)
    try:
        data = os.read(r, 32)
    finally:
        os.close(r)
    if not data:
        raise ProcessError(f"the daemon logging to {log} failed to start; see that log", obj=str(log))
    return int(data)


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)
