"""Topology loader: every validation error names file, field, value and fix; defaults; allocation; scheduler."""
from __future__ import annotations

import copy
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import pytest
import yaml

from emulator.errors import TopologyError
from emulator.topology import loader
from emulator.topology.model import Container, Port
from emulator.topology.scheduler import Unschedulable, spread

TOPOLOGIES = Path(__file__).resolve().parents[2] / "topologies"
BASE: dict[str, Any] = {
    "version": 1,
    "name": "t",
    "nodes": [{"name": "node-1"}, {"name": "node-2"}],
    "pods": [{"name": "web-1", "node": "node-1",
              "containers": [{"name": "app", "image": "netexec", "ports": [{"containerPort": 8080}]}]}],
}


def write(tmp_path: Path, doc: dict[str, Any] | str, filename: str = "lab.yaml") -> Path:
    path = tmp_path / filename
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc, sort_keys=False))
    return path


def doc(change: Callable[[dict[str, Any]], object] | None = None) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    if change:
        change(data)
    return data


def failure(path: Path, **overrides: str) -> TopologyError:
    with pytest.raises(TopologyError) as info:
        loader.load(path, **overrides)
    return info.value


def check(err: TopologyError, path: Path, field: str, *values: str) -> None:
    message = str(err)
    assert str(path) in message and err.file == str(path)
    assert err.field == field and f": {field}: " in message
    for value in values:
        assert value in message, (value, message)
    assert "fix" in message and err.fix


def pod(data: dict[str, Any], i: int = 0) -> dict[str, Any]:
    return data["pods"][i]


def container(data: dict[str, Any]) -> dict[str, Any]:
    return data["pods"][0]["containers"][0]


def port(data: dict[str, Any]) -> dict[str, Any]:
    return container(data)["ports"][0]


def extra_nodes(count: int) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        data["nodes"] = [{"name": f"node-{i + 1}"} for i in range(count)]
    return change


# (id, change to BASE, expected field, strings the message must contain besides file and field)
CASES: list[tuple[str, Callable[[dict[str, Any]], object], str, tuple[str, ...]]] = [
    ("version-missing", lambda d: d.pop("version"), "version", ("missing",)),
    ("version-unsupported", lambda d: d.update(version=2), "version", ("2", "version 1")),
    ("version-string", lambda d: d.update(version="1"), "version", ("'1'",)),
    ("unknown-top-key", lambda d: d.update(podes=[]), "podes", ("'podes'", "allowed keys", "did you mean 'pods'")),
    ("unknown-cluster-key", lambda d: d.update(cluster={"podCidr": "10.1.0.0/16"}), "cluster.podCidr",
     ("'podCidr'", "did you mean 'podCIDR'")),
    ("unknown-underlay-key", lambda d: d.update(underlay={"cidrs": "10.1.0.0/24"}), "underlay.cidrs",
     ("'cidrs'", "did you mean 'cidr'")),
    ("unknown-node-key", lambda d: d["nodes"][1].update(podCidr="10.244.3.0/24"), "nodes[1].podCidr",
     ("'podCidr'", "podCIDR")),
    ("unknown-pod-key", lambda d: pod(d).update(nodes="node-1"), "pods[0].nodes", ("'nodes'", "did you mean 'node'")),
    ("unknown-container-key", lambda d: container(d).update(img="x"), "pods[0].containers[0].img",
     ("'img'", "image")),
    ("unknown-port-key", lambda d: port(d).update(hostPorts=80), "pods[0].containers[0].ports[0].hostPorts",
     ("'hostPorts'", "hostPort")),
    ("cluster-not-mapping", lambda d: d.update(cluster="10.244.0.0/16"), "cluster", ("'10.244.0.0/16'", "mapping")),
    ("cidr-no-prefix", lambda d: d.update(cluster={"podCIDR": "10.244.0.0"}), "cluster.podCIDR",
     ("'10.244.0.0'", "CIDR")),
    ("cidr-bad-octet", lambda d: d.update(cluster={"podCIDR": "10.300.0.0/16"}), "cluster.podCIDR",
     ("'10.300.0.0/16'",)),
    ("cidr-host-bits", lambda d: d.update(cluster={"podCIDR": "10.244.0.1/16"}), "cluster.podCIDR",
     ("'10.244.0.1/16'", "host bits", "use 10.244.0.0/16")),
    ("cidr-ipv6", lambda d: d.update(cluster={"podCIDR": "fd00::/64"}), "cluster.podCIDR", ("'fd00::/64'", "IPv6")),
    ("service-host-bits", lambda d: d.update(cluster={"serviceCIDR": "10.96.0.10/12"}), "cluster.serviceCIDR",
     ("'10.96.0.10/12'", "use 10.96.0.0/12")),
    ("underlay-bad", lambda d: d.update(underlay={"cidr": 24}), "underlay.cidr", ("24",)),
    ("loopback-range", lambda d: d.update(cluster={"podCIDR": "127.0.0.0/16"}), "cluster.podCIDR",
     ("127.0.0.0/16", "loopback")),
    ("overlap-pod-service", lambda d: d.update(cluster={"serviceCIDR": "10.244.128.0/20"}), "cluster.serviceCIDR",
     ("10.244.128.0/20", "overlaps cluster.podCIDR 10.244.0.0/16")),
    ("overlap-pod-underlay", lambda d: d.update(underlay={"cidr": "10.244.200.0/24"}), "underlay.cidr",
     ("10.244.200.0/24", "overlaps cluster.podCIDR")),
    ("overlap-service-underlay", lambda d: d.update(underlay={"cidr": "10.96.5.0/24"}), "underlay.cidr",
     ("10.96.5.0/24", "overlaps cluster.serviceCIDR 10.96.0.0/12")),
    ("mask-not-int", lambda d: d.update(cluster={"nodeCIDRMaskSize": "24"}), "cluster.nodeCIDRMaskSize",
     ("'24'", "integer")),
    ("mask-bool", lambda d: d.update(cluster={"nodeCIDRMaskSize": True}), "cluster.nodeCIDRMaskSize", ("True",)),
    ("mask-not-longer", lambda d: d.update(cluster={"nodeCIDRMaskSize": 16}), "cluster.nodeCIDRMaskSize",
     ("16", "/16", "from 17 to 30")),
    ("mask-too-long", lambda d: d.update(cluster={"nodeCIDRMaskSize": 31}), "cluster.nodeCIDRMaskSize",
     ("31", "at most 30")),
    ("too-many-nodes", lambda d: (d.update(cluster={"podCIDR": "10.244.0.0/24", "nodeCIDRMaskSize": 26}),
                                  extra_nodes(5)(d)), "nodes",
     ("5 nodes", "has 4 /26 slices", "10.244.0.0/23", "nodeCIDRMaskSize: 27")),
    ("node-over-capacity", lambda d: (d.update(cluster={"nodeCIDRMaskSize": 30}),
                                      d["pods"].append({"name": "web-2", "node": "node-1"})), "pods[1].node",
     ("'node-1'", "2 pods", "holds 1", "10.244.0.4/30")),
    ("cluster-full", lambda d: (d.update(cluster={"nodeCIDRMaskSize": 30}),
                                d["pods"].extend([{"name": "a"}, {"name": "b"}])), "pods[2]",
     ("'b'", "no node has room", "2 pods in all")),
    ("duplicate-node", lambda d: d["nodes"][1].update(name="node-1"), "nodes[1].name",
     ("'node-1'", "nodes[0]")),
    ("duplicate-pod", lambda d: d["pods"].append({"name": "web-1"}), "pods[1].name", ("'web-1'", "pods[0]")),
    ("pod-named-like-node", lambda d: pod(d).update(name="node-2"), "pods[0].name", ("'node-2'", "nodes[1]")),
    ("pod-reserved-name", lambda d: pod(d).update(name="underlay"), "pods[0].name", ("'underlay'", "reserved")),
    ("node-reserved-name", lambda d: d["nodes"][0].update(name="dns"), "nodes[0].name", ("'dns'", "reserved")),
    ("duplicate-container", lambda d: pod(d)["containers"].append({"name": "app"}), "pods[0].containers[1].name",
     ("'app'", "twice")),
    ("node-name-too-long", lambda d: d["nodes"][0].update(name="node-abcdefghijk"), "nodes[0].name",
     ("'node-abcdefghijk'", "16 characters", "at most 15", "interface name")),
    ("node-name-bad-chars", lambda d: d["nodes"][0].update(name="Node_1"), "nodes[0].name", ("'Node_1'",)),
    ("node-name-missing", lambda d: d["nodes"][0].pop("name"), "nodes[0].name", ("None",)),
    ("pod-name-too-long", lambda d: pod(d).update(name="w" * 64), "pods[0].name", ("w" * 64, "at most 63")),
    ("pod-name-bad-chars", lambda d: pod(d).update(name="web.1"), "pods[0].name", ("'web.1'",)),
    ("pod-unknown-node", lambda d: pod(d).update(node="node-9"), "pods[0].node",
     ("'node-9'", "known nodes: node-1, node-2")),
    ("bad-routing", lambda d: d.update(routing="vxlan2"), "routing",
     ("'vxlan2'", "vxlan, host-gw, bgp", "did you mean 'vxlan'")),
    ("bad-cni", lambda d: d["nodes"][0].update(cni="flannel"), "nodes[0].cni",
     ("'flannel'", "builtin, reference, none")),
    ("port-out-of-range", lambda d: port(d).update(containerPort=70000), "pods[0].containers[0].ports[0].containerPort",
     ("70000", "1 to 65535")),
    ("port-not-int", lambda d: port(d).update(containerPort="8080"), "pods[0].containers[0].ports[0].containerPort",
     ("'8080'",)),
    ("port-missing", lambda d: port(d).pop("containerPort"), "pods[0].containers[0].ports[0].containerPort",
     ("None",)),
    ("protocol-lowercase", lambda d: port(d).update(protocol="tcp"), "pods[0].containers[0].ports[0].protocol",
     ("'tcp'", "'TCP'")),
    ("protocol-unknown", lambda d: port(d).update(protocol="ICMP"), "pods[0].containers[0].ports[0].protocol",
     ("'ICMP'", "TCP, UDP, SCTP")),
    ("port-duplicate", lambda d: pod(d)["containers"].append({"name": "b", "ports": [{"containerPort": 8080}]}),
     "pods[0].containers[1].ports[0].containerPort", ("8080", "already declared")),
    ("port-name-bad", lambda d: port(d).update(name="http_port"), "pods[0].containers[0].ports[0].name",
     ("'http_port'",)),
    ("node-cidr-outside", lambda d: d["nodes"][0].update(podCIDR="10.245.7.0/24"), "nodes[0].podCIDR",
     ("10.245.7.0/24", "outside", "10.244.0.0/16")),
    ("node-cidr-wrong-prefix", lambda d: d["nodes"][0].update(podCIDR="10.244.7.0/25"), "nodes[0].podCIDR",
     ("10.244.7.0/25", "nodeCIDRMaskSize is 24", "10.244.7.0/24")),
    ("node-cidr-unaligned", lambda d: d["nodes"][0].update(podCIDR="10.244.7.5/24"), "nodes[0].podCIDR",
     ("'10.244.7.5/24'", "use 10.244.7.0/24")),
    ("node-cidr-duplicate", lambda d: [n.update(podCIDR="10.244.7.0/24") for n in d["nodes"]], "nodes[1].podCIDR",
     ("10.244.7.0/24", "nodes[0] (node-1)")),
    ("node-ip-outside", lambda d: d["nodes"][0].update(ip="10.0.0.5"), "nodes[0].ip",
     ("10.0.0.5", "outside underlay.cidr 192.168.56.0/24")),
    ("node-ip-gateway", lambda d: d["nodes"][0].update(ip="192.168.56.1"), "nodes[0].ip",
     ("192.168.56.1", "gateway")),
    ("node-ip-broadcast", lambda d: d["nodes"][0].update(ip="192.168.56.255"), "nodes[0].ip",
     ("192.168.56.255", "broadcast")),
    ("node-ip-network", lambda d: d["nodes"][0].update(ip="192.168.56.0"), "nodes[0].ip", ("192.168.56.0", "network")),
    ("node-ip-duplicate", lambda d: d["nodes"][1].update(ip="192.168.56.11"), "nodes[1].ip",
     ("192.168.56.11", "nodes[0] (node-1, assigned automatically", "e.g. 192.168.56.2")),
    ("node-ip-not-address", lambda d: d["nodes"][0].update(ip="192.168.56.21/24"), "nodes[0].ip",
     ("'192.168.56.21/24'",)),
    ("underlay-too-small", lambda d: (d.update(underlay={"cidr": "192.168.56.0/28"}), extra_nodes(5)(d)),
     "underlay.cidr", ("192.168.56.0/28", "too small for 5 nodes", "192.168.56.15", "192.168.56.0/27")),
    ("underlay-slash-31", lambda d: d.update(underlay={"cidr": "192.168.56.0/31"}), "underlay.cidr",
     ("192.168.56.0/31",)),
    ("mtu-range", lambda d: d.update(underlay={"mtu": 1000}), "underlay.mtu", ("1000", "1280 to 9000")),
    ("mtu-not-int", lambda d: d.update(underlay={"mtu": "1500"}), "underlay.mtu", ("'1500'",)),
    ("lab-name-invalid", lambda d: d.update(name="Demo_Lab"), "name", ("'Demo_Lab'",)),
    ("lab-name-too-long", lambda d: d.update(name="a" * 25), "name", ("a" * 25, "at most 24")),
    ("no-nodes", lambda d: d.update(nodes=[]), "nodes", ("at least one node", "[]")),
    ("nodes-missing", lambda d: d.pop("nodes"), "nodes", ("at least one node", "None")),
    ("nodes-not-list", lambda d: d.update(nodes="node-1"), "nodes", ("'node-1'", "list")),
    ("node-not-mapping", lambda d: d.update(nodes=["node-1"]), "nodes[0]", ("'node-1'", "mapping")),
    ("label-value-int", lambda d: pod(d).update(labels={"tier": 1}), "pods[0].labels.tier", ("1", "quote")),
    ("label-key-bad", lambda d: pod(d).update(labels={"bad key": "x"}), "pods[0].labels.bad key", ("'bad key'",)),
    ("namespace-bad", lambda d: pod(d).update(namespace="Kube_System"), "pods[0].namespace", ("'Kube_System'",)),
    ("containers-empty", lambda d: pod(d).update(containers=[]), "pods[0].containers", ("[]",)),
    ("command-bad-item", lambda d: container(d).update(command=["sleep", 1.5]), "pods[0].containers[0].command[1]",
     ("1.5",)),
    ("env-bad-name", lambda d: container(d).update(env={"1BAD": "x"}), "pods[0].containers[0].env.1BAD",
     ("'1BAD'",)),
    ("env-bad-value", lambda d: container(d).update(env=[{"name": "DEBUG", "value": True}]),
     "pods[0].containers[0].env[0]", ("True", "quote")),
    ("image-empty", lambda d: container(d).update(image=""), "pods[0].containers[0].image", ("''",)),
]


@pytest.mark.parametrize(("change", "field", "values"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_validation_error(tmp_path: Path, change: Callable[[dict[str, Any]], object], field: str,
                          values: tuple[str, ...]) -> None:
    path = write(tmp_path, doc(change))
    check(failure(path), path, field, *values)


@pytest.mark.parametrize(("text", "values"), [
    ("version: 1\nnodes: [{name: node-1\n", ("line", "YAML syntax error")),
    ("version: 1\n  name: x\n", ("line 2",)),
    ("version: 1\nname: a\nname: b\nnodes: [{name: n}]\n", ("'name'", "twice", "lines 2 and 3")),
    ("- node-1\n- node-2\n", ("['node-1', 'node-2']", "mapping")),
    ("", ("empty",)),
    ("# only a comment\n", ("empty",)),
], ids=["syntax", "indent", "duplicate-key", "not-mapping", "empty", "comment-only"])
def test_file_level_error(tmp_path: Path, text: str, values: tuple[str, ...]) -> None:
    path = write(tmp_path, text)
    check(failure(path), path, "<file>", *values)


def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.yaml"
    check(failure(path), path, "<file>", "No such file")


def test_directory_is_unreadable(tmp_path: Path) -> None:
    check(failure(tmp_path), tmp_path, "<file>", "cannot read")


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "lab.yaml"
    path.write_bytes(b"version: 1\nname: \xff\n")
    check(failure(path), path, "<file>", "cannot read")


def test_name_from_file_stem_invalid(tmp_path: Path) -> None:
    data = doc(lambda d: d.pop("name"))
    path = write(tmp_path, data, "my_lab.yaml")
    check(failure(path), path, "name", "'my_lab'", "file name")


def test_name_override_invalid(tmp_path: Path) -> None:
    path = write(tmp_path, doc())
    check(failure(path, name="Bad Name"), path, "name", "'Bad Name'", "--name")


def test_routing_override_invalid(tmp_path: Path) -> None:
    path = write(tmp_path, doc())
    check(failure(path, routing="ipip"), path, "routing", "'ipip'", "--routing", "vxlan, host-gw, bgp")


# -- successful loads ---------------------------------------------------------------------------------------
def test_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, "version: 1\nnodes: [{name: node-1}, {name: node-2}]\npods: [{name: web-1}]\n",
                 "demo-lab.yaml")
    topo = loader.load(path)
    assert topo.name == "demo-lab" and topo.source == str(path) and topo.version == 1
    assert topo.routing == "vxlan"
    assert topo.pod_cidr == IPv4Network("10.244.0.0/16") and topo.service_cidr == IPv4Network("10.96.0.0/12")
    assert topo.node_mask == 24
    assert topo.underlay.cidr == IPv4Network("192.168.56.0/24") and topo.underlay.mtu == 1500
    assert topo.pod_mtu == 1450
    n1, n2 = topo.nodes
    assert (n1.name, n1.ip, n1.pod_cidr, n1.cni) == ("node-1", IPv4Address("192.168.56.11"),
                                                     IPv4Network("10.244.1.0/24"), "builtin")
    assert (n2.ip, n2.pod_cidr) == (IPv4Address("192.168.56.12"), IPv4Network("10.244.2.0/24"))
    assert n1.gateway == IPv4Address("10.244.1.1") and n1.pod_capacity == 253
    (web,) = topo.pods
    assert web.node == "node-1" and web.namespace == "default" and web.labels == ()
    assert web.containers == (Container(name="main", image="pause"),)
    assert topo.extra == ()


def test_null_sections_mean_defaults() -> None:
    topo = loader.loads("version: 1\nname: x\ncluster:\nunderlay:\nnodes: [{name: n1}]\npods:\n")
    assert topo.node_mask == 24 and topo.pods == ()


def test_explicit_values(tmp_path: Path) -> None:
    path = write(tmp_path, doc(lambda d: (
        d.update(routing="host-gw", cluster={"podCIDR": "10.32.0.0/12", "serviceCIDR": "10.100.0.0/16",
                                             "nodeCIDRMaskSize": 20}, underlay={"cidr": "172.16.0.0/16", "mtu": 9000}),
        d["nodes"][0].update(ip="172.16.0.200", cni="none"))))
    topo = loader.load(path)
    assert topo.routing == "host-gw" and topo.pod_mtu == 9000 and topo.node_mask == 20
    assert topo.nodes[0].ip == IPv4Address("172.16.0.200") and topo.nodes[0].cni == "none"
    assert topo.nodes[1].ip == IPv4Address("172.16.0.12")
    assert [n.pod_cidr for n in topo.nodes] == [IPv4Network("10.32.16.0/20"), IPv4Network("10.32.32.0/20")]


def test_explicit_node_cidrs_taken_first() -> None:
    text = """
version: 1
name: x
nodes:
  - name: node-1
  - name: node-2
    podCIDR: 10.244.1.0/24
  - name: node-3
    podCIDR: 10.244.7.0/24
  - name: node-4
"""
    topo = loader.loads(text)
    assert [str(n.pod_cidr) for n in topo.nodes] == ["10.244.2.0/24", "10.244.1.0/24", "10.244.7.0/24",
                                                     "10.244.3.0/24"]


def test_full_cluster_gets_slice_zero_last() -> None:
    nodes = "".join(f"  - name: n{i}\n" for i in range(256))
    topo = loader.loads(f"version: 1\nname: big\nunderlay: {{cidr: 192.168.0.0/22}}\nnodes:\n{nodes}")
    assert topo.nodes[0].pod_cidr == IPv4Network("10.244.1.0/24")
    assert topo.nodes[-1].pod_cidr == IPv4Network("10.244.0.0/24")
    assert topo.nodes[-1].ip == IPv4Address("192.168.1.10")


def test_overrides(tmp_path: Path) -> None:
    topo = loader.load(write(tmp_path, doc()), name="other", routing="bgp")
    assert topo.name == "other" and topo.routing == "bgp" and topo.pod_mtu == 1500


def test_override_skips_invalid_file_values() -> None:
    topo = loader.loads("version: 1\nname: Bad_Name\nrouting: ipip\nnodes: [{name: n1}]\n", name="ok", routing="vxlan")
    assert (topo.name, topo.routing) == ("ok", "vxlan")


def test_container_fields() -> None:
    text = """
version: 1
name: x
nodes: [{name: node-1}]
pods:
  - name: web-1
    labels: {app: web, example.com/tier: front}
    namespace: shop
    containers:
      - name: app
        image: netexec
        command: "echo hi && sleep 1"
        args: ["--port", 8080]
        env: {A: "1", B: 2}
        ports: [{containerPort: 8080, name: http}, {containerPort: 8080, protocol: UDP}]
      - name: side
        command: [sleep, "10"]
        env: [{name: C, value: x}, {name: D}]
"""
    (web,) = loader.loads(text).pods
    app, side = web.containers
    assert web.namespace == "shop" and web.label_dict == {"app": "web", "example.com/tier": "front"}
    assert app.command == ("/bin/sh", "-c", "echo hi && sleep 1") and app.args == ("--port", "8080")
    assert app.env == (("A", "1"), ("B", "2"))
    assert app.ports == (Port(8080, "TCP", "http"), Port(8080, "UDP", None))
    assert side.image == "pause" and side.command == ("sleep", "10") and side.env == (("C", "x"), ("D", ""))


def test_services_and_deployments_kept_raw() -> None:
    text = "version: 1\nname: x\nnodes: [{name: n1}]\nservices: [{name: web, port: 80}]\ndeployments: {a: 1}\n"
    topo = loader.loads(text)
    assert dict(topo.extra) == {"services": [{"name": "web", "port": 80}], "deployments": {"a": 1}}


def test_yaml_merge_keys_are_not_duplicates() -> None:
    text = """
version: 1
name: x
nodes: [{name: node-1}]
pods:
  - &web {name: web-1, labels: {app: web}}
  - <<: *web
    name: web-2
"""
    assert [p.name for p in loader.loads(text).pods] == ["web-1", "web-2"]


def test_scheduler_spreads_pods_in_topology() -> None:
    text = """
version: 1
name: x
nodes: [{name: node-1}, {name: node-2}]
pods: [{name: a}, {name: b}, {name: c, node: node-2}, {name: d}, {name: e}]
"""
    assert [(p.name, p.node) for p in loader.loads(text).pods] == [
        ("a", "node-1"), ("b", "node-1"), ("c", "node-2"), ("d", "node-2"), ("e", "node-1")]


def test_loads_default_source_in_message() -> None:
    with pytest.raises(TopologyError, match="^<string>: version:"):
        loader.loads("name: x\n")


# -- scheduler ----------------------------------------------------------------------------------------------
def test_spread_round_robin_on_ties() -> None:
    assert spread(["a", "b", "c", "d"], {"n1": 10, "n2": 10}, {}) == {"a": "n1", "b": "n2", "c": "n1", "d": "n2"}


def test_spread_counts_existing_pods() -> None:
    assert spread(["a", "b", "c"], {"n1": 10, "n2": 10, "n3": 10}, {"n1": 2, "n2": 1}) == {
        "a": "n3", "b": "n2", "c": "n3"}


def test_spread_respects_capacity() -> None:
    assert spread(["a", "b", "c"], {"n1": 1, "n2": 5}, {}) == {"a": "n1", "b": "n2", "c": "n2"}
    assert spread(["a"], {"n1": 1, "n2": 1}, {"n1": 1}) == {"a": "n2"}


def test_spread_unschedulable() -> None:
    with pytest.raises(Unschedulable) as info:
        spread(["a", "b", "c"], {"n1": 1, "n2": 1}, {})
    assert info.value.pod == "c" and info.value.capacity == 2 and info.value.assigned == {"a": "n1", "b": "n2"}


def test_spread_many_pods_is_fast() -> None:
    nodes = {f"n{i}": 253 for i in range(100)}
    result = spread([f"p{i}" for i in range(20000)], nodes, {})
    assert len(result) == 20000 and result["p0"] == "n0" and result["p100"] == "n0" and result["p199"] == "n99"


# -- shipped topologies -------------------------------------------------------------------------------------
SHIPPED = sorted(TOPOLOGIES.glob("*.yaml"))


def test_shipped_topologies_exist() -> None:
    assert {p.name for p in SHIPPED} >= {"demo.yaml", "vxlan-3node.yaml", "hostgw-3node.yaml", "bgp-3node.yaml"}


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_topology_loads(path: Path) -> None:
    topo = loader.load(path)
    assert topo.nodes and topo.pods


@pytest.mark.parametrize(("file", "lab", "mode"), [("vxlan-3node.yaml", "vxlan3", "vxlan"),
                                                   ("hostgw-3node.yaml", "hostgw3", "host-gw"),
                                                   ("bgp-3node.yaml", "bgp3", "bgp")])
def test_three_node_topologies(file: str, lab: str, mode: str) -> None:
    topo = loader.load(TOPOLOGIES / file)
    assert (topo.name, topo.routing, len(topo.nodes)) == (lab, mode, 3)
    assert all(len(topo.pods_on(n.name)) == 2 for n in topo.nodes)
    assert all(c.image == "netexec" for p in topo.pods for c in p.containers)


def test_three_node_topologies_are_one_cluster_in_three_modes() -> None:
    """The integration tests bring up vxlan-3node.yaml in every mode and count that for all three files."""
    import dataclasses
    same = {dataclasses.replace(loader.load(TOPOLOGIES / f, name="x", routing="vxlan"), source="")
            for f in ("vxlan-3node.yaml", "hostgw-3node.yaml", "bgp-3node.yaml")}
    assert len(same) == 1


def test_demo_topology() -> None:
    topo = loader.load(TOPOLOGIES / "demo.yaml")
    assert (topo.name, topo.routing, [n.name for n in topo.nodes]) == ("demo", "vxlan", ["node-1", "node-2"])
    placement = {p.name: p.node for p in topo.pods}
    assert placement == {"web-1": "node-1", "web-2": "node-1", "web-3": "node-2", "client-1": "node-2"}
    web = [p for p in topo.pods if p.label_dict.get("app") == "web"]
    assert len(web) == 3
    for p in web:
        assert p.containers[0].image == "netexec"
        assert {(port.container_port, port.protocol) for port in p.containers[0].ports} == {(8080, "TCP"),
                                                                                              (8081, "UDP")}
    assert topo.pods[-1].containers[0].image == "busybox"
