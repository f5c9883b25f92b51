"""Removing a lab: exactly what its record and store say it owns, in an order that lets the kernel free it fast.

Order: stop the agents and every recorded process (by PID and start time, never by name), delete the pod
namespaces, wait until their veth ends have left the node namespaces (the kernel frees namespaces in a
background worker; the vanishing peer is how we see it done), then the node and underlay namespaces likewise,
then the state directory. Every step tolerates what is already gone, so ``down`` twice, or ``down`` after a crash
half-way through ``up``, is fine. Processes we did not start that still sit in a lab namespace are reported, not
killed.
"""
from __future__ import annotations

import os
import shutil
import time
from typing import Callable

from pyroute2.netlink.rtnl import RTM_GETLINK

from emulator.agent import containers
from emulator.agent.agent import read_pidfile
from emulator.agent.pods import read_journal, stop_processes
from emulator.lab import record
from emulator.lab.paths import LabPaths
from emulator.netlink import msgs, netns
from emulator.netlink.rtnl import Rtnl
from emulator.store import Store
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
    found = {names.pod_ns(lab, n) for n in store.names("pods")}
    for st in store.list("pods", status=True):
        sb = st.get("sandbox") or {}
        found.add(sb.get("netns") or names.pod_ns(lab, st.get("name", "")))
    return sorted(n for n in found if n and n != f"{lab}-")


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
    for node in node_names:
        pf = read_pidfile(paths, node)
        if pf:
            containers.stop(pf[0], pf[1], grace=1.0)
    statuses = list(store.list("pods", status=True))
    for st in statuses:
        stop_processes(st.get("containerStatuses", []))
    for node in node_names:  # containers a crashed agent started but never reported
        for _sandbox, pid, started in read_journal(paths, node):
            containers.stop(pid, started)
    for p in (rec or {}).get("pids", []):
        containers.stop(p["pid"], p.get("start"), grace=0.5)
    underlay = (rec or {}).get("underlay") or names.underlay_ns(lab)
    node_ns = [names.node_ns(lab, n) for n in node_names]
    infra = list(dict.fromkeys((rec or {}).get("namespaces") or [underlay] + node_ns))
    pods = pod_namespaces(lab, store)
    progress(f"deleting {len(pods)} pod namespaces")
    node_fds = [netns.open_fd(n) for n in node_ns if netns.exists(n)]
    ul_fd = netns.open_fd(underlay) if netns.exists(underlay) else None
    inodes = {i for i in (netns.inode(n) for n in pods + infra) if i is not None}
    try:
        for n in pods:
            netns.delete(n)
        if not _wait_released(node_fds, {names.NODE_UPLINK}, timeout):
            _report(progress, inodes)
        for fd in node_fds:
            os.close(fd)
        node_fds = []
        progress(f"deleting {len(infra)} node and infrastructure namespaces")
        for n in infra:
            netns.delete(n)
        if ul_fd is not None and not _wait_released([ul_fd], set(), timeout):
            _report(progress, inodes)
    finally:
        for fd in node_fds + ([ul_fd] if ul_fd is not None else []):
            os.close(fd)
    from emulator.lab import components
    components.teardown_all(lab, paths)
    shutil.rmtree(paths.root, ignore_errors=True)
    return True


def _report(progress: Progress, inodes: set[int]) -> None:
    for pid, comm in holders(inodes):
        progress(f"warning: process {pid} ({comm}) is still inside a lab namespace; it keeps it alive")
