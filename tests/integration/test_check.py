"""`podlab check` passes on a healthy lab and, for each fault injected here (never in the product), fails the
right check and names the culprit; JUnit output has the shape CI systems read.

The healthy run is the CLI's (``test_cli_exit_codes_and_junit_shape``); ``check.runner.run_lab`` on a healthy lab
is also what test_plugin_example's ``check()`` runs.
"""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from emulator import routing
from emulator.check import report, runner
from emulator.lab.api import Lab
from emulator.netlink import applier
from emulator.netlink.rtnl import Rtnl
from emulator.topology import names
from emulator.topology.loader import loads
from tests.integration.conftest import lab_fixture, podlab, three_node_text

TOPOLOGY = three_node_text(2, "pause")
lab = lab_fixture(TOPOLOGY, "vxlan")


def restore(lab: Lab) -> None:
    """Undo a fault: re-apply every node's desired state (the idempotent applier repairs routes)."""
    topo = loads(TOPOLOGY, source="<test>", name=lab.name, routing="vxlan")
    for n in topo.nodes:
        ns = names.node_ns(lab.name, n.name)
        with Rtnl.in_ns(ns) as rt:
            applier.apply(rt, routing.full_node_state(topo, n), ns_name=ns)


def result(rep, name):
    return next(c for c in rep.results if c.name == name)


def test_missing_route_is_pinpointed(lab: Lab) -> None:
    lab.node("node-1").exec(["ip", "route", "del", "10.244.2.0/24"], check=True)
    try:
        rep = runner.run_lab(lab, only=["pod-to-pod"])
        c = result(rep, "pod-to-pod")
        assert c.status == "FAIL" and "node-1 has no route to 10.244.2" in c.summary, report.text([rep])
        assert c.findings and all(f.culprit == "node-1" for f in c.findings)
        # both directions between node-1's and node-2's pods fail (the replies need the route too), nothing else;
        # the coredns pods of kube-system are pods of those nodes too (the matrix covers every pod of the network)
        node_of = {p.ref: p.node for p in lab.pods}
        assert all({node_of[e] for e in pair(f)} == {"node-1", "node-2"} for f in c.findings), c.findings
        # each finding carries the trace of its pair: the way there, and the way back when that one is whole
        for f in c.findings:
            src, dst = pair(f)
            assert f.trace.startswith(f"trace {src} → {dst}: tcp "), f.trace
            assert "PROBLEM: node-1 has no route to 10.244.2.0/24 (the pod CIDR of node-2)" in f.trace, f.trace
            assert (f"trace {dst} → {src}: tcp " in f.trace) == (node_of[src] == "node-2"), f.trace
        assert "PROBLEM: node-1 has no route" in report.text([rep])
    finally:
        restore(lab)
    assert runner.run_lab(lab, only=["pod-to-pod"]).ok


def pair(f) -> list[str]:
    """The (source, destination) pods a finding's subject names (``a → b (…)``)."""
    return f.subject.split(" (")[0].split(" → ")


def test_masquerade_between_pods_is_caught(lab: Lab) -> None:
    node = lab.node("node-2")
    node.exec(["iptables", "-t", "nat", "-A", "POSTROUTING", "-s", "10.244.0.0/16", "-j", "MASQUERADE"],
              check=True)
    try:
        rep = runner.run_lab(lab, only=["no-nat"])
        c = result(rep, "no-nat")
        assert c.status == "FAIL" and "NAT by node-2" in c.summary, report.text([rep])
        # node-2 masquerades what it routes out (to other nodes) and in (to its pods through cni0)
        node_of = {p.ref: p.node for p in lab.pods}  # (kube-system's coredns pods among them)
        assert c.findings and all("node-2" in {node_of[e] for e in pair(f)} and f.culprit.startswith("node-2")
                                  for f in c.findings), c.findings
        for f in c.findings:  # the trace shows the rule that does it
            assert re.search(r"node-2 +\S+ +SNAT 10\.244\.\d+\.\d+ → 10\.244\.\d+\.\d+ \(masquerade: the address "
                             r"\S+ gives it\) by iptables nat POSTROUTING", f.trace), f.trace
    finally:
        node.exec(["iptables", "-t", "nat", "-F", "POSTROUTING"], check=True)


def test_duplicate_ip_is_caught(lab: Lab) -> None:
    victim, thief = lab.pod("p1-1"), lab.pod("p3-2")
    thief.exec(["ip", "addr", "add", f"{victim.ip}/24", "dev", "eth0"], check=True)
    try:
        c = result(runner.run_lab(lab, only=["unique-pod-ips"]), "unique-pod-ips")
        assert c.status == "FAIL"
        dup = next(f for f in c.findings if f.subject == f"address {victim.ip}")
        assert dup.culprit == "pod p1-1, pod p3-2"
        assert any(f.subject == "pod p3-2" and victim.ip in f.observed for f in c.findings)  # outside its slice
    finally:
        thief.exec(["ip", "addr", "del", f"{victim.ip}/24", "dev", "eth0"], check=True)


def test_wrong_mtu_over_vxlan_is_caught(lab: Lab) -> None:
    pod = lab.pod("p2-1")
    pod.exec(["ip", "link", "set", "eth0", "mtu", "1500"], check=True)
    try:
        c = result(runner.run_lab(lab, only=["path-mtu"]), "path-mtu")
        assert c.status == "FAIL" and any("pod p2-1 (eth0 MTU 1500" in f.culprit for f in c.findings), c
        assert len([f for f in c.findings if f.culprit]) == 1
    finally:
        pod.exec(["ip", "link", "set", "eth0", "mtu", "1450"], check=True)


def test_cli_exit_codes_and_junit_shape(lab: Lab, tmp_path) -> None:
    ok = podlab("check", "-o", "junit", lab=lab)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    root = ET.fromstring(ok.stdout)
    assert root.tag == "testsuites"
    (suite,) = root.findall("testsuite")
    assert suite.get("name") == "podlab check (vxlan)" and int(suite.get("tests")) == len(suite.findall("testcase"))
    assert suite.get("failures") == "0" and float(suite.get("time")) > 0
    for case in suite.findall("testcase"):
        assert case.get("classname") == "podlab.vxlan" and case.get("name") and case.get("time") is not None
    passed = {c.get("name") for c in suite.findall("testcase") if c.find("skipped") is None}
    assert {"unique-pod-ips", "pod-to-pod", "no-nat", "path-mtu", "node-to-pod"} <= passed, passed
    lab.node("node-3").exec(["ip", "route", "del", "10.244.1.0/24"], check=True)
    try:
        junit = tmp_path / "out.xml"
        bad = podlab("check", "--junit-file", str(junit), lab=lab)
        assert bad.returncode == 1 and "FAIL" in bad.stdout and "node-3 has no route" in bad.stdout
        suite = ET.parse(junit).getroot().find("testsuite")
        failed = [c for c in suite.findall("testcase") if c.find("failure") is not None]
        # pod-to-pod, and — when kube-proxy on node-3 picks an endpoint behind the missing route (kube-dns's
        # coredns pod on node-1) — service-clusterip from node-3's pod: both name node-3
        got = [c.get("name") for c in failed]
        assert got[0] == "pod-to-pod" and set(got) <= {"pod-to-pod", "service-clusterip"}, got
        assert suite.get("failures") == str(len(failed))
        assert all("node-3" in c.find("failure").text for c in failed), [c.find("failure").text for c in failed]
    finally:
        restore(lab)
