"""The controller of a multi-host lab: every host at once, one session each, and the lab's record of hosts.

``up``: connect to every host in parallel and read each one's hello; refuse before anything is created anywhere
if a host is unreachable, runs another podlab version, lacks the vxlan module or cannot carry the underlay MTU
(``stretch.choose_mtu``: the smallest NIC less 50), or if the topology asks for a component not yet available
across hosts (``ACROSS_HOSTS`` lists those that are); write the controller's record (with the host of the
external network, when the lab has one: the first node's, ``HostSet.lab_host``); send each host its plan
(``plan.host_plans``) and let all build at once; prove the stretch with a DF ping at full size across every
pair of hosts; then, once every host's part runs, create the Deployments' pods across the hosts and push the
Services' Endpoints and the NetworkPolicies with every host's pods to every host (``converge.after_change``);
start the lab's API server on the controller (``api_daemon``: every host's objects mirrored, kubectl context
``podlab-<lab>``); mark the record ready. Any failure after the record exists removes every host's part
(``down``) and raises the first error, naming its host.

``down``/``cleanup``: the API server is ended by its recorded PID; each host listed as pending removes its part
(an ordinary ``teardown.destroy`` there); an unreachable host is reported by name, stays pending and the others
are removed all the same.

``status`` and ``check`` ask every host for its nodes and pods; the nodes of a host that does not answer are
reported NotReady (the Kubernetes word for a node whose kubelet stopped reporting).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from emulator.external import config as extconfig
from emulator.errors import (AlreadyUp, BuildError, HostError, HostVersionError, LabExistsError, LabNotFoundError,
                             MissingDependencyError, MtuError, PodlabError)
from emulator.hosts import api_daemon, converge, netpols, plan, protocol, records, services, stretch
from emulator.hosts.fanout import each, first_error
from emulator.hosts.sessions import Sessions, for_command
from emulator.hosts.transport import HostSession
from emulator.lab import components
from emulator.netpol import component as netpol_component
from emulator.topology.hosts_section import Host, HostSet, of, vni
from emulator.topology.model import Topology

Progress = Callable[[str], None]

#: the lab components a multi-host lab runs (the hosts build them as on one machine: the external network on the
#: host of the first node, ``external.component``; link shaping of each host's own nodes and pods)
ACROSS_HOSTS = frozenset({"services", "networkpolicy", "external", "link-shaping"})


def _quiet(_: str) -> None:
    pass


def connect_all(hosts: list[Host], progress: Progress = _quiet) -> dict[str, HostSession]:
    """A session to every host, or none at all: the first failure is raised after the others are closed."""
    def open_one(h: Host) -> HostSession:
        s = HostSession(h)
        s.open()
        return s
    res = each(hosts, open_one)
    err = first_error(res)
    if err is not None:
        for r in res.values():
            if isinstance(r, HostSession):
                r.close()
        others = [str(r) for r in res.values() if isinstance(r, BaseException) and r is not err]
        if others and isinstance(err, PodlabError):
            err.args = (f"{err}; also: " + "; ".join(others),)
        raise err
    progress(f"connected to {len(hosts)} hosts: " + ", ".join(f"{n} (podlab {s.hello.get('version')})"
                                                         for n, s in res.items()))
    return res  # type: ignore[return-value]


def close_all(sessions: dict[str, HostSession]) -> None:
    for s in sessions.values():
        s.close()


def preflight(hs: HostSet, sessions: dict[str, HostSession]) -> dict[str, dict]:
    """Each host's facts (``info``); raises the first problem (version, module, NIC, port) naming host and fix."""
    infos = each(list(hs.hosts), lambda h: sessions[h.name].request("info", address=str(h.address),
                                                                    port=hs.tunnel_port, timeout=15))
    err = first_error(infos)
    if err is not None:
        raise err
    mine = protocol.podlab_version()
    for h in hs.hosts:
        theirs = sessions[h.name].hello.get("version")
        if theirs != mine:
            raise HostVersionError(f"host {h.name} runs podlab {theirs}, the controller {mine}; fix: install the "
                                   f"same podlab on every host (the same checkout, then sudo scripts/setup.sh)",
                                   obj=h.name)
        info: dict = infos[h.name]  # type: ignore[assignment]
        if not info.get("nic"):
            raise HostError(f"host {h.name}: no interface holds its address {h.address} (the tunnel's endpoint); "
                            "fix: give the host entry the address of the interface the hosts reach each other on",
                            obj=h.name)
        if not info.get("vxlan"):
            raise MissingDependencyError(f"host {h.name}: the kernel has no vxlan module; fix: install the "
                                         "kernel's extra modules (linux-modules-extra-$(uname -r)) there",
                                         obj=h.name)
        if info.get("portInUse") and not info.get("multihostLabs"):
            raise HostError(f"host {h.name}: UDP port {hs.tunnel_port} is taken by another program; fix: choose "
                            "another 'tunnel: {port: N}'", obj=h.name)
    return infos  # type: ignore[return-value]


def up(topo: Topology, progress: Progress = _quiet, timeout: float | None = None, *,
       text: str | None = None, inventory: str | None = None, name: str | None = None,
       routing: str | None = None) -> dict[str, Any]:
    hs = of(topo)
    assert hs is not None, "up() of a lab without hosts"
    parts = components.active(topo)
    with_services = any(c.name == "services" for c in parts)
    with_external = any(c.name == "external" for c in parts)
    with_netpol = any(c.name == "networkpolicy" for c in parts)
    others = [c.name for c in parts if c.name not in ACROSS_HOSTS]
    if others:
        raise BuildError(f"lab {topo.name}: {', '.join(others)} {'is' if len(others) == 1 else 'are'} not available "
                         "across hosts yet (Services, Deployments, NetworkPolicy, the external network, link shaping "
                         "and the API server are); fix: drop containers from the topology, or its hosts", obj=topo.name)
    old = records.load(topo.name)
    if old is not None:
        if old.get("status") == "ready" and old.get("source") == os.path.abspath(topo.source):
            raise AlreadyUp(f"lab {topo.name} is already up on {len(old['hosts'])} hosts; nothing changed",
                            obj=topo.name)
        raise LabExistsError(f"lab {topo.name} exists on hosts {', '.join(old.get('pending', []))}; run "
                             f"`podlab down {topo.name}` first", obj=topo.name)
    sessions = connect_all(list(hs.hosts), progress)
    try:
        infos = preflight(hs, sessions)
        mtu = stretch.choose_mtu({h: (i["nic"], i["mtu"]) for h, i in infos.items()},
                                 topo.underlay.mtu if hs.mtu_given else None)
        built = replace(topo, underlay=replace(topo.underlay, mtu=mtu))
        progress(f"underlay MTU {mtu} across {len(hs.hosts)} hosts (NIC MTU - 50), pods {built.pod_mtu}")
        rec = records.new(topo.name, source=os.path.abspath(topo.source), routing=topo.routing,
                          hosts=list(hs.hosts), placement=dict(hs.placement), mtu=mtu, port=hs.tunnel_port,
                          vni=vni(topo.name), node_ips={n.name: str(n.ip) for n in topo.nodes})
        rec["services"], rec["serviceCIDR"] = with_services, str(topo.service_cidr)
        rec["external"] = hs.lab_host if with_external else None  # its router and host live there
        if with_external:
            ext = extconfig.settings(topo)
            assert ext is not None
            rec["externalIPs"] = {"router": str(ext.underlay_gateway), "host": str(ext.host)}
        rec["netpol"] = with_netpol
        records.save(rec)
        try:
            rec = api_daemon.start(rec)  # it starts up while the hosts build; ready() below lets it serve
            if with_services:
                services.init(built)  # ClusterIPs and NodePorts allocated once, here, for every host
            else:
                services.init_store(built)  # the controller's namespaces (and policies, if any)
            if with_netpol:
                netpols.store_policies(topo.name, netpol_component.policies_of(topo) or ())
            plans = plan.host_plans(topo, hs, text=text if text is not None else Path(topo.source).read_text(),
                                    inventory=inventory, name=name, routing=routing, mtu=mtu,
                                    nics={h: i["nic"] for h, i in infos.items()}, timeout=timeout,
                                    controller=os.uname().nodename)
            res = each(list(hs.hosts), lambda h: sessions[h.name].request(
                "up", plan=plans[h.name], progress=progress, timeout=(timeout or 60) + 60))
            err = first_error(res)
            if err is not None:
                raise err
            prove(built, hs, sessions, mtu, progress)
            if topo.routing == "bgp":
                slices = {n.name: str(n.pod_cidr) for n in topo.nodes}
                waited = each(list(hs.hosts), lambda h: sessions[h.name].request(
                    "converged", lab=topo.name, slices=slices, timeout=60))
                err = first_error(waited)
                if err is not None:
                    raise err
                progress(f"BGP converged across hosts: every node holds the other {len(slices) - 1} slices")
            # the Deployments' pods created across the hosts, then the Endpoints and the policies pushed
            converge.after_change(topo.name, rec, list(hs.hosts), lambda h: sessions[h.name], progress)
            api_daemon.ready(rec, progress)
        except BaseException as e:
            progress(f"failed: {e}; removing the lab from every host")
            close_all(sessions)
            down(topo.name, progress)
            raise
        records.set_status(rec, "ready")
        stuck = [st for r in res.values() for st in r["stuck"]]  # type: ignore[index]
        return {"hosts": len(hs.hosts), "mtu": mtu, "stuck": stuck}
    finally:
        close_all(sessions)


def prove(topo: Topology, hs: HostSet, sessions: dict[str, HostSession], mtu: int, progress: Progress) -> None:
    """A DF ping of the full underlay size from every host to every other one, or ``MtuError`` naming the pair."""
    pairs = plan.ping_pairs(topo, hs, mtu)
    hosts = [h for h in hs.hosts if h.name in pairs]
    res = each(hosts, lambda h: sessions[h.name].request("ping", lab=topo.name, pairs=pairs[h.name], timeout=60))
    err = first_error(res)
    if err is not None:
        raise err
    for a, oks in res.items():
        for p, ok in zip(pairs[a], oks):  # type: ignore[arg-type]
            if not ok:
                raise MtuError(f"host {a} -> host {p['toHost']}: a don't-fragment ping of {p['size']} bytes from "
                               f"{p['from']} to {p['toNode']} ({p['to']}) across the tunnel got no answer: the path "
                               f"between the hosts does not carry underlay MTU {mtu} + 50 (or UDP port "
                               f"{hs.tunnel_port} is filtered); fix: set a smaller 'underlay: {{mtu: N}}', raise the "
                               f"hosts' NIC MTU, or open UDP {hs.tunnel_port} between the hosts", obj=a)
    n = len(hosts)
    progress(f"underlay proven: DF pings of {mtu - plan.ICMP_IP_HEADERS} bytes across all {n * (n - 1)} host pairs")


@dataclass
class DownReport:
    removed: list[str] = field(default_factory=list)
    unreachable: dict[str, str] = field(default_factory=dict)


def down(lab: str, progress: Progress = _quiet) -> DownReport:
    """Remove the lab's part from every pending host; an unreachable host is reported and stays pending."""
    rec = records.load(lab)
    if rec is None:
        raise LabNotFoundError(lab, known=records.all_labs())
    hosts = [records.host_of(d) for d in rec["hosts"] if d["name"] in rec.get("pending", [])]
    rec = records.set_status(rec, "deleting")
    api_daemon.stop(rec)  # first: its mirror would see the hosts' parts go one by one

    with for_command() as ss:
        res = each(hosts, lambda h: bool(ss.get(h).request("down", lab=lab, progress=progress,
                                                           timeout=60)["removed"]))
    report = DownReport()
    for h in hosts:
        r = res[h.name]
        if isinstance(r, BaseException):
            report.unreachable[h.name] = str(r)
            progress(f"warning: {r}; its part stays listed: `podlab down {lab}` or `podlab cleanup` again when it "
                     "is back")
        else:
            report.removed.append(h.name)
    rec["pending"] = [h for h in rec.get("pending", []) if h in report.unreachable]
    if rec["pending"]:
        records.save(rec)  # the record alone lists what is left, for `down` or `cleanup` once the host is back
        records.remove_dir(lab)
    else:
        records.remove(lab)
    return report


def status(lab: str, sessions: Sessions | None = None) -> dict[str, Any]:
    """Nodes (with host and Ready/NotReady) and pods of the lab, from every host; unreachable hosts named.
    ``sessions``: the command's sessions, to ask the hosts more afterwards over the same connections."""
    rec = records.load(lab)
    if rec is None:
        raise LabNotFoundError(lab, known=records.all_labs())
    hosts = [records.host_of(d) for d in rec["hosts"]]
    with for_command() as own:
        ss = sessions if sessions is not None else own
        res = each(hosts, lambda h: ss.get(h).request("status", lab=lab, timeout=20))
    nodes, pods, down_hosts = [], [], {}
    for node, host in rec["placement"].items():
        r = res[host]
        ready = False if isinstance(r, BaseException) else any(
            n["name"] == node and n["ready"] for n in r["nodes"])
        nodes.append({"name": node, "host": host, "status": "Ready" if ready else "NotReady"})
    for host, r in res.items():
        if isinstance(r, BaseException):
            down_hosts[host] = str(r)
            continue
        pods += [{**p, "host": host} for p in r["pods"]]
    return {"lab": lab, "nodes": nodes, "pods": pods, "unreachable": down_hosts, "record": rec}


def where(st: dict[str, Any]) -> dict[str, str]:
    """{place: host} from ``status``: every pod and node, and ``external`` (the external network's host) if the
    lab has one."""
    out = {p["name"]: p["host"] for p in st["pods"]} | {n["name"]: n["host"] for n in st["nodes"]}
    if st["record"].get("external"):
        out["external"] = st["record"]["external"]
    return out
