"""Templated requests must be byte-for-byte what pyroute2 encodes for the same values."""
from __future__ import annotations

import random

from emulator.netlink import msgs
from emulator.netlink.rtnl import Rtnl
from emulator.netlink.templates import _TEMPLATES, _encoded, fast


def raw_of(req) -> bytes:
    data = bytearray(req.raw)
    data[4:16] = _encoded_header_zero(req)
    return bytes(data)


def _encoded_header_zero(req) -> bytes:
    import struct
    return struct.pack("=HHII", req.type, req.flags, 0, 0)


def test_templates_reproduce_pyroute2_bytes() -> None:
    rng = random.Random(1)
    cases = []
    for _ in range(50):
        ip = f"10.244.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        mac = ":".join(f"{rng.randrange(256):02x}" for _ in range(6))
        idx, fd, master = rng.randrange(1, 5000), rng.randrange(3, 1000), rng.randrange(1, 300)
        host = "veth" + "".join(rng.choice("0123456789abcdef") for _ in range(8))
        cases += [
            (fast("veth", lambda host, peer, fd, master: msgs.link_add_veth(host, peer, fd, 1450, master=master),
                  host=host, peer="eth0", fd=fd, master=master),
             msgs.link_add_veth(host, "eth0", fd, 1450, master=master)),
            (fast("mac", lambda idx, mac: msgs.link_set(idx, "eth0", up=True, mac=mac), idx=idx, mac=mac),
             msgs.link_set(idx, "eth0", up=True, mac=mac)),
            (fast("addr", lambda idx, ip: msgs.addr_add(idx, ip, 24, "eth0"), idx=idx, ip=ip),
             msgs.addr_add(idx, ip, 24, "eth0")),
            (fast("route", lambda gw, idx: msgs.route_add("0.0.0.0", 0, "r", gateway=gw, oif=idx, replace=False),
                  gw=ip, idx=idx),
             msgs.route_add("0.0.0.0", 0, "r", gateway=ip, oif=idx, replace=False)),
        ]
    for templated, plain in cases:
        assert templated.raw is not None
        assert raw_of(templated) == _encoded(plain)
    assert all(v is not None for k, v in _TEMPLATES.items() if k[0] in ("veth", "mac", "addr", "route"))


def test_rtnl_encodes_header_of_templated_requests() -> None:
    rt = Rtnl.__new__(Rtnl)
    rt._seq = 41
    req = fast("lo", lambda: msgs.link_set(1, "lo", up=True))
    seq, data = rt._encode(req, 4)
    import struct
    length, mtype, flags, s, _ = struct.unpack_from("=IHHII", data)
    assert (length, s) == (len(data), 42) and mtype == req.type and flags & 1 and flags & 4


def test_untemplatable_values_fall_back() -> None:
    req = fast("weird", lambda up: msgs.link_set(1, "lo", up=up), up=True)  # a bool is not a fixed-width field
    assert req.raw is None and req.msg is not None
