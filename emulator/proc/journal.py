"""The lab's process journal: every process a podlab command starts that could outlive it is named here, by the
process itself, before it runs what it was started for.

One append-only file per lab (``LabPaths.proc_journal``, created by ``up`` right after the record and before
anything is started), one line per process::

    <pid> <start time> <kind> <what>

``start time`` is field 22 of /proc/PID/stat, so an entry is only ever acted on while the PID still belongs to
that process; ``kind`` says how teardown ends it (``agent``: killed first and awaited, a dying lab needs no
kubelet; ``daemon``: SIGTERM with a grace period, it removes what it owns; ``tool``: killed with the
containers). ``what`` is free text for people (``cluster DNS``, ``kube-proxy of node-1``, ``tcpdump web-1:eth0``).

Who writes, and why it cannot race. The entry is written by the child, not the parent: a parent that is
SIGKILLed between its fork and its write would lose the child, while the child exists from the fork on and
does not depend on its parent to reach its write. The child appends its line (step A: one ``write`` on an
``O_APPEND`` descriptor, atomic and ordered with every other append to the file) and *then* checks that the
journal is still open (step C: the path still names the file it appended to); only then does it run or exec.
``down``/``cleanup`` close the journal by renaming it (step M) and *then* read the renamed file (step R).
Either C finds the journal open — so M had not happened yet, hence A < C < M < R and R reads the entry and
ends the process — or C finds it closed, and the child exits without running anything (status 125). Every
process is therefore either ended by teardown or ends itself; none runs unrecorded. A child that cannot open
the journal at all (the lab is gone, or is being removed) exits the same way. No lock is involved, so a
teardown never waits for a command and a command never waits for a teardown.

Python children (forked daemons, ``podlab exec`` before it execs in place) do A and C with ``enter``. A
program started by ``exec``/``posix_spawn`` cannot run our code first, so ``wrap`` puts a few lines of POSIX
shell in front of it: ``sh`` (dash here: ~1 ms) opens the journal without creating it, reads its own PID and
start time from /proc/self/stat, appends its line through /proc/self/fd (the same file, even if renamed
meanwhile), compares the path with that file (``-ef``) and then ``exec``s the program, which keeps the PID and
the start time. Wrappers that ``exec`` in turn (``nsenter``, ``ip netns exec``) keep them too, so the journal
names the process that ends up inside the lab's namespace.

What the journal cannot name: processes that a recorded process forks itself. Those still running under it are
ended with it (``kill_trees`` reads its children); those that outlive it stay in its process group (a shell's
background job under ``podlab exec``, which leads a group of its own: its number is the recorded PID), which
``kill_groups`` ends. Only one that left the group too (``setsid``, a daemon's double fork) is reported by
``down`` as a holder of a lab namespace, never killed by name.
"""
from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from emulator.errors import JournalClosed
from emulator.proc.lifecycle import start_time

KINDS = ("agent", "daemon", "tool")
#: exit status of a wrapped program that was not started because its lab's journal is closed or gone
CLOSED_STATUS = 125
SHELL = "/bin/sh"

# $1 journal, $2 kind, $3 what, then the program. Builtins only (no fork): `command exec` so that a failed
# open returns instead of exiting with 2; `read` from /proc/self/stat runs in the shell itself.
_SHIM = """j=$1 k=$2 w=$3; shift 3
{ command exec 9<"$j"; } 2>/dev/null || { echo "podlab: not started: the lab's process journal $j is closed" >&2; exit 125; }
read -r st </proc/self/stat
f() { p=$1 s=${22}; }
f $st
printf '%s %s %s %s\\n' "$p" "$s" "$k" "$w" >>/proc/self/fd/9
[ "$j" -ef /proc/self/fd/9 ] || { echo "podlab: not started: the lab is being removed" >&2; exit 125; }
exec 9<&-
exec "$@"
"""


@dataclass(frozen=True)
class Entry:
    pid: int
    start: int | None
    kind: str
    what: str

    @property
    def proc(self) -> tuple[int, int | None]:
        return self.pid, self.start


def _clean(what: str) -> str:
    return re.sub(r"\s+", " ", what).strip() or "-"


def _line(pid: int, started: int | None, kind: str, what: str) -> bytes:
    if kind not in KINDS:
        raise ValueError(f"journal kind {kind!r} is not one of {KINDS}")
    return f"{pid} {started} {kind} {_clean(what)}\n".encode()


def create(path: Path) -> None:
    """Open a new journal (``up``, before anything starts); an existing one is kept."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644))


def enter(path: Path, what: str, kind: str = "daemon") -> None:
    """Record the calling process (steps A and C above); raise JournalClosed if it must not run."""
    pid = os.getpid()
    line = _line(pid, start_time(pid), kind, what)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)  # never O_CREAT: a closed journal stays shut
    except FileNotFoundError:
        raise JournalClosed(f"not started: the process journal {path} is closed (lab removed or being removed)",
                            obj=str(path)) from None
    try:
        os.write(fd, line)
        mine = os.fstat(fd)
        try:
            now = os.stat(path)
        except FileNotFoundError:
            now = None
        if now is None or (now.st_dev, now.st_ino) != (mine.st_dev, mine.st_ino):
            raise JournalClosed(f"not started: the lab owning {path} is being removed", obj=str(path))
    finally:
        os.close(fd)


def wrap(path: Path, what: str, argv: list[str], kind: str = "tool") -> list[str]:
    """``argv`` preceded by the shell lines that record the process before it execs ``argv`` (same PID)."""
    if kind not in KINDS:
        raise ValueError(f"journal kind {kind!r} is not one of {KINDS}")
    return [SHELL, "-c", _SHIM, "podlab-journal", str(path), kind, _clean(what), *argv]


def _closed_paths(path: Path) -> list[Path]:
    try:
        names = os.listdir(path.parent)
    except FileNotFoundError:
        return []
    return sorted(path.parent / n for n in names if n.startswith(path.name + ".closed."))


def close(path: Path) -> list[Entry]:
    """Close the journal (step M: from now on nothing of the lab can start) and return every entry (step R),
    including those of journals closed earlier (a ``down`` that was interrupted)."""
    try:
        os.rename(path, path.with_name(f"{path.name}.closed.{os.getpid()}.{time.monotonic_ns()}"))
    except FileNotFoundError:
        pass  # closed already (or never opened): closing is idempotent, the entries are read below
    return entries(path)


def entries(path: Path) -> list[Entry]:
    """Every entry of the journal at ``path``, open or closed (a torn or foreign line is skipped)."""
    out: list[Entry] = []
    for p in [path, *_closed_paths(path)]:
        try:
            data = p.read_bytes()
        except FileNotFoundError:
            continue  # removed by a concurrent cleanup, or no journal yet: no entries there
        for raw in data.decode(errors="replace").splitlines():
            parts = raw.split(" ", 3)
            if len(parts) == 4 and parts[0].isdigit() and parts[2] in KINDS:
                started = int(parts[1]) if parts[1].isdigit() else None
                out.append(Entry(int(parts[0]), started, parts[2], parts[3]))
    return out
