"""Link shapes: unit parsing, the topology file's ``link:`` (and its errors), tc/netem command construction."""
from __future__ import annotations

import pytest

from emulator.errors import TopologyError
from emulator.netlink import tc
from emulator.tools import shaping
from emulator.topology import units
from emulator.topology.loader import loads
from emulator.topology.model import LinkShape

BASE = "version: 1\nname: t\nnodes:\n  - name: node-1\n{node_extra}pods:\n  - name: web-1\n{pod_extra}"


def topo(node_link: str = "", pod_link: str = ""):
    return loads(BASE.format(node_extra=f"    link: {node_link}\n" if node_link else "",
                             pod_extra=f"    link: {pod_link}\n" if pod_link else ""), "t.yaml")


@pytest.mark.parametrize("text,bps", [("10mbit", 10_000_000), ("1.5gbit", 1_500_000_000), ("100kbit", 100_000),
                                      ("10Mbit", 10_000_000), ("1mibit", 1_048_576), ("125kbps", 1_000_000),
                                      ("10M", 10_000_000), ("64kbit", 64_000)])
def test_rates_follow_tc_units(text: str, bps: int) -> None:
    assert units.parse_rate(text) == bps


@pytest.mark.parametrize("text,why", [("10", "no known unit"), ("fast", "not a number"), ("1kbit", "outside"),
                                      ("10mbits", "no known unit"), (True, "not a number")])
def test_bad_rates_say_why(text: object, why: str) -> None:
    with pytest.raises(units.UnitError, match=why) as e:
        units.parse_rate(text)
    assert "mbit" in e.value.fix or "kbit" in e.value.fix


def test_times_and_percentages() -> None:
    assert units.parse_time("5ms") == 5000
    assert units.parse_time("250us") == 250
    assert units.parse_time("1.5s") == 1_500_000
    assert units.parse_percent("1%") == 1.0
    assert units.parse_percent(0.5) == 0.5
    with pytest.raises(units.UnitError, match="more than 100%"):
        units.parse_percent("120%")
    with pytest.raises(units.UnitError, match="no known unit"):
        units.parse_time("5 minutes")


def test_format_round_trips() -> None:
    shape = units.parse_shape({"rate": "10mbit", "delay": "5ms", "jitter": "500us", "loss": "1%"})
    assert units.shape_dict(shape) == {"rate": "10mbit", "delay": "5ms", "jitter": "500us", "loss": "1%"}
    assert units.parse_shape(units.shape_dict(shape)) == shape


def test_topology_link_on_node_and_pod() -> None:
    t = topo(node_link="{rate: 100mbit}", pod_link="{rate: 10mbit, delay: 5ms, loss: 1%}")
    assert t.nodes[0].link == LinkShape(rate_bps=100_000_000)
    assert t.pods[0].link == LinkShape(rate_bps=10_000_000, delay_us=5000, loss_pct=1.0)
    assert t.pods[0].link.needs_netem and not t.nodes[0].link.needs_netem
    assert topo().pods[0].link is None


@pytest.mark.parametrize("pod_link,field,words", [
    ("{rate: 10}", "pods[0].link.rate", "no known unit"),
    ("{rate: 10mbps, bandwidth: 1}", "pods[0].link.bandwidth", "unknown key"),
    ("{delay: soon}", "pods[0].link.delay", "not a number"),
    ("{jitter: 1ms}", "pods[0].link.jitter", "without a delay"),
    ("{loss: 200%}", "pods[0].link.loss", "more than 100%"),
    ("{}", "pods[0].link", "at least one of"),
    ("10mbit", "pods[0].link", "must be a mapping"),
])
def test_topology_link_errors_name_field_value_and_fix(pod_link: str, field: str, words: str) -> None:
    with pytest.raises(TopologyError) as e:
        topo(pod_link=pod_link)
    assert e.value.field == field
    assert words in str(e.value)
    assert e.value.fix


def test_node_link_error_names_the_node() -> None:
    with pytest.raises(TopologyError) as e:
        topo(node_link="{rate: lots}")
    assert e.value.field == "nodes[0].link.rate"
    assert "'lots'" in str(e.value)


def test_rate_only_is_one_tbf() -> None:
    cmds = tc.tc_commands("eth0", LinkShape(rate_bps=10_000_000), mtu=1450)
    assert cmds == [["tc", "qdisc", "replace", "dev", "eth0", "root", "handle", "1:", "tbf", "rate", "10mbit",
                     "burst", "12500", "latency", "50ms"]]


def test_small_rates_keep_a_burst_of_four_frames() -> None:
    assert tc.burst_bytes(1_000_000, 1500) == 4 * 1514


def test_netem_at_the_root_with_tbf_as_its_child() -> None:
    shape = LinkShape(rate_bps=10_000_000, delay_us=5000, jitter_us=1000, loss_pct=0.5)
    cmds = tc.tc_commands("veth1234", shape)
    assert cmds[0] == ["tc", "qdisc", "replace", "dev", "veth1234", "root", "handle", "1:", "netem",
                       "delay", "5ms", "1ms", "loss", "0.5%"]
    assert cmds[1][:9] == ["tc", "qdisc", "add", "dev", "veth1234", "parent", "1:1", "handle", "10:"]
    assert cmds[1][9:11] == ["tbf", "rate"]


def test_netem_without_rate_is_one_command() -> None:
    assert tc.tc_commands("eth0", LinkShape(loss_pct=1.0)) == [
        ["tc", "qdisc", "replace", "dev", "eth0", "root", "handle", "1:", "netem", "loss", "1%"]]


def test_clear_and_describe() -> None:
    assert tc.clear_command("eth0") == ["tc", "qdisc", "del", "dev", "eth0", "root"]
    q = [{"kind": "tbf", "options": {"rate": 1250000, "burst": 12500}}]
    assert shaping.describe(q) == "tbf rate 10mbit burst 12500"
    assert shaping.describe([]) == "none"
