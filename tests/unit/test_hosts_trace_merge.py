"""``trace`` of a multi-host lab: every host's part joined hop by hop, each hop named with its host (pure)."""
from __future__ import annotations

from emulator.hosts.trace_across import _split_port, merge
from emulator.tools.trace_model import Check, Hop, Packet, TraceResult, result_from_dict

PKT = Packet("10.244.1.2", "10.244.3.2", "tcp", 8080)


def part(hops: list[tuple[str, str, str]], delivered: bool = False, handoff: dict | None = None,
         problem: str | None = None) -> dict:
    r = TraceResult("x", "vxlan", "client", "back-3:8080", PKT,
                    [Hop(at, "pod", f"x-{at}", iface, action, "t", [Check(f"x-{at}", iface, "tx")])
                     for at, iface, action in hops], delivered, problem, None, handoff)
    return r.as_dict()


def test_a_result_crosses_the_wire_unchanged() -> None:
    d = part([("client", "eth0", "out")], handoff={"port": "stretch0", "nexthop": "192.168.56.12"})
    r = result_from_dict(d)
    assert r.as_dict() == d and r.hops[0].checks == [Check("x-client", "eth0", "tx")]


def test_parts_are_joined_with_their_hosts() -> None:
    a = part([("client", "eth0", "out"), ("underlay", "stretch0", "out")],
             handoff={"port": "stretch0", "nexthop": "192.168.56.12", "packet": {}, "stack": []})
    b = part([("underlay", "stretch0", "in"), ("back-3", "eth0", "in"), ("back-3", "eth0", "deliver")],
             delivered=True)
    r = merge([("vm1", a), ("vm3", b)], "client", "back-3:8080")
    assert r.ok and [h.at for h in r.hops] == ["vm1/client", "vm1/underlay", "vm3/underlay", "vm3/back-3",
                                               "vm3/back-3"]
    assert r.path() == "vm1/client eth0 → vm1/underlay stretch0 → vm3/underlay stretch0 → vm3/back-3 eth0"


def test_a_problem_names_its_host_and_a_lost_handoff_is_one() -> None:
    r = merge([("vm1", part([("client", "eth0", "out")], problem="node-1 has no route"))], "client", "x")
    assert not r.ok and r.problem == "host vm1: node-1 has no route"
    lost = merge([("vm2", part([("client", "eth0", "out")], handoff={"nexthop": "192.168.56.99"}))], "client", "x")
    assert lost.problem is not None and "192.168.56.99" in lost.problem and "no host" in lost.problem


def test_a_destination_port_is_kept_apart() -> None:
    assert _split_port("back-3:8080") == ("back-3", ":8080") and _split_port("pod/back-3") == ("pod/back-3", "")
