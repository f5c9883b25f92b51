"""Failure injection in the static modes (vxlan, host-gw): the lab lesson is the contrast.

A static mode keeps its route to a node it can no longer reach (nobody withdraws it: traffic is blackholed), and
recovers the moment the path is back because nothing had to be relearned. bgp mode's behaviour (routes withdrawn
after the hold time, relearned after healing) is in test_bgp.py. One lab per mode serves the module; reachability
is measured node pair by node pair with pings between their pods, so one pause pod per node is enough.
"""
from __future__ import annotations

import json
import time

import pytest

from emulator import faults
from emulator.errors import PodlabError
from emulator.lab.api import Lab, run_in
from tests.integration.conftest import lab_fixture, podlab, three_node_text
from tests.integration.reachability import all_reachable_within, expected, reach_matrix, route_to

NODES = ["node-1", "node-2", "node-3"]
ORIGIN = {"vxlan": "onlink", "host-gw": "static"}

lab = lab_fixture(three_node_text(1, "pause"), ["vxlan", "host-gw"])


def test_failed_node_keeps_stale_routes_and_recovers_at_once(lab: Lab) -> None:
    mode = lab.record["routing"]
    try:
        r = podlab("--lab", lab.name, "fail", "node", "node-2")
        assert r.returncode == 0 and "stale" in r.stdout, r.stderr
        got = reach_matrix(lab)
        assert got == expected(NODES, lambda a, b: "node-2" in (a, b)), got
        for n in ("node-1", "node-3"):
            stale = route_to(lab, n, "node-2")
            assert stale is not None and stale.origin == ORIGIN[mode], (n, stale)  # still there, pointing nowhere
        assert lab.node("node-2").ready
        assert all(p.status["phase"] == "Running" for p in lab.pods if p.node == "node-2")
        link = json.loads(run_in(f"{lab.name}-underlay", ["ip", "-j", "link", "show", "node-2"]).stdout)[0]
        assert "UP" not in link["flags"] and link.get("ifalias", "").startswith("podlab: failed at ")
        listed = json.loads(podlab("--lab", lab.name, "faults", "-o", "json").stdout)["items"]
        assert [(f["kind"], f["nodes"]) for f in listed] == [("node", ["node-2"])]
    finally:
        r = podlab("--lab", lab.name, "heal", "node/node-2")  # the target grammar; `fail` above: TYPE NAME
        t1 = time.monotonic()  # healed by now: the CLI's own start (seconds on a loaded machine) is not the lab's
    assert r.returncode == 0 and "healed" in r.stdout, r.stderr
    assert all_reachable_within(lab, t1, budget=3.0) <= 3.0
    assert faults.list_faults(lab) == []


def test_cut_link_drops_one_pair_only(lab: Lab) -> None:
    mode = lab.record["routing"]
    try:
        assert faults.fail_link(lab, "node-1", "node-2")
        got = reach_matrix(lab)
        assert got == expected(NODES, lambda a, b: {a, b} == {"node-1", "node-2"}), got
        assert route_to(lab, "node-1", "node-2").origin == ORIGIN[mode]
        (cut,) = faults.list_faults(lab)
        assert cut.kind == "link" and cut.nodes == ("node-1", "node-2") and cut.dropped_packets > 0
        rules = run_in(f"{lab.name}-underlay", ["nft", "list", "table", "bridge", faults.TABLE]).stdout
        assert 'iifname "node-1" oifname "node-2"' in rules and 'iifname "node-2" oifname "node-1"' in rules
    finally:
        t1 = time.monotonic()
        assert faults.heal_link(lab, "node-2", "node-1")
    assert all_reachable_within(lab, t1, budget=3.0) <= 3.0
    assert faults.list_faults(lab) == []


def test_faults_are_idempotent_and_errors_name_the_node(lab: Lab) -> None:
    if lab.record["routing"] != "vxlan":
        pytest.skip("mode-independent; once is enough")
    try:
        assert faults.fail_node(lab, "node-3") and not faults.fail_node(lab, "node-3")
        assert faults.fail_link(lab, "node-1", "node-2") and not faults.fail_link(lab, "node-2", "node-1")
        assert {f.kind for f in faults.list_faults(lab)} == {"node", "link"}
        with pytest.raises(PodlabError) as e:
            faults.fail_node(lab, "node-9")
        assert e.value.obj == "node-9"
        with pytest.raises(PodlabError, match="two different nodes"):
            faults.fail_link(lab, "node-1", "node-1")
        r = podlab("--lab", lab.name, "heal", "all")
        assert r.returncode == 0 and "healed 2 faults" in r.stdout, r.stdout
        assert not faults.heal_node(lab, "node-3") and not faults.heal_link(lab, "node-1", "node-2")
        assert "no faults" in podlab("--lab", lab.name, "faults").stdout
    finally:
        faults.heal_all(lab)


def test_describe_node_shows_route_origins_and_faults(lab: Lab) -> None:
    mode = lab.record["routing"]
    try:
        faults.fail_link(lab, "node-1", "node-3")
        d = json.loads(podlab("--lab", lab.name, "describe", "node", "node-1", "-o", "json").stdout)
        assert d["routing"]["mode"] == mode and d["podCIDR"] == lab.node("node-1").pod_cidr
        assert {r["node"]: r["origin"] for r in d["routesToOtherNodes"]} == {"node-2": ORIGIN[mode],
                                                                            "node-3": ORIGIN[mode]}
        assert [f["nodes"] for f in d["faults"]] == [["node-1", "node-3"]]
        text = podlab("--lab", lab.name, "describe", "node", "node-1").stdout
        assert ORIGIN[mode] in text and "link node-1 <-> node-3 cut" in text and "eth0" in text
    finally:
        faults.heal_all(lab)


def test_faults_go_away_with_the_lab(make_lab) -> None:
    lab = make_lab(three_node_text(pods_per_node=1, image="pause"), routing="host-gw")
    faults.fail_node(lab, "node-1")
    faults.fail_link(lab, "node-2", "node-3")
    assert len(faults.list_faults(lab)) == 2
    assert lab.down()
    with pytest.raises(PodlabError):
        faults.list_faults(Lab(lab.name))
