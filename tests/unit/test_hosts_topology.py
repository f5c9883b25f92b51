"""The topology's hosts section: placement, the tunnel port, inventories, and errors naming file, field, fix."""
from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from emulator.errors import TopologyError
from emulator.topology import hosts_section
from emulator.topology.loader import loads

BASE = """
version: 1
name: multi
hosts:
  - {name: vm1, address: 192.168.57.11}
  - {name: vm2, address: 192.168.57.12, user: vagrant, key: /k/id, port: 2222}
  - {name: vm3, address: 192.168.57.13}
nodes: [{name: node-1}, {name: node-2}, {name: node-3}, {name: node-4}]
"""


def test_round_robin_default_and_fields() -> None:
    topo = loads(BASE, "t.yaml")
    hs = hosts_section.of(topo)
    assert hs is not None and hs.strategy == "round-robin" and hs.tunnel_port == 14790 and not hs.mtu_given
    assert hs.placement == (("node-1", "vm1"), ("node-2", "vm2"), ("node-3", "vm3"), ("node-4", "vm1"))
    vm2 = hs.host("vm2")
    assert (vm2.user, vm2.key, vm2.port, vm2.address) == ("vagrant", "/k/id", 2222, IPv4Address("192.168.57.12"))
    assert hs.nodes_on("vm1") == ("node-1", "node-4")


def test_packed_and_pinned() -> None:
    text = BASE.replace("nodes: [{name: node-1}", "placement: packed\nnodes: [{name: node-1, host: vm3}")
    hs = hosts_section.of(loads(text, "t.yaml"))
    assert hs is not None
    assert dict(hs.placement) == {"node-1": "vm3", "node-2": "vm1", "node-3": "vm1", "node-4": "vm2"}


def test_no_hosts_is_a_local_lab() -> None:
    assert hosts_section.of(loads("version: 1\nname: a\nnodes: [{name: n1}]\n", "t.yaml")) is None


@pytest.mark.parametrize("change, field, fix", [
    (("host: vm3", "host: vm9"), "nodes[0].host", "use a name from 'hosts'"),
    (("address: 192.168.57.13", "address: 192.168.57.11"), "hosts[2].address", "its own address"),
    (("{name: vm3, address: 192.168.57.13}", "{name: vm3}"), "hosts[2].address", "add its IPv4 address"),
    (("port: 2222", "port: 0"), "hosts[1].port", "port: 22"),
    (("user: vagrant", "usr: vagrant"), "hosts[1].usr", "user"),
    (("placement: packed", "placement: random"), "placement", "round-robin"),
    (("placement: packed", "tunnel: {port: 8472}"), "tunnel.port", "14790"),
    (("placement: packed", "tunnel: {port: 4789}"), "tunnel.port", "14790"),
])
def test_errors_name_field_and_fix(change: tuple[str, str], field: str, fix: str) -> None:
    text = BASE.replace("nodes: [{name: node-1}", "placement: packed\nnodes: [{name: node-1, host: vm3}")
    with pytest.raises(TopologyError) as e:
        loads(text.replace(*change), "t.yaml")
    assert e.value.file == "t.yaml" and e.value.field == field and fix in e.value.fix


def test_host_without_hosts_section() -> None:
    with pytest.raises(TopologyError) as e:
        loads("version: 1\nname: a\nnodes: [{name: n1, host: vm1}]\n", "t.yaml")
    assert e.value.field == "nodes[0].host" and "--hosts" in e.value.fix


def test_inventory_replaces_hosts(tmp_path) -> None:
    inv = tmp_path / "inv.yaml"
    inv.write_text("hosts:\n  - {name: a1, address: 10.9.0.1}\n  - {name: a2, address: 10.9.0.2}\n"
                   "placement: packed\ntunnel: {port: 15000}\n")
    topo = loads("version: 1\nname: a\nnodes: [{name: n1}, {name: n2}, {name: n3, host: a1}]\n", "t.yaml",
                 hosts=inv)
    hs = hosts_section.of(topo)
    assert hs is not None and hs.tunnel_port == 15000 and hs.source == str(inv)
    assert dict(hs.placement) == {"n1": "a1", "n2": "a2", "n3": "a1"}
    inv.write_text("- {name: a1, address: nope}\n")
    with pytest.raises(TopologyError) as e:
        loads("version: 1\nname: a\nnodes: [{name: n1}]\n", "t.yaml", hosts=inv)
    assert e.value.file == str(inv) and e.value.field == "hosts[0].address"


def test_vni_is_stable_and_not_flannels() -> None:
    assert hosts_section.vni("multi") == hosts_section.vni("multi") and hosts_section.vni("x") not in (0, 1)


def test_services_across_hosts_bring_the_external_network_on_the_first_nodes_host() -> None:
    from emulator.external.component import ExternalComponent, builds_here
    from emulator.lab.builder import local_view
    from emulator.services.dnshost import here as dns_here
    from emulator.topology.sections import has_gateway
    topo = loads(BASE + "services: [{name: web, selector: {app: web}, ports: [{port: 80}]}]\n", "t.yaml")
    hs = hosts_section.of(topo)
    assert hs is not None and hs.lab_host == "vm1"
    parts = {h.name: local_view(topo, frozenset(hs.nodes_on(h.name))) for h in hs.hosts}
    assert {h: dns_here(t) for h, t in parts.items()} == {"vm1": True, "vm2": False, "vm3": False}
    # as on one machine, Services bring the external network (the nodes' default route, SNAT, node-to-ClusterIP);
    # its router and host are built once, on the host of the first node, and recorded only there
    assert has_gateway(topo) and has_gateway(loads(BASE + "external: {}\n", "t.yaml"))
    assert not has_gateway(loads(BASE + "services: []\nexternal: false\n", "t.yaml"))
    assert not has_gateway(loads(BASE, "t.yaml"))
    assert {h: builds_here(t) for h, t in parts.items()} == {"vm1": True, "vm2": False, "vm3": False}
    assert {h: ExternalComponent().namespaces(t) for h, t in parts.items()} == {
        "vm1": ["multi-gw", "multi-external"], "vm2": [], "vm3": []}
    pinned = loads(BASE.replace("{name: node-1}", "{name: node-1, host: vm3}") + "external: {}\n", "t.yaml")
    hp = hosts_section.of(pinned)
    assert hp is not None and hp.lab_host == "vm3"
    assert builds_here(loads("version: 1\nname: a\nnodes: [{name: n1}]\nexternal: {}\n", "t.yaml"))


def test_controller_places_external_on_its_host() -> None:
    from emulator.hosts.capture import host_of_target
    from emulator.hosts.controller import where
    st = {"pods": [{"name": "web-2", "host": "vm2"}], "nodes": [{"name": "node-1", "host": "vm1"}],
          "record": {"external": "vm1"}}
    found = where(st)
    assert found == {"web-2": "vm2", "node-1": "vm1", "external": "vm1"}
    assert host_of_target("external", found, ["vm1", "vm2"]) == ["vm1"]
    assert host_of_target("external:eth0", found, ["vm1", "vm2"]) == ["vm1"]
    assert "external" not in where({**st, "record": {"external": None}})


def test_check_across_hosts_snat_to_external_wants_the_node_address() -> None:
    from emulator.hosts.labcheck import _snat, lab_text
    st = {"pods": [{"name": "a", "node": "node-1"}, {"name": "b", "node": "node-2"}, {"name": "c", "node": "node-3"}]}
    rec = {"nodeIPs": {"node-1": "192.168.56.11", "node-2": "192.168.56.12", "node-3": "192.168.56.13"}}
    res = {"vm1": [{"src": "a", "seen": "192.168.56.11"}],
           "vm2": [{"src": "b", "seen": "10.244.2.2"}], "vm3": [{"src": "c", "seen": None}]}
    got = _snat(res, st, rec)
    assert got["pods"] == 3 and got["failures"] == [
        "b (vm2, node node-2) -> external: it saw 10.244.2.2, not the node's 192.168.56.12",
        "c (vm3, node node-3) -> external: no answer, not the node's 192.168.56.13"]
    text = lab_text({"lab": "l", "hosts": ["vm1"], "unreachable": {}, "failures": [], "nat": [], "pairs": 1,
                     "mtu": 1450, "mtuProblem": None, "external": got, "ok": False})
    assert "FAIL snat-to-external: 1/3 pods seen by the external host with their node's IP" in text
    assert "it saw 10.244.2.2" in text and text.endswith("FAIL\n")


def test_up_across_hosts_takes_external_and_link_but_refuses_network_policies_by_name() -> None:
    from emulator import plugins
    from emulator.errors import BuildError
    from emulator.hosts import controller
    from emulator.lab import components
    plugins.install()
    shaped = loads(BASE.replace("{name: node-2}", "{name: node-2, link: {rate: 10mbit}}") + "external: {}\n",
                   "t.yaml")
    assert {c.name for c in components.active(shaped)} - controller.ACROSS_HOSTS == set()
    with pytest.raises(BuildError) as e:  # before any host is asked anything
        controller.up(loads(BASE + "external: {}\nnetworkPolicies: []\n", "t.yaml"))
    assert "networkpolicy is not available across hosts yet" in str(e.value)
    assert "the external network, link shaping" in str(e.value) and "drop networkPolicies" in str(e.value)
