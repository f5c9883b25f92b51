"""A worked example of podlab's pytest plugin — what a user's regression test of a pod network looks like.

The marker names a topology and the routing modes (list several to run every test once per mode: ids
``[vxlan]``, ``[host-gw]``, ...); ``podlab_lab`` is the lab, built once per module and mode and always torn
down. Run: ``sudo python3 -m pytest tests/integration/test_plugin_example.py -v``. (This suite proves the
network of every mode in test_core_lab, so the example runs in one; a unit test checks the per-mode ids.)
"""
import pytest

pytestmark = pytest.mark.podlab(topology="../../topologies/vxlan-3node.yaml", routing=["vxlan"])


def test_pods_reach_each_other_without_nat(podlab_lab):
    podlab_lab.assert_reachable("web-1", "web-6")
    podlab_lab.assert_no_nat("web-1", "web-6")
    podlab_lab.assert_no_nat("web-3", "web-2")


def test_cross_node_traffic_on_the_wire(podlab_lab):
    with podlab_lab.capture("node/node-1:eth0", bpf="udp port 8472", count=2) as cap:  # request and reply
        assert podlab_lab.ping("web-1", "web-3")
    src, dst = podlab_lab.ip_of("web-1"), podlab_lab.ip_of("web-3")
    n1, n2 = podlab_lab.node("node-1").ip, podlab_lab.node("node-2").ip
    request, reply = cap.frames
    assert (request.src, request.dst, request.dport, request.vni) == (n1, n2, 8472, 1), cap.lines
    assert (request.inner.src, request.inner.dst, reply.inner.src, reply.inner.dst) == (src, dst, dst, src)
    assert any("VXLAN" in line and "vni 1" in line for line in cap.lines), cap.lines  # tcpdump's own words


def test_the_whole_model(podlab_lab):
    report = podlab_lab.check()
    assert report.ok, [(c.name, c.summary) for c in report.results if c.status == "FAIL"]
