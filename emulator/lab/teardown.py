"""Removing a lab: exactly what its record and store say it owns, in an order that lets the kernel free it fast.

Order (see ``destroy``): close the lab's process journal, so nothing of the lab can start any more; end the
agents and tools with what they started; delete the pods' namespaces at once, so the kernel's cleanup worker
starts freeing them while we do the rest; end the daemons and any container left (by PID and start time, never
by name; all signalled at once, then awaited together); delete the remaining namespaces, the underlay last; remove
the state directory while the kernel works, and wait until the node uplinks have left the underlay bridge (the
vanishing ports show the kernel has reached the nodes, queued after the pods). Every step tolerates what is
already gone, so ``down`` twice, or ``down`` after a crash half-way through ``up``, is fine. Processes we did
not start that still sit in a lab namespace are reported, not killed.
"""
from __future__ import annotations

import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from pyroute2.netlink.rtnl import RTM_GETLINK

from emulator.lab import components
from emulator.proc import journal, lifecycle
from emulator.agent.agent import read_pidfile
from emulator.agent.pods import read_journal
from emulator.state import record
from emulator.state.paths import LabPaths
from emulator.netlink import msgs, netns
from emulator.netlink.rtnl import Rtnl
from emulator.state.store import Store
from emulator.topology import names

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def _ports(fd: int, skip: set[str]) -> int:
    """How many veth links the namespace behind ``fd`` still holds (other than ``skip``)."""
    with Rtnl.in_ns(fd) as rt:
        n = 0
        for m in rt.query(msgs.link_dump(), RTM_GETLINK, dump=True):
            info = m.get_attr("IFLA_LINKINFO")
            if info and info.get_attr("IFLA_INFO_KIND") == "veth" and m.get_attr("IFLA_IFNAME") not in skip:
                n += 1
        return n


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
                continue
    return out


def pod_namespaces(lab: str, store: Store) -> list[str]:
    """The pods' namespaces, ``<lab>-<pod>``, for every pod the store has a manifest or a status of (a pod being
    deleted keeps its status, and its sandbox, until its agent is done). Two directory listings: no file is
    read."""
    found = {names.pod_ns(lab, n) for n in store.names("pods") + store.names("pods", status=True)}
    return sorted(n for n in found if n != f"{lab}-")


def delete_namespaces(spaces: list[str], threads: int = 4) -> None:
    """Unmount ``spaces`` (in this order, split over a few threads when there are many): each unmount waits for
    an RCU grace period, and one stalled behind the kernel's cleanup worker would hold up all that follow."""
    if len(spaces) < 64:
        for n in spaces:
            netns.delete(n)
        return
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda part: [netns.delete(n) for n in part], [spaces[k::threads] for k in range(threads)]))


def _journaled(paths: LabPaths) -> dict[str, list[tuple[int, int | None]]]:
    """Close the lab's process journal (from then on nothing of the lab can start: see ``emulator.proc.journal``)
    and return what it names, by kind."""
    by_kind: dict[str, list[tuple[int, int | None]]] = {k: [] for k in journal.KINDS}
    for e in journal.close(paths.proc_journal):
        by_kind[e.kind].append(e.proc)
    return by_kind


def destroy(lab: str, progress: Progress = _quiet, timeout: float = 10.0) -> bool:
    """Remove everything lab ``lab`` owns. Returns False if there was nothing to remove.

    The kernel frees namespaces in one background worker, so the sooner each is released the sooner it is
    done; everything of ours that the kernel does not wait for happens after that, while it works:
    1. close the journal; agents and tools, with what they started, are stopped and killed (``kill_trees``:
       a dying lab needs no graceful kubelet, and a live one would restart containers or make namespaces);
       the agents are awaited;
    2. the pods' namespaces are deleted (their containers were killed with the agents; the kernel frees each
       as its last process exits);
    3. the lab's daemons get SIGTERM (they remove what they own) and are awaited, then the containers the
       agents' journals name (those of an agent that was not running) are killed, and the remaining
       namespaces are deleted, the underlay last;
    4. files, then wait until the underlay's node ports are gone (the node namespaces, queued after the
       pods', have been freed). ``pids``/``agents`` in the record are read too (labs made before the journal).
    """
    paths = LabPaths(lab)
    rec = record.load(lab)
    if rec is None and not paths.root.exists():
        return False
    if rec is not None:
        rec = record.set_status(rec, "deleting")
    rec = rec or {}
    store = Store(paths.store)
    node_names = rec.get("nodes") or store.names("nodes")
    by_kind = _journaled(paths)
    agents = (by_kind["agent"] + [pf for pf in (read_pidfile(paths, node) for node in node_names) if pf]
              + [(a["pid"], a.get("start")) for a in rec.get("agents", [])])
    # stopped, then killed: they run no more code, so their namespaces can go before they are reaped
    parents, dying = lifecycle.kill_trees(agents + by_kind["tool"])
    underlay = rec.get("underlay") or names.underlay_ns(lab)
    infra = list(dict.fromkeys(rec.get("namespaces") or [underlay] + [names.node_ns(lab, n) for n in node_names]))
    pods = pod_namespaces(lab, store)
    ul_fd = netns.open_fd(underlay) if netns.exists(underlay) else None
    inodes = {i for i in (netns.inode(n) for n in pods + infra) if i is not None}
    try:
        progress(f"deleting {len(pods)} pod and {len(infra)} node/infrastructure namespaces")
        delete_namespaces([n for n in infra if n != underlay] + pods)
        lifecycle.wait_gone(parents)
        lifecycle.stop_many(by_kind["daemon"] + [(p["pid"], p.get("start")) for p in rec.get("pids", [])],
                            grace=1.0)
        procs = []  # every container an agent started, in its journal: those of an agent that was not running
        for node in node_names:
            procs += [(pid, started) for _sandbox, pid, started in read_journal(paths, node)]
        dying += lifecycle.kill_many(procs)
        late = sorted(set(pod_namespaces(lab, store)) - set(pods))  # a pod a dying agent was still making
        inodes |= {i for i in (netns.inode(n) for n in late) if i is not None}
        delete_namespaces(late + [underlay])
        components.teardown_all(lab, paths)
        lifecycle.wait_gone(dying)
        shutil.rmtree(paths.root, ignore_errors=True)
        if ul_fd is not None and not _wait_released([ul_fd], set(), timeout):
            _report(progress, inodes)
    finally:
        if ul_fd is not None:
            os.close(ul_fd)
    return True


def _report(progress: Progress, inodes: set[int]) -> None:
    for pid, comm in holders(inodes):
        progress(f"warning: process {pid} ({comm}) is still inside a lab namespace; it keeps it alive")
