"""Link shaping on real links: a topology ``link:`` rate measured by a transfer between two pods (iperf3, both
directions), ``podlab link`` set/show/clear, and netem requests refused clearly on a kernel without netem."""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from emulator.errors import BuildError
from emulator.lab.api import Lab, popen_in
from emulator.netlink import netns
from emulator.state import record
from emulator.tools import shaping, targets
from emulator.topology.loader import loads
from tests.integration.conftest import lab_fixture, podlab, unique_name, wait_for_line

TOPO = """version: 1
name: x
nodes:
  - name: node-1
  - name: node-2
pods:
  - {name: slow, node: node-1, link: {rate: 10mbit}}
  - {name: fast, node: node-1}
  - {name: sink, node: node-2}
"""
RATE = 10_000_000
pytestmark = pytest.mark.skipif(shutil.which("iperf3") is None, reason="iperf3 not installed")


lab = lab_fixture(TOPO)


def iperf(lab: Lab, client: str, server: str, reverse: bool = False) -> float:
    """Goodput in bit/s of a 4 s TCP transfer (first second omitted: slow start) between two pods."""
    srv = popen_in(lab.pod(server).netns, ["iperf3", "-s", "-1", "-p", "5201", "--forceflush"],
                   what=f"iperf3 server in {server}", stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                   text=True)  # recorded: `down` ends it if we die
    try:
        wait_for_line(srv.stdout, "Server listening")  # said once its socket is bound (flushed: --forceflush)
        argv = ["iperf3", "-c", lab.pod(server).ip, "-p", "5201", "-t", "4", "-O", "1", "-J"] + (
            ["-R"] if reverse else [])
        r = lab.pod(client).exec(argv, timeout=30)
        assert r.returncode == 0, r.stdout + r.stderr
        return json.loads(r.stdout)["end"]["sum_received"]["bits_per_second"]
    finally:
        srv.kill()
        srv.wait()


def test_topology_link_shapes_both_ends_of_the_pod_cable(lab: Lab) -> None:
    pod_end = targets.resolve(lab, "slow")
    node_end = targets.peer(lab, pod_end)
    assert node_end is not None and node_end.kind == "node" and node_end.iface.startswith("veth")
    for p in (pod_end, node_end):
        (q,) = shaping.show(p)
        assert q["kind"] == "tbf" and q["options"]["rate"] * 8 == RATE, q
    assert shaping.show(targets.resolve(lab, "fast"))[0]["kind"] != "tbf"
    ann = lab.store.get("pods", "slow")["metadata"]["annotations"]
    assert json.loads(ann["podlab.io/link"]) == {"rate": "10mbit"}
    assert ann["kubernetes.io/egress-bandwidth"] == str(RATE)


@pytest.mark.parametrize("reverse", [False, True], ids=["pod-sends", "pod-receives"])
def test_rate_measured_by_a_transfer_between_two_pods(lab: Lab, reverse: bool) -> None:
    bps = iperf(lab, "slow", "sink", reverse)
    assert abs(bps - RATE) <= 0.15 * RATE, f"{bps / 1e6:.2f} Mbit/s, wanted 10 ± 1.5"


def test_link_cli_set_show_clear(lab: Lab) -> None:
    r = podlab("link", "set", "fast", "--rate", "20mbit", "--both", lab=lab)
    assert r.returncode == 0, r.stderr
    assert "tbf rate 20mbit" in r.stdout
    r = podlab("link", "show", "fast", "fast:veth", "-o", "json", lab=lab)
    items = json.loads(r.stdout)["items"]
    assert [i["qdiscs"][0]["options"]["rate"] * 8 for i in items] == [20_000_000, 20_000_000]
    r = podlab("link", "clear", "fast", "--both", lab=lab)
    assert r.returncode == 0 and r.stdout.count("shaping removed") == 2
    assert shaping.show(targets.resolve(lab, "fast"))[0]["kind"] != "tbf"
    r = podlab("link", "set", "fast", "--rate", "10", lab=lab)
    assert r.returncode == 1 and "no known unit" in r.stderr


def test_netem_requests_say_clearly_what_the_kernel_lacks(lab: Lab) -> None:
    before = shaping.show(targets.resolve(lab, "fast"))
    r = podlab("link", "set", "fast", "--delay", "5ms", "--loss", "1%", lab=lab)
    if shaping.netem_available():  # a kernel with netem: it is applied
        assert r.returncode == 0 and "netem delay 5ms loss 1%" in r.stdout
        assert podlab("link", "clear", "fast", lab=lab).returncode == 0
        return
    assert r.returncode == 5, r.stderr
    assert "this kernel has no netem qdisc" in r.stderr and "rate shaping (tbf) works" in r.stderr
    assert shaping.show(targets.resolve(lab, "fast")) == before  # nothing was changed


def test_up_with_a_netem_shape_fails_cleanly_without_netem() -> None:
    if shaping.netem_available():
        pytest.skip("this kernel has netem")
    name = unique_name("g")
    text = TOPO.replace("{rate: 10mbit}", "{rate: 10mbit, delay: 5ms}")
    with pytest.raises(BuildError, match="no netem qdisc"):
        Lab.up(loads(text, "<netem-test>", name=name))
    assert record.load(name) is None and not netns.exists(f"{name}-node-1")
