"""Kill a podlab command at a random moment and prove that ``down``/``cleanup`` leave nothing of the lab behind.

"Nothing" is checked four ways, none of which trusts podlab's own bookkeeping alone:
- no namespace named ``<lab>-*`` and no state directory (record, journal, store) of the lab;
- no process alive that any record named (the process journal, agent pidfiles, container journals, pod
  statuses), read just before the cleanup;
- no process whose network namespace is one of the lab's (every inode seen while the command ran, sampled
  often, and right before the cleanup; with the namespace's cookie, since a freed namespace's inode number is
  soon given to a namespace of another lab);
- no process descended from this one: the harness makes itself a child subreaper (``PR_SET_CHILD_SUBREAPER``),
  so whatever the killed command started, however it detached, is re-parented to us when its parent dies and
  is found by walking /proc. Short-lived helpers get ``settle`` seconds to finish on their own.
Used by tests/integration/test_kill_moments.py (few kills) and scripts/kill_moments.py (the 100-kill runs).
"""
from __future__ import annotations

import ctypes
import json
import os
import random
import signal
import socket
import struct
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from emulator.agent.agent import read_pidfile
from emulator.agent.pods import read_journal
from emulator.errors import PodlabError
from emulator.netlink import netns
from emulator.proc import journal
from emulator.proc.lifecycle import alive
from emulator.state import record
from emulator.state.paths import LabPaths
from tests.integration.conftest import ROOT, podlab, podlab_argv, podlab_env  # noqa: F401  (podlab: for the tests)

PR_SET_CHILD_SUBREAPER = 36
SO_NETNS_COOKIE = 71  # Linux >= 5.14 (asm-generic/socket.h); the socket module does not name it
_libc = ctypes.CDLL(None, use_errno=True)


def popen_podlab(*args: str) -> subprocess.Popen:
    """``podlab ARGS`` started, not awaited (the suite's one runner's command line and environment)."""
    return subprocess.Popen(podlab_argv(*args), cwd=ROOT, env=podlab_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def subreaper(on: bool) -> None:
    if _libc.prctl(PR_SET_CHILD_SUBREAPER, 1 if on else 0, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def ppids() -> dict[int, tuple[int, str, str]]:
    """pid -> (ppid, state, comm) of every process."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        i = data.rindex(b")")
        fields = data[i + 2:].split()
        out[int(d)] = (int(fields[1]), fields[0].decode(), data[data.index(b"(") + 1:i].decode(errors="replace"))
    return out


def descendants(root: int | None = None) -> list[tuple[int, str]]:
    """Live (non-zombie) descendants of ``root`` (default: this process): [(pid, comm)]."""
    root = root or os.getpid()
    table = ppids()
    kids: dict[int, list[int]] = {}
    for pid, (ppid, _st, _c) in table.items():
        kids.setdefault(ppid, []).append(pid)
    out, todo = [], list(kids.get(root, []))
    while todo:
        pid = todo.pop()
        todo += kids.get(pid, [])
        if table[pid][1] not in ("Z", "X"):
            out.append((pid, table[pid][2]))
    return out


def netns_cookie(path: str) -> int | None:
    """The cookie of the network namespace at ``path`` (a /run/netns file, /proc/PID/ns/net), None if it is gone:
    a number the kernel never gives to two namespaces while it runs, which inode numbers are not (a freed
    namespace's inode number goes to the next one made, on a machine where other labs come and go)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        with netns.entered(fd):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with s:
            return struct.unpack("=Q", s.getsockopt(socket.SOL_SOCKET, SO_NETNS_COOKIE, 8))[0]
    except (OSError, PodlabError):  # gone, or a /run/netns file that `ip netns add` has not mounted yet
        return None
    finally:
        os.close(fd)


def lab_inodes(lab: str, known: dict[int, int | None] | None = None) -> dict[int, int | None]:
    """inode -> cookie of each of the lab's network namespaces (cookies of inodes in ``known`` are reused)."""
    out: dict[int, int | None] = {}
    for n in netns.list_names():
        if n.startswith(f"{lab}-") and (i := netns.inode(n)) is not None:
            out[i] = known[i] if known and known.get(i) is not None else netns_cookie(netns.path(n))
    return out


def recorded(lab: str) -> set[tuple[int, int | None]]:
    """Every process any record of the lab names (alive or not)."""
    paths = LabPaths(lab)
    procs = {e.proc for e in journal.entries(paths.proc_journal)}
    rec = record.load(lab) or {}
    procs |= {(p["pid"], p.get("start")) for p in rec.get("pids", []) + rec.get("agents", [])}  # older records
    nodes = rec.get("nodes") or [p.name for p in (paths.root / "nodes").glob("*")]
    for node in nodes:
        pf = read_pidfile(paths, node)
        if pf:
            procs.add(pf)
        procs |= {(pid, st) for _sb, pid, st in read_journal(paths, node)}
    for f in paths.store.glob("status/pods/*.json"):
        try:
            st = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        procs |= {(c["pid"], c.get("pidStart")) for c in st.get("containerStatuses", []) if c.get("pid")}
    return procs


def in_namespaces(inodes: dict[int, int | None]) -> list[tuple[int, str]]:
    """Processes in one of the namespaces ``inodes`` names (inode -> cookie, from ``lab_inodes``): same inode
    and, where the cookie is known, same cookie, so a namespace made since under a freed one's number is not
    taken for the lab's."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ino = os.stat(f"/proc/{d}/ns/net").st_ino
                if ino not in inodes:
                    continue
                if inodes[ino] is not None and netns_cookie(f"/proc/{d}/ns/net") != inodes[ino]:
                    continue  # another namespace, made after the lab's was freed, got its inode number
                with open(f"/proc/{d}/comm") as f:
                    out.append((int(d), f.read().strip()))
            except OSError:
                continue
    return out


@dataclass
class Leftovers:
    namespaces: list[str] = field(default_factory=list)
    state: bool = False
    recorded: list[int] = field(default_factory=list)
    in_lab_ns: list[tuple[int, str]] = field(default_factory=list)
    descendants: list[tuple[int, str]] = field(default_factory=list)
    transient: list[tuple[int, str]] = field(default_factory=list)  # descendants that ended within ``settle``
    kubeconfig: list[str] = field(default_factory=list)  # the lab's context, or a lock, left in $KUBECONFIG

    @property
    def clean(self) -> bool:
        return not (self.namespaces or self.state or self.recorded or self.in_lab_ns or self.descendants
                    or self.kubeconfig)


def leftovers(lab: str, inodes: dict[int, int | None], procs: set[tuple[int, int | None]], before: set[int],
              settle: float = 5.0) -> Leftovers:
    """What of ``lab`` is left (after its cleanup); ``before`` are descendants that existed before the run."""
    out = Leftovers()
    deadline = time.monotonic() + settle
    first: list[tuple[int, str]] | None = None
    while True:
        reap()
        desc = [d for d in descendants() if d[0] not in before]
        if first is None:
            first = desc
        if not desc or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    out.descendants = desc
    out.transient = [d for d in first if d not in desc]
    out.namespaces = [n for n in netns.list_names() if n.startswith(f"{lab}-")]
    out.state = LabPaths(lab).root.exists() or record.load(lab) is not None
    out.recorded = sorted(pid for pid, st in procs if alive(pid, st))
    out.in_lab_ns = in_namespaces(inodes)
    out.kubeconfig = kubeconfig_left(lab)
    return out


def kubeconfig_left(lab: str) -> list[str]:
    """The lab's entries still in the session's kubeconfig, and its lock if one is left."""
    path = Path(os.environ["KUBECONFIG"])
    left = [f"{path}.lock"] if Path(f"{path}.lock").exists() else []
    try:
        text = path.read_text()
    except FileNotFoundError:
        return left
    return left + [f"name: podlab-{lab}"] * (f"name: podlab-{lab}\n" in text)


def sample_while(proc: subprocess.Popen, lab: str, until: float,
                 inodes: dict[int, int | None]) -> tuple[float | None, float | None]:
    """Let ``proc`` run until ``until`` (monotonic) or its exit, sampling the lab's namespace inodes; return
    (seconds until it exited by itself or None, seconds until the lab's record first appeared)."""
    t0, seen = time.monotonic(), None
    record_file = LabPaths(lab).record
    while time.monotonic() < until:
        if proc.poll() is not None:
            return time.monotonic() - t0, seen
        if seen is None and record_file.exists():
            seen = time.monotonic() - t0
        inodes |= lab_inodes(lab, inodes)
        time.sleep(0.005)
    return (time.monotonic() - t0 if proc.poll() is not None else None), seen


@dataclass
class KillResult:
    at: float
    finished: bool
    left: Leftovers
    record_at: float | None = None  # when the lab's record appeared (before it: only the interpreter starting)
    exited_at: float | None = None  # when ``up`` exited by itself


def kill_up_once(topo_file: Path, lab: str, at: float) -> KillResult:
    """Start ``podlab up``, SIGKILL it ``at`` seconds later (unless it finished), then ``cleanup`` — or ``down``
    if the lab was complete (``up`` finished, or was killed after it had marked the lab ready); return what is
    left."""
    before = {pid for pid, _ in descendants()}
    inodes: dict[int, int | None] = {}
    procs: set[tuple[int, int | None]] = set()
    proc = popen_podlab("up", str(topo_file), "--name", lab)
    exited_at, record_at = sample_while(proc, lab, time.monotonic() + at, inodes)
    finished = exited_at is not None
    if not finished:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    inodes |= lab_inodes(lab, inodes)
    procs |= recorded(lab)
    complete = finished or (record.load(lab) or {}).get("status") == "ready"
    r = podlab("down", lab) if complete else podlab("cleanup")
    if r.returncode != 0:
        raise AssertionError(f"{'down' if complete else 'cleanup'} failed: {r.stdout}{r.stderr}")
    return KillResult(at, finished, leftovers(lab, inodes, procs, before), record_at, exited_at)


def moments(n: int, start: float, end: float, seed: int) -> list[float]:
    """``n`` kill moments drawn uniformly in [start, end] seconds."""
    rnd = random.Random(seed)
    return [rnd.uniform(start, max(end, start + 0.1)) for _ in range(n)]
