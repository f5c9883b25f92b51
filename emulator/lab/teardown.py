"""Removing a lab: exactly what its record and store say it owns, in an order that lets the kernel free it fast.

Order: close the lab's process journal, so nothing of the lab can start any more, then stop the agents and every
process the journal and the store name (by PID and start time, never by name; all signalled at once, then awaited
together; the containers the agents' journals name first of all, as soon as the agents are stopped) — the pods'
namespaces are unmounted from that moment, beside the rest of this
(``_EarlyDelete``) — delete every namespace in one go — pods first — and wait until the node uplinks have
left the underlay bridge (the kernel frees namespaces in a background worker; the vanishing ports show it has
reached the nodes, queued after the pods), then the state directory. Every step tolerates what is already gone, so ``down`` twice, or ``down`` after a crash
half-way through ``up``, is fine. Processes we did not start that still sit in a lab namespace are reported, not
killed.
"""
from __future__ import annotations

import os
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

from emulator.lab import components
from emulator.proc import journal, lifecycle
from emulator.agent.agent import read_pidfile
from emulator.agent.pods import read_journal
from emulator.state import record
from emulator.state.paths import LabPaths
from emulator.netlink import netns
from emulator.netlink.observe import Snapshot
from emulator.state.store import Store
from emulator.topology import names

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def _ports(fd: int, skip: set[str]) -> int:
    """How many veth links the namespace behind ``fd`` still holds (other than ``skip``)."""
    with Snapshot(ns=fd) as snap:
        return sum(1 for link in snap.links.values() if link.kind == "veth" and link.name not in skip)


def _wait_released(fds: list[int], skip: set[str], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    pending = list(fds)
    while pending:
        pending = [fd for fd in pending if _ports(fd, skip)]
        if not pending:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def holders(inodes: set[int]) -> list[tuple[int, str]]:
    """Processes (pid, comm) whose network namespace is one of ``inodes`` (for reporting only)."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if os.stat(f"/proc/{d}/ns/net").st_ino in inodes:
                    with open(f"/proc/{d}/comm") as f:
                        out.append((int(d), f.read().strip()))
            except OSError:
                continue  # the process ended while we looked, or is not ours to read: nothing to report
    return out


def pod_namespaces(lab: str, store: Store, statuses: list[dict] | None = None) -> list[str]:
    found = {names.pod_ns(lab, n, ns) for ns, n in store.keys("pods")}
    for st in store.list("pods", status=True) if statuses is None else statuses:
        sb = st.get("sandbox") or {}
        found.add(sb.get("netns") or names.pod_ns(lab, st.get("name", ""), st.get("namespace") or "default"))
    return sorted(n for n in found if n and n != f"{lab}-")


def _end_processes(paths: LabPaths, rec: dict, node_names: list[str], store: Store,
                   agents_stopped: Callable[[], None] = lambda: None
                   ) -> tuple[list[tuple[int, int | None]], list[dict]]:
    """Close the lab's process journal first (from then on nothing of the lab can start: see
    ``emulator.proc.journal``) and end what it names: agents and tools first, with the processes they started
    (``kill_trees``: stopped, their children read, all killed; the agents are awaited: a dying lab needs no
    graceful kubelet, and a live one would restart containers or make namespaces; the containers their
    journals name are killed as soon as they are stopped, before their children are read), then the lab's daemons
    (TERM, so they can remove what they own), then every container the statuses name, killed all at once. Returns the killed
    processes that are not awaited (``wait_gone``: they make nothing, so their namespaces can be removed while
    the kernel ends them), and the pod statuses as the dead agents left them. ``agents_stopped`` is called once
    the agents and tools are stopped (SIGSTOP, before they are killed): from then on nothing can make a namespace
    of the lab any more. (``pids``/
    ``agents`` in the record are read too: labs made before the journal kept them there.)"""
    entries = journal.close(paths.proc_journal)
    by_kind: dict[str, list[tuple[int, int | None]]] = {k: [] for k in journal.KINDS}
    for e in entries:
        by_kind[e.kind].append(e.proc)
    agents = (by_kind["agent"] + [pf for pf in (read_pidfile(paths, node) for node in node_names) if pf]
              + [(a["pid"], a.get("start")) for a in rec.get("agents", [])])
    journaled: list[tuple[int, int | None]] = []

    def stopped() -> None:
        # the containers the agents' journals name die first (with their groups), while the agents are stopped,
        # and the pods' namespaces are unmounted beside: the kernel's cleanup worker, which frees them one batch
        # after the other on its own, can start at once instead of after the children scan below
        journaled[:] = lifecycle.kill_many(_journaled(paths, node_names), group=True)
        agents_stopped()
    parents, kids = lifecycle.kill_trees(agents + by_kind["tool"], stopped=stopped)
    lifecycle.kill_groups(by_kind["tool"])  # what an exec'd command left in its group (a `sleep &`)
    lifecycle.wait_gone(parents)
    lifecycle.stop_many(by_kind["daemon"] + [(p["pid"], p.get("start")) for p in rec.get("pids", [])], grace=1.0)
    statuses = list(store.list("pods", status=True))
    procs = [(c["pid"], c.get("pidStart")) for st in statuses for c in st.get("containerStatuses", []) if c.get("pid")]
    procs += _journaled(paths, node_names)  # with the containers a crashed agent started but never reported
    return lifecycle.kill_many(procs) + kids + journaled, statuses


def _journaled(paths: LabPaths, node_names: list[str]) -> list[tuple[int, int | None]]:
    """(pid, start time) of every container the nodes' agents recorded in their journals."""
    return [(pid, started) for node in node_names for _sandbox, pid, started in read_journal(paths, node)]


def destroy(lab: str, progress: Progress = _quiet, timeout: float = 10.0) -> bool:
    """Remove everything lab ``lab`` owns. Returns False if there was nothing to remove."""
    paths = LabPaths(lab)
    rec = record.load(lab)
    if rec is None and not paths.root.exists():
        return False
    if rec is not None:
        rec = record.set_status(rec, "deleting")
    store = Store(paths.store)
    node_names = (rec or {}).get("nodes") or (store.names("nodes"))
    early = _EarlyDelete(lab, store)
    try:
        dying, statuses = _end_processes(paths, rec or {}, node_names, store, early.start)
    finally:
        early.join()
    underlay = (rec or {}).get("underlay") or names.underlay_ns(lab)
    node_ns = [names.node_ns(lab, n) for n in node_names]
    infra = list(dict.fromkeys((rec or {}).get("namespaces") or [underlay] + node_ns))
    pods = pod_namespaces(lab, store, statuses)
    progress(f"deleting {len(pods)} pod and {len(infra)} node/infrastructure namespaces")
    ul_fd = netns.open_fd(underlay) if netns.mounted(underlay) else None
    inodes = early.inodes | {i for i in (netns.inode(n) for n in pods + infra) if i is not None}
    try:
        # All at once, pods first: the kernel's cleanup worker then frees them in as few batches as possible.
        # The node uplinks leave the underlay bridge when their node namespaces are freed, after the pods'
        # namespaces queued before them, so an empty bridge means the kernel has released the lab. Our own
        # remaining work (files) is done while that worker runs, on the other CPU.
        _delete(pods, inodes)
        _delete([n for n in infra if n != underlay] + [underlay], inodes)
        components.teardown_all(lab, paths)
        lifecycle.wait_gone(dying)
        _remove_tree(paths.root, progress)
        if ul_fd is not None and not _wait_released([ul_fd], set(), timeout):
            _report(progress, inodes)
    finally:
        if ul_fd is not None:
            os.close(ul_fd)
    return True


class _EarlyDelete:
    """The pods' namespaces named by the store's manifests (one directory listing), unmounted in a thread as soon
    as the agents are stopped, while they are killed, the daemons stopped, the pod statuses read and the
    containers killed.

    The kernel frees a namespace once its mount and its last process are gone, in one background worker that runs
    beside us on the other CPU, so every step before the first unmount delays the whole teardown (at 5,000 pods
    ``_end_processes`` took ~0.9 s). Nothing can make a namespace of the lab once its agents are stopped (the
    journal is closed first: no tool or container can start either), and a container still alive keeps its
    namespace until it is killed, so the order cannot leave anything. An agent stopped in the middle of a system
    call finishes that call first (a namespace it was mounting): the full list (with the namespaces only the
    statuses name) is deleted again once the agents are dead; what is gone by then is skipped."""

    def __init__(self, lab: str, store: Store) -> None:
        self.lab, self.store = lab, store
        self.inodes: set[int] = set()
        self.thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="netns-early-del", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            _delete(pod_namespaces(self.lab, self.store, []), self.inodes)
        except BaseException as e:  # raised again by join, in the caller's thread
            self.error = e

    def join(self) -> None:
        if self.thread is not None:
            self.thread.join()
            if self.error is not None:
                raise self.error


#: threads unmounting namespaces side by side: each unmount waits for the kernel (an RCU grace period, longer the
#: busier the machine), and the waits overlap: 3,000 empty namespaces were unmounted in 0.65-0.77 s by 8 threads
#: against 1.6-1.9 s by one (and freed by the kernel in 1.2-1.3 s against 3.5-3.7 s) on this 2-CPU VM
DELETE_THREADS = 8


def _delete(namespaces: list[str], inodes: set[int]) -> None:
    """Delete ``namespaces`` (by ``DELETE_THREADS`` threads, in order within each chunk), keeping their inodes in
    ``inodes`` (to name what still holds one, if the kernel does not free them)."""
    def one(n: str) -> int | None:
        i = netns.inode(n)
        if i is not None:
            netns.delete(n)
        return i
    if len(namespaces) < 2 * DELETE_THREADS:
        found = [one(n) for n in namespaces]
    else:
        with ThreadPoolExecutor(DELETE_THREADS, thread_name_prefix="netns-del") as pool:
            found = list(pool.map(one, namespaces, chunksize=32))
    inodes.update(i for i in found if i is not None)


def _remove_tree(root: Path, progress: Progress) -> None:
    """Remove the lab's state directory; what cannot be removed is reported (``cleanup`` removes the directory
    later: it has no record any more), never silently left."""
    def failed(_func: object, path: str, exc: tuple) -> None:
        if not isinstance(exc[1], FileNotFoundError):  # removed meanwhile: what we wanted
            progress(f"warning: cannot remove {path}: {exc[1]}; `podlab cleanup` removes it later")
    shutil.rmtree(root, onerror=failed)


def _report(progress: Progress, inodes: set[int]) -> None:
    for pid, comm in holders(inodes):
        progress(f"warning: process {pid} ({comm}) is still inside a lab namespace; it keeps it alive")
