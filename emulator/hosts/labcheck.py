"""Checks across hosts: ``podlab host check`` (can each host take part?) and ``podlab check`` of a multi-host lab.

``hosts``: every host at once, each row naming what failed and the fix: SSH (reachable, host key known, key
accepted), root (``sudo -n`` for another user), podlab's version equal to the controller's, the interface holding
the host's address and its MTU (the underlay gets MTU - 50), the vxlan module, the tunnel's UDP port free.

``lab``: the network model across machines, proven from inside the pods: every Running pod, on every host, opens
a TCP connection to every pod's netexec (``/clientip``) and the *receiver* reports the source address it saw —
equal to the sender's pod IP, or the pair is a NAT failure; no answer is a reachability failure. With an external
network, every pod also asks the external host's echo server (on the host of the first node) for ``/clientip``:
it must see the pod's node's address (SNAT at the cluster's edge, as the one-machine ``snat-to-external`` check
says). Then the DF pings of ``controller.prove`` again (the underlay still carries its MTU between every pair of
hosts).
"""
from __future__ import annotations

from typing import Any, Callable

from emulator.errors import HostError, PodlabError
from emulator.external.component import ECHO_HTTP_PORT
from emulator.hosts import controller, protocol, records
from emulator.hosts.sessions import Sessions, for_command
from emulator.hosts.transport import HostSession
from emulator.topology.hosts_section import Host
from emulator.topology.model import VXLAN_OVERHEAD

Progress = Callable[[str], None]


def hosts(hs: list[Host], port: int) -> list[dict[str, Any]]:
    def one(h: Host) -> dict[str, Any]:
        row: dict[str, Any] = {"host": h.name, "address": str(h.address), "ok": False}
        with HostSession(h) as s:
            row["version"] = s.hello.get("version")
            row["root"] = s.hello.get("uid") == 0
            info = s.request("info", address=str(h.address), port=port, timeout=15)
        row.update(nic=info["nic"], mtu=info["mtu"], vxlan=info["vxlan"], portInUse=info["portInUse"])
        if row["version"] != protocol.podlab_version():
            row["problem"] = (f"podlab {row['version']} there, {protocol.podlab_version()} here; fix: install the same "
                              "podlab on every host")
        elif not info["nic"]:
            row["problem"] = f"no interface holds {h.address}; fix: use the address the hosts reach each other on"
        elif not info["vxlan"]:
            row["problem"] = "no vxlan kernel module; fix: install linux-modules-extra-$(uname -r)"
        elif info["portInUse"] and not info["multihostLabs"]:
            row["problem"] = f"UDP {port} is taken; fix: choose another 'tunnel: {{port: N}}'"
        else:
            row["ok"] = True
            row["underlayMtu"] = info["mtu"] - VXLAN_OVERHEAD
        return row
    res = controller.each(hs, one)
    out = []
    for h in hs:
        r = res[h.name]
        if isinstance(r, BaseException):
            kind = type(r).__name__ if isinstance(r, PodlabError) else "error"
            out.append({"host": h.name, "address": str(h.address), "ok": False, "problem": str(r), "error": kind})
        else:
            out.append(r)  # type: ignore[arg-type]
    return out


def lab(name: str, progress: Progress = lambda s: None, port: int = 8080) -> dict[str, Any]:
    with for_command() as ss:  # one connection per host for the status, the matrix and the DF pings
        return _lab(name, progress, port, ss)


def _lab(name: str, progress: Progress, port: int, ss: Sessions) -> dict[str, Any]:
    st = controller.status(name, ss)
    rec = st["record"]
    result: dict[str, Any] = {"lab": name, "hosts": [d["name"] for d in rec["hosts"]], "unreachable":
                              st["unreachable"], "failures": [], "nat": [], "pairs": 0}
    if st["unreachable"]:
        result["ok"] = False
        return result
    targets = [{"name": p["name"], "ip": p["ip"]} for p in st["pods"] if p["phase"] == "Running" and p["ip"]]
    ip_of = {p["name"]: p["ip"] for p in st["pods"]}
    host_of = {p["name"]: p["host"] for p in st["pods"]}
    hs = [records.host_of(d) for d in rec["hosts"]]

    res = controller.each(hs, lambda h: ss.get(h).request("matrix", lab=name, targets=targets, port=port,
                                                          timeout=300))
    ext = (rec.get("externalIPs") or {}).get("host")
    snat = controller.each(hs, lambda h: ss.get(h).request(
        "matrix", lab=name, targets=[{"name": "external", "ip": ext}], port=ECHO_HTTP_PORT,
        timeout=120)) if ext else {}
    for host, r in res.items():
        if isinstance(r, BaseException):
            raise r
        for pair in r:  # type: ignore[union-attr]
            result["pairs"] += 1
            where = f"{pair['src']} ({host}) -> {pair['dst']} ({host_of.get(pair['dst'])})"
            if pair["seen"] is None:
                result["failures"].append(where)
            elif pair["seen"] != ip_of.get(pair["src"]):
                result["nat"].append(f"{where}: receiver saw {pair['seen']}, not {ip_of.get(pair['src'])}")
    progress(f"{result['pairs']} pod pairs probed across {len(hs)} hosts")
    result["external"] = _snat(snat, st, rec) if ext else None
    pings = _prove(name, rec, hs, ss)
    result["mtu"] = rec["mtu"]
    result["mtuProblem"] = pings
    result["ok"] = not result["failures"] and not result["nat"] and pings is None and \
        not (result["external"] or {}).get("failures")
    return result


def _snat(res: dict[str, Any], st: dict[str, Any], rec: dict) -> dict[str, Any]:
    """What the external host saw of each pod: its node's address, or a failure naming the pair."""
    node_of = {p["name"]: p.get("node") for p in st["pods"]}
    out: dict[str, Any] = {"pods": 0, "failures": []}
    for host, r in res.items():
        if isinstance(r, BaseException):
            raise r
        for pair in r:  # type: ignore[union-attr]
            out["pods"] += 1
            want = rec["nodeIPs"].get(node_of.get(pair["src"]) or "")
            if pair["seen"] != want:
                got = "no answer" if pair["seen"] is None else f"it saw {pair['seen']}"
                out["failures"].append(f"{pair['src']} ({host}, node {node_of.get(pair['src'])}) -> external: "
                                       f"{got}, not the node's {want}")
    return out


def _prove(name: str, rec: dict, hs: list[Host], ss: Sessions) -> str | None:
    by_host: dict[str, list[str]] = {}
    for node, host in rec["placement"].items():
        by_host.setdefault(host, []).append(node)
    size = rec["mtu"] - 28

    def one(h: Host) -> list[bool]:
        if h.name not in by_host:
            return []
        pairs = [{"from": by_host[h.name][0], "to": rec["nodeIPs"][nodes[0]], "size": size}
                 for other, nodes in by_host.items() if other != h.name]
        return ss.get(h).request("ping", lab=name, pairs=pairs, timeout=60)
    res = controller.each(hs, one)
    for host, r in res.items():
        if isinstance(r, BaseException):
            return str(r)
        if not all(r):  # type: ignore[arg-type]
            return f"host {host}: a DF ping of {size} bytes to another host got no answer"
    return None


def lab_text(r: dict[str, Any]) -> str:
    lines = [f"lab {r['lab']} on hosts {', '.join(r['hosts'])}"]
    for h, why in r["unreachable"].items():
        lines.append(f"  FAIL host {h} unreachable: {why}")
    if not r["unreachable"]:
        lines.append(f"  {'ok  ' if not r['failures'] else 'FAIL'} pod-to-pod: {r['pairs'] - len(r['failures'])}/"
                     f"{r['pairs']} pairs answer")
        lines += [f"       no answer: {f}" for f in r["failures"][:20]]
        lines.append(f"  {'ok  ' if not r['nat'] else 'FAIL'} no NAT: every receiver saw the sender's pod IP")
        lines += [f"       {f}" for f in r["nat"][:20]]
        ext = r.get("external")
        if ext is not None:
            good = ext["pods"] - len(ext["failures"])
            lines.append(f"  {'ok  ' if not ext['failures'] else 'FAIL'} snat-to-external: {good}/{ext['pods']} "
                         "pods seen by the external host with their node's IP")
            lines += [f"       {f}" for f in ext["failures"][:20]]
        lines.append(f"  {'ok  ' if not r['mtuProblem'] else 'FAIL'} underlay MTU {r['mtu']} across every host "
                     f"pair (DF ping)" + (f": {r['mtuProblem']}" if r["mtuProblem"] else ""))
    lines.append("PASS" if r["ok"] else "FAIL")
    return "\n".join(lines) + "\n"


__all__ = ["HostError", "hosts", "lab", "lab_text"]
