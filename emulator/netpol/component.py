"""NetworkPolicy enforcement as a lab component: one enforcer per node, the topology's policies in the store.

A lab enforces NetworkPolicy when its topology has a ``networkPolicies:`` section (``[]`` is enough): flannel
alone does not, and a cluster without an enforcer silently ignores every policy — the classic surprise. ``wanted``
validates the section (a mistake stops ``up`` before anything exists, naming ``networkPolicies[i]...``).
``start`` (after the nodes exist, before the agents) checks nftables and br_netfilter and stores the policies;
``ready`` (every pod Running) starts one enforcer per node in the node's namespace, each recorded in the lab's
process journal before it runs, and waits until every one has applied the current state, so when ``up``
returns every policy is live. Starting them once the pods run makes each enforcer's first sync a full one over
all the pods, instead of thousands of small ones racing the agents for the CPU while a large lab comes up
(10 × 100 pods: ``up`` 7.9 s with the enforcers started first, see ``scripts/bench_netpol.py``); the price is
that policies are not yet enforced while ``up`` is still starting pods.

A lab started without the section gets its enforcers the first time a policy is applied (``ensure_running``,
from ``apply``), and says so. ``wait_synced`` is how callers know a change (a policy, a label, a new pod) is live
on every node before they probe.
"""
from __future__ import annotations

import os
import shutil

from emulator.errors import MissingDependencyError
from emulator.lab.components import BuildContext, Component
from emulator.netlink import netns
from emulator.netpol import cluster, enforcer, parse
from emulator.proc.daemon import Daemon, spawn_many
from emulator.proc.lifecycle import alive
from emulator.state.paths import LabPaths
from emulator.state.store import Store, read_json
from emulator.topology import names
from emulator.topology.model import Topology

SECTION = "networkPolicies"
TITLE = "kube-network-po"  # the DaemonSet's container is kube-network-policies; comm holds 15 characters


def policies_of(topo: Topology):
    extra = dict(topo.extra)
    return parse.from_topology(extra.get(SECTION), topo.source, topo.namespace_names) \
        if SECTION in extra else None


def check_dependencies(node_ns: str) -> None:
    if shutil.which("nft") is None and not _has_libnftables():
        raise MissingDependencyError("NetworkPolicy enforcement needs nftables; install it with "
                                     "`apt-get install nftables`", obj="nft")
    with netns.entered(node_ns):
        bridged = os.path.exists("/proc/sys/net/bridge/bridge-nf-call-iptables")
    if not bridged:
        raise MissingDependencyError("the br_netfilter kernel module is not loaded (same-node pod traffic must pass "
                                     "netfilter to be policed); load it with `modprobe br_netfilter`",
                                     obj="br_netfilter")


def _has_libnftables() -> bool:
    import ctypes.util
    return ctypes.util.find_library("nftables") is not None


def start_enforcers(lab: str, nodes: list[str]) -> None:
    """One enforcer per node, forked side by side, each recorded in the lab's journal before it runs."""
    paths = LabPaths(lab)
    spawn_many([Daemon(enforcer.Enforcer(lab, n).run, enforcer.log_path(paths, n), paths.proc_journal,
                       f"kube-network-policies of {n}", names.node_ns(lab, n), TITLE) for n in nodes])


def running(paths: LabPaths, node: str) -> bool:
    st = read_json(enforcer.status_path(paths, node)) or {}
    return bool(st.get("pid")) and alive(st["pid"], st.get("start"))


def wait_synced(paths: LabPaths, store: Store, nodes: list[str], timeout: float = 20) -> None:
    """Wait until every node's enforcer has applied every change made to the store so far."""
    target = cluster.ClusterReader(store).versions()
    cluster.wait_versions(lambda n: read_json(enforcer.status_path(paths, n)), nodes, target, timeout, paths.lab)


def ensure_running(lab: str, nodes: list[str], progress=lambda s: None) -> bool:
    """Start the enforcers of a lab that has none (True if they had to be started)."""
    paths = LabPaths(lab)
    missing = [n for n in nodes if not running(paths, n)]
    if not missing:
        return False
    check_dependencies(names.node_ns(lab, missing[0]))
    start_enforcers(lab, missing)
    progress(f"NetworkPolicy: no enforcer was running on {', '.join(missing)} (the topology has no "
             f"{SECTION}: section); started kube-network-policies there")
    cluster.wait_versions(lambda n: read_json(enforcer.status_path(paths, n)), missing,
                          (0,) * len(cluster.WATCHED), 20, lab)
    return True


class NetworkPolicyComponent(Component):
    name = "networkpolicy"
    order = 60

    def wanted(self, topo: Topology) -> bool:
        return policies_of(topo) is not None

    def start(self, ctx: BuildContext) -> None:
        topo = ctx.topo
        pols = policies_of(topo) or ()
        check_dependencies(names.node_ns(topo.name, topo.nodes[0].name))
        for p in pols:
            cluster.put_policy(ctx.store, p)
        ctx.progress(f"networkpolicy: {len(pols)} policies stored; kube-network-policies starts once the pods run")

    def ready(self, ctx: BuildContext) -> None:
        nodes = [n.name for n in ctx.topo.nodes]
        start_enforcers(ctx.topo.name, nodes)
        wait_synced(ctx.paths, ctx.store, nodes, timeout=60)
        ctx.progress(f"networkpolicy: kube-network-policies on {len(nodes)} nodes, every policy live")
