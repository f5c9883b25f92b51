"""``up``: from a validated topology to a running lab, or to nothing at all.

Steps: refuse if the lab exists or a namespace name is taken (before touching anything); write the state record
and open the lab's process journal (every process started from here on records itself there before it runs);
build the underlay namespace and its bridge; create every node namespace with its uplink in one batch; apply each
node's desired state (base + routing mode) with the idempotent applier; write each node's files (CNI config,
flannel's subnet.env); put nodes and pods into the store; start one agent per node (forked by the agents'
launcher, ``emulator.agent.launcher``, a small interpreter started right after the journal so that it imports
while the network is built: the agents do not inherit ``up``'s heap); wait until every pod reports. Any exception on the way removes everything recorded so far
(``teardown.destroy``) and is raised as a BuildError naming the step.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from typing import Callable

from emulator import routing
from emulator.routing.base import subnet_env, underlay_cable
from emulator.agent import launcher as agent_launcher
from emulator.cni.spec import bridge_conflist
from emulator.errors import AlreadyUp, BuildError, LabExistsError, LabTimeoutError, NamespaceConflictError
from emulator.lab import components, teardown
from emulator.state import events, manifests, record
from emulator.state.paths import LabPaths, ensure_state_root
from emulator.netlink import applier, msgs, netns
from emulator.netlink.rtnl import Rtnl
from emulator.state.store import Store, write_atomic
from emulator.topology import names
from emulator.topology.model import Node, Topology

Progress = Callable[[str], None]


def check_new(topo: Topology) -> None:
    existing = record.load(topo.name)
    if existing is not None:
        if record.crashed(existing):
            raise LabExistsError(f"lab {topo.name} was left half-made by a crashed run; "
                                 f"remove it with `podlab down {topo.name}` or `podlab cleanup`", obj=topo.name)
        if existing.get("fingerprint") == record.fingerprint(topo):
            raise AlreadyUp(f"lab {topo.name} is already up; nothing changed", obj=topo.name)
        raise LabExistsError(f"lab {topo.name} exists with a different topology ({existing.get('source')}); "
                             f"run `podlab down {topo.name}` first or choose another name with --name",
                             obj=topo.name)
    planned = record.infra_namespaces(topo) + [names.pod_ns(topo.name, p.name, p.namespace) for p in topo.pods]
    taken = [n for n in planned if netns.exists(n)]
    if taken:
        raise NamespaceConflictError(
            f"network namespace(s) {', '.join(taken[:5])} already exist and lab {topo.name} does not own them; "
            f"choose another lab name with --name", obj=taken[0])


def write_node_files(paths: LabPaths, topo: Topology, node: Node) -> None:
    root = paths.node_root(node.name)
    for d in (paths.cni_conf_dir(node.name), paths.cni_bin_dir(node.name), paths.ipam_dir(node.name),
              paths.flannel_env(node.name).parent, paths.agent_log(node.name).parent):
        d.mkdir(parents=True, exist_ok=True)
    paths.flannel_env(node.name).write_text(subnet_env(topo, node))
    pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__ + "/..")))
    # podlab's own plugins, ahead of /usr/lib/cni in the node's CNI path: on a ``cni: reference`` node only the
    # link shaper (podlab's), so the conflist's bridge and loopback are the real ones, not podlab's namesakes
    own = ("podlab-link",) if node.cni == "reference" else ("bridge", "loopback", "podlab-link")
    for ptype in own:
        exe = paths.cni_bin_dir(node.name) / ptype
        exe.write_text(f"#!/bin/sh\n# podlab's built-in {ptype} CNI plugin\nPYTHONPATH={pkg_parent}"
                       f"${{PYTHONPATH:+:$PYTHONPATH}} exec {sys.executable} -m emulator.cni.plugin {ptype}\n")
        exe.chmod(0o755)
    if node.cni != "none" and node.runtime != "docker":  # a Docker host runs no kubelet: no CNI configuration
        install_cni_config(paths, topo.pod_mtu, node)
    (root / "README").write_text(f"Files of node {node.name} of lab {topo.name}, at the paths a real node uses.\n")


def install_cni_config(paths: LabPaths, mtu: int, node: Node) -> None:
    conf = bridge_conflist(names.CNI_NETWORK, names.CNI_BRIDGE, str(node.pod_cidr), mtu,
                           str(paths.ipam_dir(node.name)))
    d = paths.cni_conf_dir(node.name)
    d.mkdir(parents=True, exist_ok=True)
    write_atomic(d / "10-flannel.conflist", json.dumps(conf, indent=2) + "\n")


def local_view(topo: Topology, local: frozenset[str] | None) -> Topology:
    """The part of ``topo`` this machine builds: every node when ``local`` is None, else the nodes named in
    ``local`` and their pods (a lab spanning several hosts, ``emulator.hosts``). Routing state is still computed
    from the whole topology: a node routes to every other node, wherever it runs."""
    if local is None:
        return topo
    return dataclasses.replace(topo, nodes=tuple(n for n in topo.nodes if n.name in local),
                               pods=tuple(p for p in topo.pods if p.node in local))


def build_network(topo: Topology, progress: Progress, local: frozenset[str] | None = None) -> None:
    """Underlay, nodes and routing (everything but pods); only the ``local`` nodes if given."""
    ul = names.underlay_ns(topo.name)
    mine = local_view(topo, local).nodes
    with netns.create(ul, then=lambda: Rtnl(label=ul)) as urt:
        urt.batch([msgs.link_add_bridge(names.UNDERLAY_BRIDGE, topo.underlay.mtu)])
        for n in mine:
            netns.create(names.node_ns(topo.name, n.name))
        applier.plug(urt, [underlay_cable(topo, n.name, names.node_ns(topo.name, n.name), names.NODE_UPLINK)
                           for n in mine])
    progress(f"underlay {topo.underlay.cidr} and {len(mine)} nodes created")
    for n in mine:
        ns = names.node_ns(topo.name, n.name)
        with Rtnl.in_ns(ns) as rt:
            applier.apply(rt, routing.full_node_state(topo, n), ns_name=ns)
    progress(f"routing mode {topo.routing} applied on {len(topo.nodes)} nodes")


def wait_pods(store: Store, topo: Topology, progress: Progress, timeout: float) -> list[dict]:
    """Wait until every pod is Running (or Pending for a reason the node states); return the stragglers.

    An agent writes a pod's status once the pod is Running or has failed with a reason, so a directory listing
    tells how far the agents are; each status file is parsed once, when it appears (and again only while it
    says Pending), so the last poll has almost nothing left to read.
    """
    want = {(p.namespace, p.name) for p in topo.pods}
    deadline = time.monotonic() + timeout
    final: dict[tuple[str, str], dict] = {}  # Running, or Pending with the reason the agent gives
    shown = -1
    spaces = sorted({p.namespace for p in topo.pods})
    while True:
        present = want.intersection(k for ns in spaces for k in store.keys("pods", status=True, ns=ns))
        for ns, name in present.difference(final):
            st = store.get_status("pods", name, ns)
            if st is not None and (st.get("phase") == "Running" or st.get("message")):
                final[(ns, name)] = st
        if len(present) != shown:
            shown = len(present)
            progress(f"pods reported: {shown}/{len(want)}")
        if len(final) >= len(want):
            running = sum(1 for st in final.values() if st.get("phase") == "Running")
            progress(f"pods Running: {running}/{len(want)}")
            return [st for st in final.values() if st.get("phase") != "Running"]
        if time.monotonic() > deadline:
            raise LabTimeoutError(f"only {len(present)} of {len(want)} pods reported within {timeout:.0f}s",
                                obj=topo.name)
        time.sleep(0.05)


def up(topo: Topology, progress: Progress = lambda s: None, timeout: float | None = None, *,
       local: frozenset[str] | None = None, after_network: Callable[[], None] | None = None,
       record_extra: dict | None = None) -> list[dict]:
    """Bring the lab up; return the pods left Pending (with their reasons). Raises on failure, after rollback.

    A host's part of a multi-host lab (``emulator.hosts.serve``) passes ``local`` (its nodes), ``after_network``
    (it stretches the underlay once the bridge exists) and ``record_extra`` (kept in the lab's record)."""
    full = topo
    topo = local_view(full, local)
    check_new(topo)
    mode = routing.get(topo.routing)
    mode.check_available()
    parts = components.active(topo)
    paths = LabPaths(topo.name)
    ensure_state_root()
    rec = {**record.new(topo, extra_namespaces=[n for c in parts for n in c.namespaces(topo)]),
           **(record_extra or {})}
    record.create(rec)
    step = "start"
    agent_nodes = [n.name for n in topo.nodes if n.runtime != "docker"]  # Docker hosts run no kubelet
    launcher: agent_launcher.Launcher | None = None
    try:
        if agent_nodes:
            launcher = agent_launcher.start(topo.name, [m for c in parts for m in c.preload])
        step = "network"
        build_network(full, progress, local)
        if after_network is not None:
            step = "underlay stretch"
            after_network()
        step = "node files"
        store = Store(paths.store)
        store.init()
        store.put_many("namespaces", [(ns.name, manifests.namespace_manifest(ns))
                                      for ns in manifests.lab_namespaces(topo)])
        for n in topo.nodes:
            write_node_files(paths, full, n)
        store.put_many("nodes", [(n.name, manifests.node_manifest(topo, n)) for n in topo.nodes])
        store.put_many("pods", [(p.name, manifests.pod_manifest(p)) for p in topo.pods])  # one lock, one journal write
        for p in topo.pods:
            if p.unschedulable:  # the scheduler's verdict (topology.hostports): no kubelet ever sees the pod
                store.put_status("pods", p.name, manifests.unschedulable_status(p), p.namespace)
                events.emit(paths.store, "pod", p.name, "FailedScheduling", p.unschedulable, "default-scheduler",
                            "Warning", ns=p.namespace)
        step = f"routing daemons ({topo.routing})"
        for n in topo.nodes:  # each daemon records itself in the lab's process journal before it runs
            mode.start(full, n, str(paths.node_root(n.name)))
        ctx = components.BuildContext(topo, paths, store, progress, full=full if local is not None else None)
        if launcher is not None:
            ctx.data["launcher"] = launcher  # components fork their daemons there (``Component.preload``)
        for c in parts:
            step = f"component {c.name}"
            c.start(ctx)
        step = "agents"
        if launcher is not None:
            launcher.spawn(agent_nodes)
        step = "pods"
        stuck = wait_pods(store, topo, progress, timeout or 30.0 + 0.05 * len(topo.pods))
        step = f"routing ({topo.routing}) ready"
        mode.wait_ready(topo, progress)
        for c in parts:
            step = f"component {c.name} (ready)"
            c.ready(ctx)
        record.set_status(rec, "ready")
        return stuck
    except BaseException as e:
        progress(f"failed at step {step}: {e}; rolling back")
        if launcher is not None:
            launcher.close()
        teardown.destroy(topo.name)
        if isinstance(e, Exception):
            raise BuildError(f"bringing up lab {topo.name} failed ({step}): {e}; everything it created was "
                             f"removed", obj=getattr(e, "obj", None) or topo.name) from e
        raise
