"""The topology's optional ``bgp`` section (used by ``routing: bgp``), validated like the rest of the file.

    bgp:
      asn: 64512            # the cluster's AS (iBGP: every node in it); Calico's default
      mode: mesh            # mesh: every node peers with every other | reflector: nodes peer with reflectors only
      reflectors: [node-1]  # reflector mode only; default: the first node

The result is a plain dict (``asn``, ``mode``, ``reflectors``) kept in ``Topology.extra["bgp"]``; the bgp routing
mode reads it (``emulator.routing.bird.settings``). With another routing mode the section is checked and unused,
so ``--routing vxlan`` on a bgp topology still loads.
"""
from __future__ import annotations

from typing import Any

from emulator.topology.model import Node
from emulator.topology.validate import Validator, did_you_mean, is_int, show

BGP_KEYS = ("asn", "mode", "reflectors")
LAYOUTS = ("mesh", "reflector")
DEFAULT_ASN = 64512
MAX_ASN = 4294967294  # 4-byte AS numbers; 4294967295 is reserved


def parse(v: Validator, raw: object, nodes: tuple[Node, ...]) -> dict[str, Any]:
    data = v.mapping(raw, "bgp", BGP_KEYS, "bgp")
    asn = data.get("asn", DEFAULT_ASN)
    if not is_int(asn) or not 1 <= asn <= MAX_ASN:
        v.fail("bgp.asn", f"AS number {show(asn)} is not an integer from 1 to {MAX_ASN}",
               f"use a private AS number (64512-65534 or 4200000000-4294967294), e.g. 'asn: {DEFAULT_ASN}'")
    mode = v.choice(data.get("mode", "mesh"), "bgp.mode", LAYOUTS, "bgp layout")
    known = [n.name for n in nodes]
    reflectors = v.list_of(data.get("reflectors"), "bgp.reflectors", "bgp.reflectors", f"[{known[0]}]")
    if reflectors and mode != "reflector":
        v.fail("bgp.reflectors", f"reflectors {show(reflectors)} are given but bgp.mode is '{mode}' (every node "
               "peers with every other in a mesh)", "set 'mode: reflector', or drop 'reflectors'")
    seen: set[str] = set()
    for i, r in enumerate(reflectors):
        if r not in known:
            hint = did_you_mean(r, known)
            v.fail(f"bgp.reflectors[{i}]", f"unknown node {show(r)}; known nodes: {', '.join(known)}",
                   (hint + " " if hint else "") + "list node names from 'nodes'")
        if r in seen:
            v.fail(f"bgp.reflectors[{i}]", f"node '{r}' is listed twice", "list each reflector once")
        seen.add(r)
    if mode == "reflector" and not reflectors:
        reflectors = [known[0]]
    return {"asn": asn, "mode": mode, "reflectors": list(reflectors)}
