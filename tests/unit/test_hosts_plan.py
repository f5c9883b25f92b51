"""Multi-host planning in pure code: the MTU budget, the per-host plans, the proof pairs, errors over the wire."""
from __future__ import annotations

import pytest

from emulator.errors import HostError, HostVersionError, MtuError, NotFoundError
from emulator.hosts import plan, protocol, stretch
from emulator.hosts.transport import serve_command
from emulator.topology import hosts_section
from emulator.topology.loader import loads

TOPO = """
version: 1
name: multi
hosts:
  - {name: vm1, address: 192.168.57.11}
  - {name: vm2, address: 192.168.57.12, user: vagrant}
  - {name: vm3, address: 192.168.57.13}
nodes: [{name: n1}, {name: n2}, {name: n3}, {name: n4}]
"""


def test_mtu_budget_smallest_nic_less_50() -> None:
    assert stretch.choose_mtu({"vm1": ("eth1", 1500), "vm2": ("eth1", 1600)}, None) == 1450
    assert stretch.choose_mtu({"vm1": ("eth1", 1550)}, 1500) == 1500
    with pytest.raises(MtuError) as e:
        stretch.choose_mtu({"vm1": ("eth1", 1600), "vm2": ("enp0s8", 1500)}, 1500)
    assert e.value.obj == "vm2" and "enp0s8 has MTU 1500" in str(e.value) and "mtu: 1450" in str(e.value)
    assert "1550" in str(e.value)
    with pytest.raises(MtuError):
        stretch.choose_mtu({"vm1": ("eth1", 1300)}, None)


def test_plans_split_nodes_and_name_peers() -> None:
    topo = loads(TOPO, "t.yaml")
    hs = hosts_section.of(topo)
    assert hs is not None
    plans = plan.host_plans(topo, hs, text=TOPO, inventory=None, name=None, routing=None, mtu=1450,
                            nics={"vm1": "eth1", "vm2": "eth1", "vm3": "eth2"})
    assert plans["vm1"]["nodes"] == ["n1", "n4"] and plans["vm3"]["nodes"] == ["n3"]
    st = plans["vm3"]["stretch"]
    assert st["nic"] == "eth2" and st["peers"] == ["192.168.57.11", "192.168.57.12"] and st["port"] == 14790
    assert st["vni"] == hosts_section.vni("multi") and plans["vm2"]["mtu"] == 1450


def test_proof_pairs_every_ordered_host_pair_at_full_size() -> None:
    topo = loads(TOPO, "t.yaml")
    hs = hosts_section.of(topo)
    assert hs is not None
    pairs = plan.ping_pairs(topo, hs, 1450)
    assert sum(len(v) for v in pairs.values()) == 6
    assert {(p["from"], p["to"], p["size"]) for p in pairs["vm2"]} == {("n2", "192.168.56.11", 1422),
                                                                       ("n2", "192.168.56.13", 1422)}


def test_sudo_only_for_other_users() -> None:
    hs = hosts_section.of(loads(TOPO, "t.yaml"))
    assert hs is not None
    assert serve_command(hs.host("vm1")) == "podlab host serve"
    assert serve_command(hs.host("vm2")) == "sudo -n podlab host serve"


def test_errors_cross_the_wire_as_their_class() -> None:
    with pytest.raises(HostVersionError) as e:
        protocol.raise_remote("vm2", {"type": "HostVersionError", "message": "old", "obj": None})
    assert str(e.value) == "host vm2: old" and e.value.obj == "vm2"
    with pytest.raises(HostError) as e2:  # NotFoundError has its own constructor: a HostError with its exit code
        protocol.raise_remote("vm1", {"type": "NotFoundError", "message": "lab x not found", "obj": "x"})
    assert e2.value.exit_code == NotFoundError.exit_code and "host vm1" in str(e2.value)
    with pytest.raises(HostError):
        protocol.raise_remote("vm1", {"type": "KeyError", "message": "'x'"})
