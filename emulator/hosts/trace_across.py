"""``podlab trace`` of a multi-host lab: the walk goes host by host, each host walking its own namespaces.

The source's host walks first (``tools.trace.trace``, as on one machine; a destination named on another host is
given to it as that pod's or node's address). Where the frame leaves that host's underlay through its stretch
(``stretch0``, a VXLAN port of ``lan0``), the walk stops there with a ``handoff``: the packet, the inner packets
of a VXLAN tunnel it carries, and the frame's next hop on the LAN. The controller finds the host holding that next
hop (a node's address, the DNS host's, the external network's router or host: ``external`` named as a destination
on another host is given as its address) and asks it to go on (``tools.trace.resume``) from its own stretch port;
and so on until the packet is delivered or dropped. The hops of every host are put together, each named
``HOST/PLACE`` (``vm2/node-2 flannel.1``), so the path reads hop by hop across the hosts.
"""
from __future__ import annotations

from emulator.errors import LabNotFoundError, NotFoundError, UsageError
from emulator.hosts import controller, records, services
from emulator.hosts.sessions import for_command
from emulator.tools.trace_model import TraceResult, result_from_dict

MAX_HOSTS_ON_PATH = 6  # a frame crosses at most this many host boundaries before the walk gives up


def _name(target: str) -> str:
    return target.split("/")[-1]


def _split_port(text: str) -> tuple[str, str]:
    head, _, tail = text.rpartition(":")
    return (head, f":{tail}") if head and tail.isdigit() else (text, "")


def merge(parts: list[tuple[str, dict]], src: str, dst: str) -> TraceResult:
    """One result from every host's part, each hop named with its host (pure)."""
    results = [(h, result_from_dict(d)) for h, d in parts]
    first, last = results[0][1], results[-1][1]
    out = TraceResult(first.lab, first.routing, src, dst, first.packet)
    for host, r in results:
        for hop in r.hops:
            hop.at = f"{host}/{hop.at}"
            out.hops.append(hop)
    out.delivered = last.delivered
    problems = [f"host {h}: {r.problem}" for h, r in results if r.problem]
    out.problem = problems[0] if problems else None
    if last.handoff and not out.problem:
        out.problem = (f"host {results[-1][0]}: the frame for {last.handoff['nexthop']} left by the stretch and no "
                       f"host of the lab holds that address")
    return out


def trace(lab: str, src: str, dst: str, proto: str | None, port: int | None, endpoint: str | None,
          verify: bool = False) -> TraceResult:
    rec = records.load(lab)
    if rec is None:
        raise LabNotFoundError(lab, known=records.all_labs())
    if verify:
        raise UsageError(f"trace --verify is not available across hosts yet (lab {lab}); trace without it",
                         obj="--verify")
    hosts = {d["name"]: records.host_of(d) for d in rec["hosts"]}
    with for_command() as ss:
        st = controller.status(lab, ss)
        where = controller.where(st)
        ip_host = {ip: rec["placement"][n] for n, ip in rec["nodeIPs"].items()}
        ip_host |= {p["ip"]: p["host"] for p in st["pods"] if p.get("ip")}
        ext_ips = rec.get("externalIPs") or {}
        ip_host |= {ip: rec["external"] for ip in ext_ips.values()}  # the router on the LAN, the host behind it
        if rec.get("services"):
            dns = services.store_of(lab).get("endpoints", "kube-dns", "kube-system") or {}
            for s in dns.get("subsets", []):
                for a in s.get("addresses", []):
                    ip_host[a["ip"]] = rec["placement"][next(iter(rec["placement"]))]
        if _name(src) not in where:
            raise NotFoundError("pod or node", _name(src), f"multi-host lab {lab}", known=sorted(where))
        host = where[_name(src)]
        dname, suffix = _split_port(dst)
        given = dst
        if _name(dname) in where and where[_name(dname)] != host:  # named on another host: its address here
            ip = (ext_ips["host"] if _name(dname) == "external" else rec["nodeIPs"].get(_name(dname))
                  or next(p["ip"] for p in st["pods"] if p["name"] == _name(dname)))
            given = f"{ip}{suffix}"
        r = ss.get(hosts[host]).request("trace", lab=lab, src=src, dst=given, proto=proto, port=port,
                                        endpoint=endpoint, timeout=60)
        parts = [(host, r)]
        while r.get("handoff") and not r.get("problem") and len(parts) < MAX_HOSTS_ON_PATH:
            nxt = ip_host.get(r["handoff"]["nexthop"])
            if nxt is None or nxt == host:
                break
            host = nxt
            r = ss.get(hosts[host]).request("trace", lab=lab, resume=r["handoff"], src=src, dst=dst,
                                            endpoint=endpoint, timeout=60)
            parts.append((host, r))
    return merge(parts, src, dst)
