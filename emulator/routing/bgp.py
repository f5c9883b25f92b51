"""Calico-style ``bgp`` routing: a real BIRD 2 per node learns the other nodes' slices over iBGP.

podlab installs no route for a remote slice in this mode: ``node_state`` is empty apart from the managed scope
(so a static route left by another mode is removed), and the applier only ever touches routes of protocol
``boot`` — BIRD's routes are protocol ``bird`` (12), so the applier and BIRD never fight. Every cross-node route a
node holds was learned from a peer, which is what lets a lab show routes being withdrawn and relearned.

Per node, under its state directory at the paths Debian uses: ``etc/bird/bird.conf`` (rendered by ``bird.render``),
``run/bird/bird.ctl`` (the control socket ``birdc -s`` and ``podlab bgp status`` talk to), ``run/bird/bird.pid`` and
``var/log/bird.log``. BIRD runs in the foreground (``-f``) so the PID that ``posix_spawn`` returns — from a thread
that entered the node's namespace — is BIRD itself (behind the shell lines of ``emulator.proc.journal.wrap``,
which record it in the lab's process journal as ``bgp daemon of <node>`` before it execs); teardown ends it by
PID and start time, ``bgp stop`` ends the live entry's process and ``bgp start`` appends a new one.

``up`` waits for convergence (``wait_ready``): after the pods are Running it holds until every node's kernel holds
a ``proto bird`` route for every other node's slice. ``node_report`` is the live BGP state (sessions, learned
routes) as data, which ``get nodes``, ``describe node`` and ``bgp status`` render.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from typing import Callable

from emulator.proc import lifecycle
from emulator.proc import spawn as procspawn
from emulator.errors import LabTimeoutError, NotFoundError, PodlabError
from emulator.netlink import netns
from emulator.netlink.desired import NsState
from emulator.routing import bird, held_routes
from emulator.routing.birdfiles import BirdFiles, daemon_label, files_of  # noqa: F401  (re-exported)
from emulator.routing.base import RoutingMode
from emulator.state import record
from emulator.state.paths import LabPaths
from emulator.topology import names
from emulator.topology.model import Node, Topology

MAX_SOCKET_PATH = 107


def write_config(topo: Topology, node: Node, f: BirdFiles) -> None:
    s = bird.settings(topo)
    for d in (f.conf.parent, f.ctl.parent, f.log.parent):
        d.mkdir(parents=True, exist_ok=True)
    if len(str(f.ctl)) > MAX_SOCKET_PATH:
        raise PodlabError(f"BIRD control socket path {f.ctl} is longer than {MAX_SOCKET_PATH} characters; use a "
                          f"shorter lab name or PODLAB_STATE_DIR", obj=str(f.ctl))
    f.conf.write_text(bird.render(topo, node, s))
    meta = {"asn": s.asn, "mode": s.mode, "reflectors": list(s.reflectors), "routerId": str(node.ip),
            "timers": asdict(s.timers), "peers": [asdict(p) for p in bird.peers(topo, node, s)],
            "nodeIPs": {str(o.ip): o.name for o in topo.nodes}}
    f.meta.write_text(json.dumps(meta, indent=2) + "\n")


def spawn(lab: str, node: str, f: BirdFiles) -> tuple[int, int | None]:
    """Start BIRD inside ``node``'s namespace on its rendered config; return (pid, start time)."""
    exe = bird.find_bird()
    if f.ctl.exists():
        f.ctl.unlink()
    argv = [exe, "-f", "-c", str(f.conf), "-s", str(f.ctl), "-P", str(f.pid)]
    fd = netns.open_fd(names.node_ns(lab, node))
    try:
        return procspawn.spawn(fd, exe, argv, f.log, {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
                               journal=LabPaths(lab).proc_journal, what=daemon_label(node))
    finally:
        os.close(fd)


class Bgp(RoutingMode):
    name = "bgp"

    def node_state(self, topo: Topology, node: Node) -> NsState:
        return NsState(managed_prefixes=(str(topo.pod_cidr),))

    def check_available(self) -> None:
        bird.find_bird()

    def start(self, topo: Topology, node: Node, state_dir: str) -> list[int]:
        f = BirdFiles(state_dir)
        write_config(topo, node, f)
        return [spawn(topo.name, node.name, f)[0]]

    def wait_ready(self, topo: Topology, progress: Callable[[str], None]) -> None:
        waited = wait_converged(topo, timeout=10.0 + 0.5 * len(topo.nodes))
        n = len(topo.nodes)
        progress(f"BGP converged: {n} nodes hold {n * (n - 1)} learned routes (waited {waited:.2f}s)")

    def node_report(self, lab: str, node: str) -> dict:
        return node_report(lab, node)


# -- live state --------------------------------------------------------------------------------------------------

def recorded_daemon(lab: str, node: str) -> dict | None:
    """The process journal's entry for ``node``'s BIRD ({pid, start, what}) if that process is still alive."""
    for e in reversed(record.processes(lab)):
        if e.what == daemon_label(node) and lifecycle.alive(e.pid, e.start):
            return {"pid": e.pid, "start": e.start, "what": e.what}
    return None


def node_report(name: str, node: str) -> dict:
    """Sessions (state, uptime) and learned routes of ``node``'s BIRD, from its control socket."""
    f = files_of(name, node)
    meta = json.loads(f.meta.read_text()) if f.meta.exists() else {}
    by_ip = meta.get("nodeIPs", {})
    daemon = recorded_daemon(name, node)
    rep: dict = {"node": node, "asn": meta.get("asn"), "mode": meta.get("mode"), "routerId": meta.get("routerId"),
                 "bird": {"running": False, "pid": daemon["pid"] if daemon else None, "socket": str(f.ctl)},
                 "sessions": [], "routes": []}
    try:
        with bird.BirdClient(str(f.ctl)) as c:
            protos, routes = c.protocols(), c.bgp_routes()
    except bird.BirdError as e:
        rep["bird"]["error"] = str(e)
        return rep
    rep["bird"]["running"] = True
    by_name = {p["name"]: p for p in meta.get("peers", [])}
    now = time.time()
    for p in protos:
        if p.proto != "BGP":
            continue
        peer = by_name.get(p.name, {})
        since = bird.since_epoch(p.since)
        state = bird.bgp_state(p)
        rep["sessions"].append({"name": p.name, "peer": peer.get("ip", ""), "peerNode": peer.get("node"),
                                "state": p.state, "bgpState": state, "since": p.since,
                                "uptimeSeconds": round(now - since, 3) if since and state == "Established" else None,
                                "info": p.info[len(state):].strip() if p.info.startswith(state) else p.info})
    for r in routes:
        rep["routes"].append({"prefix": r.prefix, "from": by_name.get(r.protocol, {}).get("node") or r.protocol,
                              "protocol": r.protocol, "via": r.via, "viaNode": by_ip.get(r.via), "dev": r.dev,
                              "best": r.primary})
    return rep


def missing_routes(topo: Topology) -> dict[str, list[str]]:
    """Per node, the other nodes' slices its kernel does not yet hold as a ``proto bird`` route."""
    out: dict[str, list[str]] = {}
    for n in topo.nodes:
        have = {str(r.dst) for r in held_routes.read(names.node_ns(topo.name, n.name))
                if r.protocol == held_routes.RTPROT_BIRD}
        want = [str(o.pod_cidr) for o in topo.nodes if o.name != n.name]
        lacking = [s for s in want if s not in have]
        if lacking:
            out[n.name] = lacking
    return out


def wait_converged(topo: Topology, timeout: float, progress: Callable[[str], None] = lambda s: None,
                   poll: float = 0.02) -> float:
    """Wait until every node holds every other node's slice from BIRD; return the seconds waited."""
    t0 = time.monotonic()
    while True:
        missing = missing_routes(topo)
        if not missing:
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            worst = sorted(missing.items())[:3]
            raise LabTimeoutError(f"BGP did not converge within {timeout:.0f}s: " + "; ".join(
                f"{n} lacks {', '.join(s)}" for n, s in worst) + " (see `podlab bgp status` and each node's "
                "var/log/bird.log)", obj=worst[0][0])
        time.sleep(poll)


# -- daemon control (``podlab bgp stop/start``) --------------------------------------------------------------------

def stop_daemon(lab: str, node: str, kill: bool = False) -> int | None:
    """Stop ``node``'s BIRD (TERM: BIRD tells its peers and removes its kernel routes; kill: SIGKILL, as a crash).
    Returns the PID stopped, or None if it was not running (the journal keeps the entry of the dead process,
    which its start time makes inert)."""
    entry = recorded_daemon(lab, node)
    if entry is None:
        return None
    lifecycle.stop(entry["pid"], entry.get("start"), grace=0.0 if kill else 3.0)
    try:
        os.waitpid(entry["pid"], os.WNOHANG)  # reap it if we are its parent (tests, the API)
    except ChildProcessError:
        pass  # not our child (the usual case: daemons are double-forked); nothing to reap
    return entry["pid"]


def start_daemon(lab: str, node: str) -> tuple[int, bool]:
    """Start ``node``'s BIRD again on its config; returns (pid, started) — started False if it was running."""
    entry = recorded_daemon(lab, node)
    if entry is not None:
        return entry["pid"], False
    rec = record.load(lab)
    if rec is None:
        raise PodlabError(f"lab {lab} has no record", obj=lab)
    if rec.get("routing") != "bgp":
        raise PodlabError(f"lab {lab} uses routing {rec.get('routing')}, not bgp: there is no BIRD to start",
                          obj=lab)
    if node not in rec.get("nodes", []):
        raise NotFoundError("node", node, f"lab {lab}", known=rec.get("nodes", []))
    f = files_of(lab, node)
    if not f.conf.exists():
        raise PodlabError(f"node {node} has no BIRD configuration at {f.conf}", obj=node)
    pid, _ = spawn(lab, node, f)
    # BIRD's shim writes its journal line itself, just before it execs BIRD: return once it has, so that what
    # `bgp start` reports is already in the lab's record (a bounded wait; the shim needs milliseconds)
    deadline = time.monotonic() + 5.0
    while not any(e.pid == pid for e in record.processes(lab)) and time.monotonic() < deadline:
        time.sleep(0.005)
    return pid, True
