"""bgp mode: real BIRD per node, routes learned (proto bird), withdrawn and relearned on time, and no BIRD
outliving its lab.

One 3-node lab serves the module; every test that breaks something repairs it in a ``finally`` so the next
test starts from a converged lab. Timelines are measured on the kernels' routing tables (netlink, polled every
5 ms) and proven with pings between pods; they start at the event itself (BIRD's death, the new BIRD's start,
the heal), never before a CLI that causes it, whose start alone takes seconds on a loaded machine. The pod matrix of bgp mode (reachability without NAT) is proven with
the other modes' in test_core_lab.
"""
from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from emulator import faults
from emulator.check import probes as probe
from emulator.errors import MissingDependencyError
from emulator.lab.api import Lab
from emulator.netlink import netns
from emulator.proc.lifecycle import alive
from emulator.routing import bgp
from emulator.state import record
from emulator.topology.loader import loads
from tests.integration.conftest import ROOT, lab_fixture, podlab, podlab_argv, podlab_env, three_node_text, unique_name
from tests.integration.reachability import (bgp_sessions, bgp_timeline_within, expected, reach_matrix, route_to,
                                            started_wall, wait_for)

NODES = ["node-1", "node-2", "node-3"]

lab = lab_fixture(three_node_text(1, "pause"), "bgp")  # reachability by pings: one pause pod per node


def lab_processes(lab: str) -> list[int]:
    """PIDs whose command line names the lab's state directory (BIRD is started with its config path there)."""
    out = []
    for d in os.listdir("/proc"):
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                if d.isdigit() and f"/labs/{lab}/nodes/".encode() in f.read():
                    out.append(int(d))
        except OSError:
            continue
    return out


def bird_routes(lab: Lab, node: str) -> dict[str, dict]:
    routes = json.loads(lab.node(node).exec(["ip", "-j", "route"]).stdout)
    return {r["dst"]: r for r in routes}


def daemons(lab: Lab) -> dict[str, dict]:
    return {e.what.rsplit(" ", 1)[1]: {"pid": e.pid, "start": e.start, "what": e.what}
            for e in record.processes(lab.name) if e.what.startswith("bgp daemon") and alive(e.pid, e.start)}


def relearned(lab: Lab, t0: float) -> None:
    """Every session up and every route back within 3 s of ``t0`` (a Unix time), by BIRD's clock; then proven
    with pings."""
    bgp_timeline_within(lab, t0, budget=3.0, up=True)
    got = reach_matrix(lab)
    assert got == expected(NODES, lambda a, b: False), got


def test_every_cross_node_route_is_learned_from_bird(lab: Lab) -> None:
    for n in lab.nodes:
        routes = bird_routes(lab, n.name)
        for other in lab.nodes:
            if other.name == n.name:
                continue
            r = routes[other.pod_cidr]
            assert (r["protocol"], r["gateway"], r["dev"]) == ("bird", other.ip, "eth0"), r
        static = [d for d, r in routes.items() if r.get("protocol") == "boot"]
        assert not static, f"{n.name} holds static routes {static}"


def test_one_bird_per_node_recorded_and_inside_the_node_namespace(lab: Lab) -> None:
    ds = daemons(lab)
    assert sorted(ds) == NODES
    for node, p in ds.items():
        assert alive(p["pid"], p["start"])
        assert os.stat(f"/proc/{p['pid']}/ns/net").st_ino == netns.inode(lab.node(node).netns)
        with open(f"/proc/{p['pid']}/comm") as f:
            assert f.read().strip() == "bird"
        files = bgp.files_of(lab.name, node)
        assert files.conf.exists() and files.ctl.is_socket() and int(files.pid.read_text()) == p["pid"]


def test_status_get_and_describe_show_sessions_and_origins(lab: Lab) -> None:
    r = podlab("--lab", lab.name, "bgp", "status", "-o", "json")
    assert r.returncode == 0, r.stderr
    items = {i["node"]: i for i in json.loads(r.stdout)["items"]}
    for node in NODES:
        rep = items[node]
        assert rep["bird"]["running"] and rep["asn"] == 64512
        assert sorted(s["peerNode"] for s in rep["sessions"]) == sorted(set(NODES) - {node})
        assert all(s["bgpState"] == "Established" and s["uptimeSeconds"] >= 0 for s in rep["sessions"])
        assert sorted(x["from"] for x in rep["routes"]) == sorted(set(NODES) - {node})
    text = podlab("--lab", lab.name, "bgp", "status", "node-1").stdout
    assert "Established" in text and "LEARNED ROUTES" in text and "node-1" in text
    nodes = podlab("--lab", lab.name, "get", "nodes").stdout
    assert nodes.count("bgp (2/2 BGP sessions up)") == 3, nodes
    desc = podlab("--lab", lab.name, "describe", "node", "node-1").stdout
    rows = [ln.split() for ln in desc.splitlines() if ln.strip().startswith(("node-2 ", "node-3 "))]
    assert [row[-1] for row in rows[:2]] == ["bird", "bird"], desc
    d = json.loads(podlab("--lab", lab.name, "describe", "node", "node-2", "-o", "json").stdout)
    assert {r["origin"] for r in d["routesToOtherNodes"]} == {"bird"} and len(d["bgp"]["sessions"]) == 2


def test_stopping_bird_withdraws_at_once_and_start_restores(lab: Lab) -> None:
    slice2 = lab.node("node-2").pod_cidr
    old = daemons(lab)["node-2"]
    t0 = time.time()
    try:
        assert bgp.stop_daemon(lab.name, "node-2") == old["pid"]
        took = bgp_timeline_within(lab, t0, budget=1.0, up=False, node="node-2")
        assert took <= 1.0, f"{slice2} still held {took}s after the stop"
        assert route_to(lab, "node-2", "node-1") is None  # a clean stop removes BIRD's own kernel routes
        assert route_to(lab, "node-1", "node-3") is not None
        assert "node-2" not in daemons(lab)
        got = reach_matrix(lab)
        assert got == expected(NODES, lambda a, b: "node-2" in (a, b)), got
    finally:
        pid, started = bgp.start_daemon(lab.name, "node-2")
    assert started and pid != old["pid"] and daemons(lab)["node-2"]["pid"] == pid
    relearned(lab, started_wall(pid))


def test_killed_bird_is_withdrawn_by_its_peers_and_cleans_up_on_restart(lab: Lab) -> None:
    old = daemons(lab)["node-3"]
    try:
        cli = subprocess.Popen(podlab_argv("--lab", lab.name, "bgp", "stop", "node-3", "--kill"), cwd=ROOT,
                               env=podlab_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # the timeline starts when BIRD is seen dead, not at the CLI's start (seconds of imports under load)
        assert wait_for(lambda: not alive(old["pid"], old["start"]), timeout=60) is not None
        t0 = time.time()
        took = bgp_timeline_within(lab, t0, budget=1.5, up=False, node="node-3")
        out, err = cli.communicate(timeout=60)
        assert cli.returncode == 0 and "killed" in out, err
        # the peers saw the TCP session close (the kernel closes a killed process's sockets) ...
        infos = {a: info for (a, b), (_st, _since, info) in bgp_sessions(lab).items() if b == "node-3"}
        assert not any("Hold timer" in i for i in infos.values()), f"peers waited out the hold time: {infos}"
        assert took <= 1.5, f"peers kept the route of a killed BIRD ({took}s after it died)"
        stale = route_to(lab, "node-3", "node-1")
        assert stale is not None and stale.origin == "bird"  # nobody removed the dead daemon's own routes
        assert "BIRD not running" in podlab("--lab", lab.name, "get", "nodes", "node-3").stdout
    finally:
        r = podlab("--lab", lab.name, "bgp", "start", "node-3")
    assert r.returncode == 0 and "started" in r.stdout, r.stderr
    relearned(lab, started_wall(daemons(lab)["node-3"]["pid"]))


def test_cut_node_is_unreachable_withdrawn_and_relearned_after_heal(lab: Lab) -> None:
    try:
        t0 = time.time()
        assert faults.fail_node(lab, "node-2")
        withdrawn = bgp_timeline_within(lab, t0, budget=4.0, up=False, node="node-2")
        assert withdrawn <= 4.0, "hold time 3 s: peers must withdraw node-2's slice"
        assert route_to(lab, "node-2", "node-1") is None  # check link: node-2 dropped its sessions itself
        assert lab.node("node-2").ready  # the agent kept running
        got = reach_matrix(lab)
        assert got == expected(NODES, lambda a, b: "node-2" in (a, b)), got
    finally:
        t1 = time.time()
        faults.heal_node(lab, "node-2")
    relearned(lab, t1)


def test_cut_link_between_two_nodes_only(lab: Lab) -> None:
    try:
        r = podlab("--lab", lab.name, "fail", "link", "node-1", "node-2")
        assert r.returncode == 0, r.stderr
        got = reach_matrix(lab)
        assert got == expected(NODES, lambda a, b: {a, b} == {"node-1", "node-2"}), got
        assert wait_for(lambda: route_to(lab, "node-1", "node-2") is None, timeout=6) is not None
        assert route_to(lab, "node-3", "node-2") is not None and route_to(lab, "node-3", "node-1") is not None
    finally:
        r = podlab("--lab", lab.name, "heal", "link", "node-2", "node-1")
        t1 = time.time()  # healed by now: the CLI's own start (seconds under load) is not BGP's time
    assert r.returncode == 0 and "healed" in r.stdout, r.stderr
    relearned(lab, t1)


def test_missing_bird_fails_validation_touching_nothing(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = unique_name("b")
    def mine() -> list[str]:  # the lab's own namespaces (other labs, of other tests or sessions, come and go)
        return [n for n in netns.list_names() if n.startswith(f"{name}-")]
    src = tmp_path / "t.yaml"
    src.write_text(three_node_text(pods_per_node=1, image="pause"))
    r = podlab("up", str(src), "--routing", "bgp", "--name", name, env={"PODLAB_BIRD": "/nonexistent/bird"})
    assert r.returncode == 5 and "apt-get install bird2" in r.stderr, (r.returncode, r.stderr)
    assert record.load(name) is None and mine() == []
    monkeypatch.setenv("PODLAB_BIRD", "/nonexistent/bird")
    with pytest.raises(MissingDependencyError):
        Lab.up(loads(three_node_text(1, "pause"), source="<test>", name=name, routing="bgp"))
    assert record.load(name) is None and mine() == []


def test_reflector_layout_routes_via_the_originating_node(make_lab) -> None:
    text = three_node_text(pods_per_node=1).replace("name: x\n", "name: x\nbgp: {mode: reflector}\n")
    lab = make_lab(text, routing="bgp")
    n1, n2 = lab.node("node-1"), lab.node("node-2")
    routes = bird_routes(lab, "node-3")
    assert (routes[n2.pod_cidr]["protocol"], routes[n2.pod_cidr]["gateway"]) == ("bird", n2.ip)  # reflected
    assert (routes[n1.pod_cidr]["protocol"], routes[n1.pod_cidr]["gateway"]) == ("bird", n1.ip)
    reps = {n: bgp.node_report(lab.name, n) for n in NODES}
    assert [s["peerNode"] for s in reps["node-3"]["sessions"]] == ["node-1"]
    learned = {r["prefix"]: (r["from"], r["viaNode"]) for r in reps["node-3"]["routes"]}
    assert learned == {n1.pod_cidr: ("node-1", "node-1"), n2.pod_cidr: ("node-1", "node-2")}, learned
    assert len(reps["node-1"]["sessions"]) == 2
    src = next(p for p in lab.pods if p.node == "node-2")
    dst = next(p for p in lab.pods if p.node == "node-3")
    assert probe.wait_http(lab, "node/node-3", dst.ip)
    assert probe.observed_source(lab, src.name, dst.ip) == src.ip


def test_down_ends_every_bird_also_restarted_ones(lab: Lab) -> None:
    """Runs last: it removes the module's lab, whose BIRDs the tests above stopped, killed and started again."""
    birds = [p["pid"] for p in daemons(lab).values()]
    assert len(birds) == 3 and set(birds) <= set(lab_processes(lab.name))
    assert lab.down()
    left = lab_processes(lab.name)
    assert not left and not any(alive(p, None) for p in birds), f"processes of lab {lab.name} outlived it: {left}"
