"""A worked example of podlab's pytest plugin — what a user's regression test of a pod network looks like.

The marker names a topology and the routing modes; ``podlab_lab`` is the lab, built once per module and mode
and always torn down. Run: ``sudo python3 -m pytest tests/integration/test_plugin_example.py -v``.
"""
import pytest

pytestmark = pytest.mark.podlab(topology="../../topologies/vxlan-3node.yaml", routing=["vxlan", "host-gw"])


def test_pods_reach_each_other_without_nat(podlab_lab):
    podlab_lab.assert_reachable("web-1", "web-6")
    podlab_lab.assert_no_nat("web-1", "web-6")
    podlab_lab.assert_no_nat("web-3", "web-2")


def test_cross_node_traffic_on_the_wire(podlab_lab):
    mode = podlab_lab.record["routing"]
    bpf = "udp port 8472" if mode == "vxlan" else "icmp"
    with podlab_lab.capture("node/node-1:eth0", bpf=bpf) as cap:
        assert podlab_lab.ping("web-1", "web-3")
    src, dst = podlab_lab.ip_of("web-1"), podlab_lab.ip_of("web-3")
    inner = [line for line in cap.lines if f"{src} > {dst}" in line]
    assert inner, cap.lines
    if mode == "vxlan":  # tcpdump prints the outer (VXLAN) header and the inner packet on two lines
        outer = [line for line in cap.lines if "VXLAN" in line and "vni 1" in line]
        n1, n2 = podlab_lab.node("node-1").ip, podlab_lab.node("node-2").ip
        assert len(outer) >= len(inner) and any(f"{n1}." in line and f"{n2}.8472" in line for line in outer)


def test_the_whole_model(podlab_lab):
    report = podlab_lab.check()
    assert report.ok, [(c.name, c.summary) for c in report.results if c.status == "FAIL"]
