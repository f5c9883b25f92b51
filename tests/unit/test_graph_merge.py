"""``graph`` of a multi-host lab: the hosts' parts merged into one picture (pure: ``graph_model.merge``)."""
from __future__ import annotations

import ipaddress

from emulator.tools.graph_model import Line, NodeInfo, PodInfo, build, dev_id, from_dict, merge

NODES = [NodeInfo(f"node-{i}", f"192.168.56.{10 + i}", ipaddress.IPv4Network(f"10.244.{i}.0/24")) for i in (1, 2)]


def part(i: int) -> tuple:
    n = NODES[i - 1]
    other = NODES[2 - i]
    pods = [PodInfo(f"web-{i}", n.name, f"10.244.{i}.2", "veth")]
    model = build("lab x (vxlan)", "vxlan", "192.168.56.0/24", [n], pods,
                  {n.name: [f"{other.pod_cidr} via {other.pod_cidr.network_address} dev flannel.1 onlink"]}, [])
    a, b = (n.name, other.name) if i == 1 else (other.name, n.name)  # both ends report the same tunnel
    tunnel = Line(dev_id(a, "flannel.1"), dev_id(b, "flannel.1"), "VXLAN VNI 1", "tunnel")
    return from_dict(model.as_dict()), [tunnel]


def test_merge_draws_every_host_once_with_its_host() -> None:
    g = merge("lab x (vxlan) across 2 hosts", {"vm2": part(2), "vm1": part(1)}, "stretched over 2 hosts")
    assert g.title == "lab x (vxlan) across 2 hosts"
    assert g.groups["node-1"].endswith("\nhost vm1") and g.groups["node-2"].endswith("\nhost vm2")
    underlays = [b for b in g.boxes if b.kind == "underlay"]
    assert len(underlays) == 1 and underlays[0].label.endswith("stretched over 2 hosts")
    assert {b.id for b in g.boxes if b.kind == "pod"} == {"pod/web-1", "pod/web-2"}
    assert [ln.kind for ln in g.lines].count("tunnel") == 1  # reported by both ends, drawn once
    assert len([ln for ln in g.lines if ln.label == "port node-1"]) == 1


def test_many_nodes_summarise_the_node_to_node_lines() -> None:
    parts = {}
    for h in range(3):
        m, pairs = part(1)
        m.groups = {f"node-{h}{k}": "n" for k in range(3)}
        parts[f"vm{h}"] = (m, pairs)
    g = merge("t", parts)
    assert "node-to-node lines not drawn" in g.title and not any(ln.kind == "tunnel" for ln in g.lines)
