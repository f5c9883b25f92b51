"""``describe node NAME``: what a node is and how it reaches the other nodes' pods, read from its kernel.

Shows the node's addresses (per interface, with the link state), its pod CIDR, the routing mode with its live
status, the route it holds for every other node's slice and that route's origin (``bird`` learned over BGP,
``onlink`` flannel's vxlan route, ``static`` a host-gw route; ``<none>`` when the node has no route for it, e.g.
after BGP withdrew it), the faults injected on it, and what the mode adds (for bgp: the sessions). ``-o json``
gives the same as one object.
"""
from __future__ import annotations

import argparse
import io

from emulator import faults, routing
from emulator.cli import output, routing_view
from emulator.lab.api import Lab
from emulator.netlink.observe import Snapshot
from emulator.routing import held_routes


def addresses(snap: Snapshot) -> list[dict]:
    """Interfaces of the namespace with their IPv4 addresses and state (loopback left out)."""
    addrs: dict[int, list[str]] = {}
    for a in snap.addrs:
        addrs.setdefault(a.index, []).append(a.text())
    return [{"name": link.name, "addresses": addrs.get(link.index, []), "up": link.up, "operState": link.operstate,
             "mtu": link.mtu} for link in sorted(snap.links.values(), key=lambda link: link.index)
            if link.name != "lo"]


def describe(lab: Lab, node: str) -> dict:
    nv = lab.node(node)
    mode_name = lab.record.get("routing", "")
    mode = routing.get(mode_name)
    slices = {o.name: o.pod_cidr for o in lab.nodes if o.name != node}
    with Snapshot(ns=nv.netns, label=node) as snap:
        held = held_routes.for_slices(snap.routes, slices)
        interfaces = addresses(snap)
    try:
        report = mode.node_report(lab.name, node)
        status = routing_view.status_word(mode_name, report)
    except Exception as e:  # a status probe must not break describe; the reason is shown as the status
        status = f"unknown ({e})"
    mine = [f.as_dict() for f in faults.list_faults(lab) if node in f.nodes]
    out = {"name": node, "lab": lab.name, "netns": nv.netns, "internalIP": nv.ip, "podCIDR": nv.pod_cidr,
           "ready": nv.ready, "runtime": nv.runtime, "routing": {"mode": mode_name, "status": status},
           "interfaces": [i for i in interfaces if not i["name"].startswith("veth")],
           "podVeths": sum(1 for i in interfaces if i["name"].startswith("veth")),
           "routesToOtherNodes": [{"node": n, "podCIDR": slices[n], **(r.as_dict() if r else {"origin": None})}
                                  for n, r in held.items()],
           "faults": mine}
    if report:
        out[mode_name] = report
    return out


def render(d: dict, mode_lines: list[str]) -> str:
    buf = io.StringIO()
    w = buf.write
    status = d["routing"]["status"]
    w(f"Name:          {d['name']}\nLab:           {d['lab']}\nNetns:         {d['netns']}\n"
      f"InternalIP:    {d['internalIP']}\nPodCIDR:       {d['podCIDR']}\n"
      f"Routing:       {d['routing']['mode']}{f' ({status})' if status else ''}\n"
      f"Ready:         {d['ready']} ({'Docker host: no kubelet, docker0' if d.get('runtime') == 'docker' else 'agent'})"
      "\nInterfaces:\n")
    rows = [[i["name"], ", ".join(i["addresses"]) or "-", "UP" if i["up"] else "DOWN", i["operState"], i["mtu"]]
            for i in d["interfaces"]]
    sub = io.StringIO()
    output.table(["NAME", "ADDRESSES", "ADMIN", "OPER", "MTU"], rows, out=sub)
    w("".join("  " + ln + "\n" for ln in sub.getvalue().splitlines()))
    w(f"  (+ {d['podVeths']} pod veth{'s' if d['podVeths'] != 1 else ''} on cni0)\n")
    w("Routes to other nodes' pods:\n")
    rows = [[r["node"], r["podCIDR"], r.get("gateway") or "-", r.get("dev") or "-",
             r["origin"] or "<none>"] for r in d["routesToOtherNodes"]]
    sub = io.StringIO()
    output.table(["NODE", "POD-CIDR", "VIA", "DEV", "ORIGIN"], rows, out=sub)
    w("".join("  " + ln + "\n" for ln in sub.getvalue().splitlines()))
    w("Faults:" + ("        <none>\n" if not d["faults"] else "\n"))
    for f in d["faults"]:
        what = "uplink down (port unplugged from the LAN)" if f["kind"] == "node" else \
            f"link {' <-> '.join(f['nodes'])} cut ({f.get('droppedPackets', 0)} packets dropped)"
        w(f"  {what} since {f['since'] or '?'}\n")
    for line in mode_lines:
        w(line + "\n")
    return buf.getvalue()


def describe_node(lab: Lab, name: str, a: argparse.Namespace) -> int:
    d = describe(lab, name)
    if getattr(a, "output", "text") == "json":
        output.emit_json(d)
        return 0
    mode = d["routing"]["mode"]
    print(render(d, routing_view.describe_lines(mode, d.get(mode, {}))), end="")
    return 0
