"""Cluster Services as a lab component: cluster DNS, the kube-dns Service, the controllers and kube-proxies.

``wanted`` validates the topology's ``services``/``deployments``/``kubeProxy`` sections (a mistake stops ``up``
before anything exists). ``start`` runs after the nodes exist and before the agents: it stores
``kube-system/kube-dns`` (ClusterIP 10.96.0.10, ports ``dns`` 53/UDP, ``dns-tcp`` 53/TCP, ``metrics`` 9153/TCP,
selector ``k8s-app: kube-dns``) and the Deployment ``kube-system/coredns`` (2 replicas; ``coredns``), writes
their Corefile, stores the topology's Services (ClusterIPs and NodePorts allocated) and Deployments, then starts
the controller-manager in the first node's namespace (where a kubeadm control plane runs it, on the host
network) and one kube-proxy per node in the node's namespace, each recorded by itself in the lab's process
journal before it runs; both are forked by the agents' launcher when ``up`` has one (``agent.launcher``: they
then share its imports instead of inheriting ``up``'s heap), by ``up`` itself otherwise. ``start`` writes the
shared resolv.conf of every stored pod's Kubernetes namespace (``state.resolv``) before the agents can start
one, and does not wait for the controller, which makes the pods' ``/etc/netns`` links: its first pass (seconds at 5,000 pods) runs beside the agents' work; it creates the Deployments'
pods — the ``coredns`` ones too —, the agents run them as any pods, and the endpoints controller points
``kube-dns`` at them. ``ready`` (every pod Running) waits until the Deployments' pods run
(``coredns``'s included) or are Pending for a stated reason (no Ready node to schedule them on — a ``cni: none``
node is NotReady —, no IP left on their node: ``up`` prints a warning line for each and goes on, as a cluster
leaves them Pending), the endpoints reflect them, every kube-proxy has synced them and every Running coredns pod
answers a query on its pod IP (the readiness probe kubeadm gives them; skipped, with a warning, when none runs):
when ``up`` returns, every Service answers and so does cluster DNS wherever a coredns pod could run.

On a host's part of a multi-host lab (``ctx.whole`` is the whole lab): cluster DNS is the DNS host of
``dnshost`` on the host of the lab's first node (no coredns Deployment: Deployments are not admitted across
hosts yet), the controller-manager runs there or in the underlay namespace elsewhere, without its endpoints
controller; kube-proxy on the host's own Kubernetes nodes; no topology Services or Deployments written here: the
controller admits the Services once for the whole lab and pushes them with their Endpoints to every host
(``emulator.hosts.services``).
"""
from __future__ import annotations

import os
import shutil
import socket
import threading
import time

import dns.message

from emulator.errors import LabTimeoutError, MissingDependencyError
from emulator.lab.components import BuildContext, Component
from emulator.netlink import netns
from emulator.services import config, coredns, dnshost, registry
from emulator.services.controller import ControllerManager
from emulator.services.controller import status_path as controller_status
from emulator.proc.daemon import Named, spawn_many
from emulator.state.resolv import ResolvFiles
from emulator.state.store import wait_file
from emulator.topology import hosts_section
from emulator.services.proxy.kubeproxy import KubeProxy, log_path
from emulator.services.proxy.kubeproxy import status_path as proxy_status
from emulator.state.store import Store
from emulator.topology import names
from emulator.topology.model import Topology

def run_controller(lab: str, dns_ip: str, domain: str, whole: bool) -> None:
    """The controller-manager's daemon (``proc.daemon.Named``: forked by the agents' launcher)."""
    ControllerManager(lab, dns_ip, domain, whole=whole).run()


def run_kube_proxy(lab: str, node: str, mode: str, cluster_cidr: str) -> None:
    """A node's kube-proxy daemon (``proc.daemon.Named``: forked by the agents' launcher)."""
    KubeProxy(lab, node, mode, cluster_cidr).run()


#: Sections that ask for kube-proxy, the controllers and DNS explicitly (every single-host lab has them anyway; a
#: multi-host lab has them only when one of these asks: its ``up`` then pushes Services and Endpoints to every host).
EXPLICIT = frozenset({"services", "deployments", "kubeProxy"})


class ServicesComponent(Component):
    name = "services"
    order = 50
    preload = (__name__,)  # the agents' launcher imports this module: it forks the daemons below

    def wanted(self, topo: Topology) -> bool:
        if hosts_section.of(topo) is not None and not EXPLICIT.intersection(dict(topo.extra)):
            return False  # across hosts only when asked (one more round to every host at up; docs/multihost.md)
        # kube-proxy, the controllers and cluster DNS are a Kubernetes cluster's: a lab of Docker hosts alone
        # has none of them (a host's part of a multi-host lab may hold no node: it still runs its share)
        multi = hosts_section.of(topo) is not None
        return (multi or bool(topo.kube_nodes)) and config.settings(topo) is not None

    def namespaces(self, topo: Topology) -> list[str]:
        return [dnshost.dns_ns(topo.name)] if dnshost.here(topo) else []

    def start(self, ctx: BuildContext) -> None:
        topo, paths, store, whole = ctx.topo, ctx.paths, ctx.store, ctx.whole
        multi = hosts_section.of(topo) is not None
        cfg = config.settings(whole)
        assert cfg is not None
        if topo.kube_nodes:
            check_dependencies(cfg.proxy_mode, names.node_ns(topo.name, topo.kube_nodes[0].name))
        coredns.write_corefile(paths, cfg.domain)
        if multi:  # across hosts the controller admits the Services and pushes them with their Endpoints
            dnshost.put_service(store, cfg, dnshost.address(whole), topo.service_cidr)
            if dnshost.here(topo):
                dnshost.start(whole, paths)
            cm_ns = dnshost.dns_ns(topo.name) if dnshost.here(topo) else names.underlay_ns(topo.name)
        else:
            registry.put_service(store, coredns.service(cfg.dns_ip), topo.service_cidr)
            with registry.locked(store, "deployments"):
                store.put("deployments", coredns.NAME, coredns.deployment(paths))
            for s in cfg.services:
                registry.put_service(store, s, topo.service_cidr)
            for d in cfg.deployments:
                registry.put_deployment(store, d)
            cm_ns = names.node_ns(topo.name, topo.kube_nodes[0].name)
        # the stored pods' resolv.conf before any agent can start them: their namespaces' shared files here, their
        # /etc/netns links by the controller-manager's first pass while the agents work (5,000 links take ~3-5 s
        # on an ext4 /etc; a pod started before its link reads the shared file: ``proc.spawn``'s ``etc_fallback``)
        ResolvFiles(topo.name, cfg.dns_ip, cfg.domain).write_shared(
            ns for ns, _name in store.keys("pods"))
        j, cidr = str(paths.proc_journal), str(whole.pod_cidr)
        daemons = [Named(f"{__name__}:run_controller", (topo.name, cfg.dns_ip, cfg.domain, not multi),
                         str(paths.root / "controller-manager.log"), j, "controller-manager", cm_ns, "kube-controller")]
        daemons += [Named(f"{__name__}:run_kube_proxy", (topo.name, n.name, cfg.proxy_mode, cidr),
                          str(log_path(paths, n.name)), j, f"kube-proxy of {n.name}",
                          names.node_ns(topo.name, n.name), "kube-proxy") for n in topo.kube_nodes]
        launcher = ctx.data.get("launcher")
        if launcher is not None:  # forked by the agents' launcher: they share its imports, not up's heap
            launcher.spawn_daemons(daemons)
        else:
            spawn_many([d.daemon() for d in daemons])  # the kube-proxies start while the controller's first pass runs
        dns_what = (f"kube-dns → {coredns.REPLICAS} coredns pods" if not multi else
                    f"kube-dns → {dnshost.address(whole)}" if dnshost.here(topo) else "kube-dns on another host")
        ctx.progress(f"services: kube-proxy ({cfg.proxy_mode}) on {len(topo.kube_nodes)} nodes, cluster DNS "
                     f"{cfg.dns_ip} ({dns_what}), {len(cfg.services)} services, "
                     f"{len(cfg.deployments)} deployments")

    @classmethod
    def teardown(cls, lab: str, paths) -> None:
        """The pods' /etc/netns/<ns>/resolv.conf directories listed in the lab's ledger (after the namespaces are
        deleted, while the kernel frees them)."""
        ResolvFiles(lab, "").remove()

    def ready(self, ctx: BuildContext) -> None:
        topo, store = ctx.topo, ctx.store
        cfg = config.settings(ctx.whole)
        assert cfg is not None
        wait_file(controller_status(ctx.paths), lambda st: st.get("passes", 0) >= 1, 10, "the controller-manager",
                  topo.name)
        if hosts_section.of(topo) is not None:  # a host's part: no Deployments (the DNS host answers at once)
            wait_synced(ctx.paths, store, [n.name for n in topo.kube_nodes], timeout=20)
            return
        deps = [(d.name, d.namespace, d.replicas) for d in cfg.deployments] + \
            [(coredns.NAME, coredns.NAMESPACE, coredns.REPLICAS)]
        pods = wait_deployments(store, deps, ctx.progress, 30 + 0.05 * sum(r for _, _, r in deps), topo.name)
        for (ns, name), st in sorted(pods.items()):
            if st.get("phase") != "Running":
                ctx.progress(f"warning: pod {ns}/{name} is Pending: {st.get('message')}")
        dns_ips = [st["podIP"] for (ns, name), st in sorted(pods.items()) if ns == coredns.NAMESPACE and
                   _deployment_of(name) == coredns.NAME and st.get("phase") == "Running" and st.get("podIP")]
        failed: list[BaseException] = []

        def dns_answers() -> None:
            try:
                wait_dns_answers(dns_ips, names.node_ns(topo.name, topo.kube_nodes[0].name), topo.name)
            except BaseException as e:  # re-raised below, in the thread that runs ``up``
                failed.append(e)
        asking = threading.Thread(target=dns_answers, name="dns-answers")
        if dns_ips:  # the pods' servers start (~0.2 s) while the endpoints and kube-proxies catch up
            asking.start()
        else:
            ctx.progress(f"warning: no coredns pod runs: kube-dns ({cfg.dns_ip}) has no endpoints, so name lookups "
                         f"in pods fail until one does (it is scheduled once a node is Ready)")
        wait_synced(ctx.paths, store, [n.name for n in topo.kube_nodes], timeout=20)
        if dns_ips:
            asking.join()
        if failed:
            raise failed[0]
        ctx.progress(f"services ready: endpoints current, kube-proxy synced on {len(topo.kube_nodes)} nodes")


def _deployment_of(pod: str) -> str:
    """The Deployment a pod's name says it belongs to (``<deployment>-<template hash>-<5>``)."""
    return pod.rsplit("-", 2)[0] if pod.count("-") >= 2 else ""


def wait_deployments(store: Store, deps: list[tuple[str, str, int]], progress, timeout: float,
                     lab: str) -> dict[tuple[str, str], dict]:
    """Wait until every Deployment of ``deps`` (name, namespace, replicas) has its pods and each is Running or
    Pending for a reason stated in its status — the scheduler's (no Ready node) or its node's (e.g. no IP left):
    ``up`` leaves those Pending, as a cluster does, instead of failing. Returns the pods' final statuses.

    The Deployment's status answers first (one read while its pods are all Running); only a Deployment that is
    not yet ready has its pods' statuses read, each settled one once."""
    want = sum(r for _, _, r in deps)
    final: dict[tuple[str, str], dict] = {}
    deadline = time.monotonic() + timeout
    shown = -1
    while True:
        done = 0
        for name, ns, replicas in deps:
            mine = [k for k in store.keys("pods", ns=ns) if _deployment_of(k[1]) == name]
            if (store.get_status("deployments", name, ns) or {}).get("readyReplicas", 0) < replicas or \
                    len(mine) < replicas:
                for key in mine:
                    if key not in final:
                        st = store.get_status("pods", key[1], key[0])
                        if st is not None and (st.get("phase") == "Running" or st.get("message")):
                            final[key] = st
            else:
                for key in mine:
                    if key not in final or final[key].get("phase") != "Running":
                        final[key] = store.get_status("pods", key[1], key[0]) or {"phase": "Running"}
            done += min(replicas, sum(1 for k in mine if k in final))
        running = sum(1 for st in final.values() if st.get("phase") == "Running")
        if running != shown:
            progress(f"deployment pods Running: {running}/{want}")
            shown = running
        if done >= want:
            return final
        if time.monotonic() > deadline:
            raise LabTimeoutError(f"only {done} of {want} deployment pods became Running or stated why not",
                                  obj=lab)
        time.sleep(0.05)


def wait_dns_answers(ips: list[str], node_ns: str, lab: str, timeout: float = 10) -> None:
    """Wait until every coredns pod at ``ips`` answers a query on its pod IP (asked from the first node's
    namespace): a Running pod's server binds its port ~0.2 s after it starts, and kubeadm's coredns pods are not
    Ready before their server is (a readiness probe podlab's pods do not have)."""
    wire = dns.message.make_query(f"kube-dns.{coredns.NAMESPACE}.svc.cluster.local", "A").to_wire()
    deadline = time.monotonic() + timeout
    sock = netns.socket_in(node_ns, socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.settimeout(0.05)
        for ip in ips:
            while True:
                try:
                    sock.sendto(wire, (ip, 53))
                    sock.recv(4096)
                    break
                except (socket.timeout, ConnectionRefusedError):
                    if time.monotonic() > deadline:
                        raise LabTimeoutError(f"the coredns pod at {ip} does not answer DNS queries", obj=lab) from None
    finally:
        sock.close()


def check_dependencies(mode: str, node_ns: str) -> None:
    """The tools kube-proxy runs, and br_netfilter (without it same-node Service replies skip conntrack)."""
    tools = ["iptables-restore", "iptables-save"] if mode == "iptables" else ["nft"]
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        raise MissingDependencyError(f"kube-proxy's {mode} mode needs {', '.join(missing)}; install it with "
                                     f"`apt-get install {'iptables' if mode == 'iptables' else 'nftables'}`",
                                     obj=missing[0])
    with netns.entered(node_ns):
        bridged = os.path.exists("/proc/sys/net/bridge/bridge-nf-call-iptables")
    if not bridged:
        raise MissingDependencyError("the br_netfilter kernel module is not loaded (kube-proxy needs bridged pod "
                                     "traffic to pass netfilter); load it with `modprobe br_netfilter`",
                                     obj="br_netfilter")


def wait_synced(paths, store: Store, nodes: list[str], timeout: float = 20) -> None:
    """Wait until the controller has seen every change made so far and every kube-proxy has applied it."""
    from emulator.services.controller import WATCHED
    target = tuple(store.version(k, s) for k, s in WATCHED)
    wait_file(controller_status(paths), lambda st: all(a >= b for a, b in zip(st.get("versions", []), target)),
              timeout, "the endpoints controller", paths.lab)
    v = (store.version("services"), store.version("endpoints"))
    for n in nodes:
        wait_file(proxy_status(paths, n), lambda st: bool(st.get("versions")) and st["versions"][0] >= v[0]
                  and st["versions"][1] >= v[1], timeout, f"kube-proxy on {n}", n)

