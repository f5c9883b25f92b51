"""Encoding hot-path requests once: pyroute2 builds a template, later requests only fill fixed-width fields.

A pod's ADD sends the same seven requests as every other pod's, differing only in a few fixed-width values (an
interface name of the same length, an ifindex, an fd, an IPv4 address, a MAC). pyroute2's generic encoder costs
about 0.15 ms per message, more than the kernel's own work for several of them. ``fast(kind, build, **values)``
encodes ``build(**values)`` once with sentinel values, records where each value landed, and from then on copies
those bytes and writes the real values in place. The template is keyed by the request kind and the widths of its
string values, and it is checked when made: the patched bytes must equal pyroute2's own encoding of the real
values, otherwise that kind is always encoded by pyroute2 (so a template can never send different bytes).
"""
from __future__ import annotations

import random
import re
import socket
import struct
from dataclasses import dataclass
from typing import Callable

from emulator.netlink.rtnl import Request

_IPV4 = re.compile(r"^\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}$")
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


@dataclass(frozen=True)
class _Template:
    raw: bytes
    type: int
    flags: int
    ok_errnos: tuple[int, ...]
    fields: tuple[tuple[str, tuple[int, ...], str], ...]  # (value name, offsets, kind: int|ipv4|mac|str)


_TEMPLATES: dict[tuple, _Template | None] = {}


def _kind(v: object) -> str:
    if isinstance(v, bool) or not isinstance(v, (int, str)):
        raise TypeError(f"cannot template a {type(v).__name__}")
    if isinstance(v, int):
        return "int"
    if _IPV4.match(v):
        return "ipv4"
    return "mac" if _MAC.match(v) else "str"


def _bytes(kind: str, v: object) -> bytes:
    if kind == "int":
        return struct.pack("=I", int(v) & 0xFFFFFFFF)  # type: ignore[arg-type]
    if kind == "ipv4":
        return socket.inet_aton(str(v))
    if kind == "mac":
        return bytes.fromhex(str(v).replace(":", ""))
    return str(v).encode()


def _sentinel(kind: str, real: object, rng: random.Random) -> object:
    if kind == "int":
        return rng.randrange(0x10000000, 0x7FFFFFFF)
    if kind == "ipv4":
        return ".".join(str(rng.randrange(11, 250)) for _ in range(4))
    if kind == "mac":
        return ":".join(f"{b:02x}" for b in [0x02] + [rng.randrange(16, 250) for _ in range(5)])
    return "".join(rng.choice("QXJZKVW") for _ in range(len(str(real))))


def _encoded(req: Request) -> bytes:
    m = req.msg
    m["header"]["type"] = req.type
    m["header"]["flags"] = req.flags
    m["header"]["sequence_number"] = 0
    m.encode()
    return bytes(m.data)


def _make(build: Callable[..., Request], values: dict[str, object]) -> _Template | None:
    rng = random.Random(0x5EED)
    kinds = {k: _kind(v) for k, v in values.items()}
    for _attempt in range(4):
        sentinels = {k: _sentinel(kinds[k], v, rng) for k, v in values.items()}
        tpl_req = build(**sentinels)
        raw = _encoded(tpl_req)
        fields = []
        for k, s in sentinels.items():
            b = _bytes(kinds[k], s)
            offsets = tuple(m.start() for m in re.finditer(re.escape(b), raw))
            if not offsets:
                break
            fields.append((k, offsets, kinds[k]))  # e.g. an address is both IFA_LOCAL and IFA_ADDRESS
        else:
            tpl = _Template(raw, tpl_req.type, tpl_req.flags, tpl_req.ok_errnos, tuple(fields))
            real = build(**values)
            if _fill(tpl, values) == _encoded(real):  # the template reproduces pyroute2's bytes exactly
                return tpl
            return None
    return None


def _fill(tpl: _Template, values: dict[str, object]) -> bytes:
    data = bytearray(tpl.raw)
    for name, offsets, kind in tpl.fields:
        b = _bytes(kind, values[name])
        for off in offsets:
            data[off:off + len(b)] = b
    return bytes(data)


def fast(kind: str, build: Callable[..., Request], **values: object) -> Request:
    """``build(**values)``, encoded from a template when one exists for this kind and these widths."""
    key = (kind,) + tuple((k, len(v) if isinstance(v, str) and _kind(v) == "str" else -1)
                          for k, v in sorted(values.items()))
    if key not in _TEMPLATES:
        try:
            _TEMPLATES[key] = _make(build, values)
        except (TypeError, ValueError):
            _TEMPLATES[key] = None
    tpl = _TEMPLATES[key]
    if tpl is None:
        return build(**values)
    obj = build.__name__ if hasattr(build, "__name__") else kind
    return Request(None, tpl.type, tpl.flags, obj=f"{kind} {values}"[:120] or obj, ok_errnos=tpl.ok_errnos,
                   raw=_fill(tpl, values))
