"""Capture across hosts in pure code: where each point is captured, the clock offsets, the merge into one pcapng."""
from __future__ import annotations

import base64
import io

import pytest

from emulator.errors import TargetError
from emulator.hosts import capture as across
from emulator.tools import pcapng

WHERE = {"web-1": "vm1", "web-2": "vm2", "node-1": "vm1", "node-2": "vm2"}
HOSTS = ["vm1", "vm2", "vm3"]


def test_points_go_to_the_host_that_holds_them() -> None:
    plan = across.plan_points(["web-1", "pod/web-2:eth0", "node-2:flannel.1", "node/node-1", "underlay:node-2"],
                              WHERE, HOSTS)
    assert plan == {"vm1": ["web-1", "node/node-1"], "vm2": ["pod/web-2:eth0", "node-2:flannel.1",
                                                             "underlay:node-2"]}


def test_the_underlay_is_captured_on_every_host() -> None:
    assert across.plan_points(["underlay"], WHERE, HOSTS) == {h: ["underlay"] for h in HOSTS}
    assert across.plan_points(["underlay:stretch0"], WHERE, HOSTS) == {h: ["underlay:stretch0"] for h in HOSTS}


def test_unknown_point_names_what_exists() -> None:
    with pytest.raises(TargetError, match="no pod or node 'web-9'.*web-1"):
        across.plan_points(["web-9"], WHERE, HOSTS)


def test_offset_from_the_shortest_round_trip() -> None:
    # host clock 2.0 s ahead; the second sample has the shortest round trip (2 ms)
    samples = [(100.0, 102.004, 100.010), (100.1, 102.101, 100.102), (100.2, 102.206, 100.212)]
    o = across.offset_from(samples, "vm2")
    assert o.host == "vm2" and o.seconds == pytest.approx(2.0, abs=1e-9) and o.uncertainty == pytest.approx(0.001)
    assert o.applied == o.seconds and o.text() == "vm2 +2000.000 ms (±1.000 ms, applied)"
    same_clock = across.offset_from([(5.0, 5.0004, 5.001)], "vm3")  # the reading lies inside the round trip
    assert same_clock.applied == 0.0 and "not applied" in same_clock.text()


def test_merge_names_interfaces_by_host_and_orders_packets_on_the_controllers_clock() -> None:
    def res(label: str, packets: list[tuple[int, bytes]]) -> dict:
        return {"interfaces": [{"name": label, "description": f"eth0 of pod {label}", "linktype": 1,
                                "snaplen": 262144}], "counts": {label: len(packets)},
                "packets": [[ts, len(d), 0, base64.b64encode(d).decode()] for ts, d in packets]}
    results = {"vm1": res("web-1:eth0", [(1_000_000, b"a" * 60), (1_000_300, b"c" * 60)]),
               "vm2": res("web-2:eth0", [(3_000_200, b"b" * 60)])}  # vm2's clock is 2 s ahead
    offsets = {"vm1": across.Offset("vm1", 0.0, 1e-4), "vm2": across.Offset("vm2", 2.0, 1e-4)}
    m = across.merge(results, offsets)
    assert [i.name for i in m.interfaces] == ["vm1/web-1:eth0", "vm2/web-2:eth0"]
    assert m.interfaces[1].description.endswith("host vm2")
    assert [(p.ts_us, p.data[:1], p.iface) for p in m.packets] == [(1_000_000, b"a", 0), (1_000_200, b"b", 1),
                                                                     (1_000_300, b"c", 0)]
    assert m.counts == {"vm1/web-1:eth0": 2, "vm2/web-2:eth0": 1}
    buf = io.BytesIO()
    pcapng.write_file(buf, m.interfaces, m.packets)
    ifaces, packets = pcapng.read(buf.getvalue())
    assert [i.name for i in ifaces] == ["vm1/web-1:eth0", "vm2/web-2:eth0"] and len(packets) == 3
