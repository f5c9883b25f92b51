"""One route-origin vocabulary: ``describe node`` (held_routes) and ``trace`` read one ``observe.Route``, so they
name a route alike."""
from __future__ import annotations

import ipaddress

import pytest

from emulator.netlink import origin
from emulator.netlink.observe import Route


def route(proto: int, onlink: bool = True) -> Route:
    return Route(ipaddress.IPv4Network("10.244.2.0/24"), "flannel.1", "10.244.2.0", onlink, proto, 0, 1)


@pytest.mark.parametrize("proto,onlink,word", [(2, False, "connected"), (3, True, "onlink"), (3, False, "static"),
                                               (4, False, "static"), (12, False, "bird"), (186, False, "bgp"),
                                               (99, False, "proto 99")])
def test_describe_node_and_trace_say_the_same(proto: int, onlink: bool, word: str) -> None:
    r = route(proto, onlink)
    assert r.origin == origin.origin(proto, onlink) == word == r.as_dict()["origin"]


def test_ip_route_text_hides_only_proto_boot() -> None:
    assert route(3).text() == "10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink"
    assert route(12).text() == "10.244.2.0/24 via 10.244.2.0 dev flannel.1 proto bird onlink"
    assert route(2).text() == "10.244.2.0/24 via 10.244.2.0 dev flannel.1 proto kernel onlink"
    assert route(3).origin == "onlink" and route(2).origin == "connected"
