"""Cluster Services as a lab component: the DNS host, the kube-dns Service, the controllers and kube-proxies.

``wanted`` validates the topology's ``services``/``deployments``/``kubeProxy`` sections (a mistake stops ``up``
before anything exists). ``start`` runs after the nodes exist and before the agents: it builds the ``<lab>-dns``
namespace, stores ``kube-system/kube-dns`` (ClusterIP 10.96.0.10, ports ``dns`` 53/UDP and ``dns-tcp``
53/TCP; no selector, so its Endpoints are written here and name the DNS host, as for a control-plane DNS on the
host network), the topology's Services (ClusterIPs and NodePorts allocated) and Deployments, then starts the
cluster DNS server and the controller-manager in the DNS namespace and one kube-proxy per node in the node's
namespace, each recorded by itself in the lab's process journal before it runs. The controller's first pass writes every pod's resolv.conf
and creates the Deployments' pods before the agents start. ``ready`` (every pod Running) waits until the
Deployments' pods run, the endpoints reflect them, and every kube-proxy has synced them: when ``up`` returns,
every Service answers.
"""
from __future__ import annotations

import os
import shutil
import time

from emulator.errors import LabTimeoutError, MissingDependencyError
from emulator.lab.components import BuildContext, Component
from emulator.netlink import netns
from emulator.services import config, dnsnet, registry
from emulator.services.controller import ControllerManager
from emulator.services.controller import status_path as controller_status
from emulator.proc.daemon import Daemon, spawn, spawn_many
from emulator.state.store import wait_file
from emulator.topology import hosts_section
from emulator.services.endpoints import manifest as endpoints_manifest
from emulator.services.model import Service, ServicePort
from emulator.services.proxy.kubeproxy import KubeProxy, log_path
from emulator.services.proxy.kubeproxy import status_path as proxy_status
from emulator.state.store import Store
from emulator.topology import names
from emulator.topology.model import Topology

KUBE_DNS_LABELS = (("k8s-app", "kube-dns"), ("kubernetes.io/name", "CoreDNS"))


def kube_dns(cfg: config.ClusterServices) -> tuple[Service, dict]:
    svc = Service(name="kube-dns", namespace="kube-system", cluster_ip=cfg.dns_ip, labels=KUBE_DNS_LABELS,
                  ports=(ServicePort(53, 53, "UDP", "dns"), ServicePort(53, 53, "TCP", "dns-tcp")))
    ep = endpoints_manifest("kube-dns", "kube-system", [{
        "addresses": [{"ip": cfg.dns_host, "hostname": "dns"}],
        "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]}],
        dict(KUBE_DNS_LABELS))
    return svc, ep


def _serve_dns(store_root: str, domain: str) -> None:
    from emulator.services import dns
    dns.serve(Store(store_root), domain)


#: Sections that ask for kube-proxy, the controllers and DNS explicitly (every single-host lab has them anyway).
EXPLICIT = frozenset({"services", "deployments", "kubeProxy"})


class ServicesComponent(Component):
    name = "services"
    order = 50

    def wanted(self, topo: Topology) -> bool:
        if hosts_section.of(topo) is not None and not EXPLICIT.intersection(dict(topo.extra)):
            return False  # not yet across hosts: a multi-host lab gets them only when asked (and is refused)
        return config.settings(topo) is not None

    def namespaces(self, topo: Topology) -> list[str]:
        return [config.dns_ns(topo.name)]

    def start(self, ctx: BuildContext) -> None:
        topo, paths, store = ctx.topo, ctx.paths, ctx.store
        cfg = config.settings(topo)
        assert cfg is not None
        check_dependencies(cfg.proxy_mode, names.node_ns(topo.name, topo.nodes[0].name))
        ns = config.dns_ns(topo.name)
        dnsnet.build(topo, ns, cfg.dns_host)
        svc, ep = kube_dns(cfg)
        registry.put_service(store, svc, topo.service_cidr)
        store.put("endpoints", "kube-dns", ep)
        for s in cfg.services:
            registry.put_service(store, s, topo.service_cidr)
        for d in cfg.deployments:
            registry.put_deployment(store, d)
        dns_log = paths.root / "dns" / "coredns.log"
        spawn(lambda: _serve_dns(str(paths.store), cfg.domain), dns_log, ns=ns, title="coredns",
              journal=paths.proc_journal, what="cluster DNS")
        cm = ControllerManager(topo.name, cfg.dns_ip, cfg.domain)
        spawn(cm.run, paths.root / "controller-manager.log", ns=ns, title="kube-controller",
              journal=paths.proc_journal, what="controller-manager")
        cidr = str(topo.pod_cidr)
        spawn_many([Daemon(KubeProxy(topo.name, n.name, cfg.proxy_mode, cidr).run, log_path(paths, n.name),
                           paths.proc_journal, f"kube-proxy of {n.name}", names.node_ns(topo.name, n.name),
                           "kube-proxy") for n in topo.kube_nodes])  # while the controller's first pass runs
        wait_file(controller_status(paths), lambda st: st.get("passes", 0) >= 1, 10, "the controller-manager",
                  topo.name)
        ctx.progress(f"services: kube-proxy ({cfg.proxy_mode}) on {len(topo.kube_nodes)} nodes, cluster DNS "
                     f"{cfg.dns_ip} (kube-dns) at {cfg.dns_host}, {len(cfg.services)} services, "
                     f"{len(cfg.deployments)} deployments")

    @classmethod
    def teardown(cls, lab: str, paths) -> None:
        """The pods' /etc/netns/<ns>/resolv.conf directories listed in the lab's ledger (after the namespaces are
        deleted, while the kernel frees them)."""
        from emulator.state.resolv import ResolvFiles
        ResolvFiles(lab, "").remove()

    def ready(self, ctx: BuildContext) -> None:
        topo, store = ctx.topo, ctx.store
        cfg = config.settings(topo)
        assert cfg is not None
        want = sum(d.replicas for d in cfg.deployments)
        deadline = time.monotonic() + 30 + 0.05 * want
        shown = -1
        while want:
            ready = sum((store.get_status("deployments", d.name, d.namespace) or {}).get("readyReplicas", 0)
                        for d in cfg.deployments)
            if ready != shown:
                ctx.progress(f"deployment pods Running: {ready}/{want}")
                shown = ready
            if ready >= want:
                break
            if time.monotonic() > deadline:
                raise LabTimeoutError(f"only {ready} of {want} deployment pods became Running", obj=topo.name)
            time.sleep(0.05)
        wait_synced(ctx.paths, store, [n.name for n in topo.kube_nodes], timeout=20)
        ctx.progress(f"services ready: endpoints current, kube-proxy synced on {len(topo.kube_nodes)} nodes")


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

