"""Starting the lab's daemons (node agents, kube-proxy per node, the controller-manager, the DNS server).

``spawn`` (or ``spawn_many``, which forks them all before waiting for any) forks the calling process twice (no
interpreter start: a daemon is up in milliseconds), the grandchild detaches (``setsid``), records itself in the
lab's process journal (``emulator.proc.journal.enter``: before it enters the lab's namespace or runs anything,
and written by the daemon itself, so a caller SIGKILLed at any moment after the fork cannot lose it; if the
journal is closed because the lab is being removed it exits instead), optionally enters a network namespace for
the whole process (it is single-threaded, so ``setns`` is safe), sends its PID back through a pipe and runs
``target``. ``down`` and ``cleanup`` end it by the journal's PID and start time. Output goes to the daemon's log
file. Readiness: daemons publish a small JSON status file, and the component waits for it
(``state.store.wait_file``).

Memory. A forked daemon shares its parent's pages until it writes to them. Before forking a batch, ``spawn_many``
collects the parent's garbage and gives the free pages of its C heap back to the kernel (``malloc_trim``), so a
daemon does not map them; right after the fork the daemon freezes what it inherited (``gc.freeze``), so its own
collections never walk, and thereby copy, its parent's objects (the controller-manager forked from a 5,000-pod
``up`` copied 14 MB less that way). ``Named`` describes a daemon by the dotted name of its function, so that a
process other than the caller (the agents' launcher, which has imported less than ``up`` holds) can fork it.
"""
from __future__ import annotations

import gc
import importlib
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from dataclasses import dataclass
from typing import Callable

from emulator.errors import ProcessError
from emulator.netlink import netns
from emulator.proc import journal as proc_journal


@dataclass(frozen=True)
class Daemon:
    """What to start: ``target()`` logging to ``log``, recorded in ``journal`` as ``what`` (``kind`` says how
    teardown ends it), inside namespace ``ns`` if given, named ``title`` in ps."""
    target: Callable[[], None]
    log: Path
    journal: Path
    what: str
    ns: str | None = None
    title: str = ""
    kind: str = "daemon"


@dataclass(frozen=True)
class Named:
    """A daemon whose target is a function named by its dotted path (``module:function``) called with JSON
    arguments, so that another process (the agents' launcher) can fork it: ``daemon()`` resolves it there."""
    call: str
    args: tuple
    log: str
    journal: str
    what: str
    ns: str | None = None
    title: str = ""

    def to_json(self) -> dict:
        return {"call": self.call, "args": list(self.args), "log": self.log, "journal": self.journal,
                "what": self.what, "ns": self.ns, "title": self.title}

    @classmethod
    def from_json(cls, d: dict) -> "Named":
        return cls(d["call"], tuple(d["args"]), d["log"], d["journal"], d["what"], d.get("ns"), d.get("title", ""))

    def daemon(self) -> Daemon:
        module, _, name = self.call.partition(":")
        fn = getattr(importlib.import_module(module), name)
        args = self.args
        return Daemon(lambda: fn(*args), Path(self.log), Path(self.journal), self.what, self.ns, self.title)


def spawn(target: Callable[[], None], log: Path, ns: str | None = None, title: str = "", *, journal: Path,
          what: str, kind: str = "daemon") -> int:
    """Run ``target()`` as a detached daemon (inside namespace ``ns``, named ``title`` in ps), recorded in the
    process journal ``journal`` before it runs; return its PID."""
    return collect(start(Daemon(target, log, journal, what, ns, title, kind)))


def spawn_many(specs: list[Daemon]) -> list[int]:
    """Start several daemons at once: every fork is made before any is waited for, so the daemons start up
    side by side; return their PIDs in order."""
    started = []
    _trim()
    try:
        for spec in specs:
            started.append(start(spec))
    finally:
        pids = []
        for s in started:  # reaped even if a later fork failed (the started daemons are found by their pidfiles)
            pids.append(collect(s))
    return pids


def _trim() -> None:
    """Before forking: collect garbage and give the free pages of the C heap back to the kernel, so that a daemon
    forked from a big process (``up`` at 5,000 pods) does not map them (they count in its PSS while shared)."""
    import ctypes
    gc.collect()
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc: nothing to trim


def start(d: Daemon) -> tuple[int, int, Path]:
    """Fork the daemon; return (intermediate child, read end of its PID pipe, log) for ``collect``."""
    d.log.parent.mkdir(parents=True, exist_ok=True)
    r, w = os.pipe()
    pid = os.fork()
    if pid:
        os.close(w)
        return pid, r, d.log
    code = 1
    try:
        os.close(r)
        os.setsid()
        if os.fork():
            os._exit(0)
        code = _become(d, w)
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(code)


def _become(d: Daemon, w: int) -> int:
    """In the grandchild: detach, record itself, enter the namespace, report the PID, run; the exit status."""
    fd = os.open(d.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
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
    try:
        proc_journal.enter(d.journal, d.what, d.kind)
    except proc_journal.JournalClosed as e:
        log(f"{d.what}: {e}")
        return proc_journal.CLOSED_STATUS  # nothing ran; the caller sees no PID
    if d.ns:
        netns.setns(netns.open_fd(d.ns))
    if d.title:
        with open("/proc/self/comm", "w") as f:
            f.write(d.title[:15])
    os.write(w, str(os.getpid()).encode())
    os.close(w)
    gc.freeze()  # what the parent made is never walked by this process's collector (see the module docstring)
    if os.environ.get("PODLAB_TRACEMALLOC"):
        trace_allocations()
    d.target()
    return 0


def trace_allocations() -> None:
    """Diagnosis (``PODLAB_TRACEMALLOC=1``): trace this daemon's own allocations from here on; on SIGUSR2 write
    the 30 largest by line, and their total, to its log (``scripts/mem_regions.py`` shows the rest: the pages
    of its parent it copied)."""
    import tracemalloc
    tracemalloc.start(int(os.environ.get("PODLAB_TRACEMALLOC_FRAMES", "1")))

    def dump(*_: object) -> None:
        snap = tracemalloc.take_snapshot()
        stats = snap.statistics("traceback" if tracemalloc.get_traceback_limit() > 1 else "lineno")
        total = sum(s.size for s in stats)
        lines = [f"tracemalloc: {total / 1024:.0f} kB in {sum(s.count for s in stats)} blocks"]
        for s in stats[:30]:
            lines.append(f"  {s.size / 1024:8.1f} kB {s.count:7} " + " <- ".join(
                f"{f.filename.rsplit('/', 2)[-1]}:{f.lineno}" for f in s.traceback))
        log("\n".join(lines))
    signal.signal(signal.SIGUSR2, dump)


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
