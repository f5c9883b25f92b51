"""The Docker model as a lab component: docker0, the containers and Docker's rules on every Docker node.

``namespaces`` declares each container's namespace (``<lab>-<node>.<name>``) so the lab record lists it before it
exists; ``down`` and ``cleanup`` then remove it like any other, and the container programs, recorded in the
lab's process journal by themselves before they run, are ended by PID. ``start`` (after the nodes and the
external network exist, before the agents) applies ``state`` with the one applier, plugs each container's cable
into docker0, installs ``rules`` and starts each container's program: podlab's netexec (agnhost's echo server)
on the container's first published TCP port (80 when it publishes none) and first published UDP port, answering
``/hostname`` with ``<node>/<name>`` (which node's container answered: the lesson's evidence) and ``/clientip``
with the source it sees; ``pause`` runs nothing.
Then it writes one ``Container`` object per container to the store (``containers/<node>.<name>.json``).
Applying again changes nothing (the applier and ``rules.render`` compare with what is there).
"""
from __future__ import annotations

import os
import subprocess
import time

from emulator.docker import rules, state
from emulator.errors import PodlabError
from emulator.lab.components import BuildContext, Component
from emulator.netlink import applier, netns
from emulator.netlink.rtnl import Rtnl
from emulator.proc.daemon import spawn
from emulator.state.manifests import now
from emulator.topology import names
from emulator.topology.model import DockerContainer, Node, Topology

KIND = "containers"


class DockerComponent(Component):
    name = "docker"
    order = 45  # after the external network (its router is the nodes' way out), before Services

    def wanted(self, topo: Topology) -> bool:
        return bool(topo.docker_nodes)

    def namespaces(self, topo: Topology) -> list[str]:
        return [names.container_ns(topo.name, c.node, c.name) for c in topo.containers]

    def start(self, ctx: BuildContext) -> None:
        topo = ctx.topo
        for node in topo.docker_nodes:
            build_node(topo, node)
        (ctx.paths.store / KIND).mkdir(parents=True, exist_ok=True)
        for c in topo.containers:
            pid = run_container(ctx, c)
            ctx.store.put(KIND, names.container_key(c.node, c.name), container_object(topo, c, pid))
        ctx.progress(f"docker: docker0 172.17.0.1/16 on {len(topo.docker_nodes)} nodes, "
                     f"{len(topo.containers)} containers, Docker's iptables chains")


def build_node(topo: Topology, node: Node) -> None:
    """docker0, the containers' namespaces and cables, their addresses and routes, Docker's rules (idempotent)."""
    ns = names.node_ns(topo.name, node.name)
    containers = topo.containers_on(node.name)
    for c in containers:
        cns = names.container_ns(topo.name, c.node, c.name)
        if not netns.exists(cns):
            netns.create(cns)
    with Rtnl.in_ns(ns) as rt:
        applier.apply(rt, state.node_state(node), ns_name=ns)
        applier.plug(rt, state.cables(topo, node))
    for c in containers:
        cns = names.container_ns(topo.name, c.node, c.name)
        with Rtnl.in_ns(cns) as rt:
            applier.apply(rt, state.container_state(c), ns_name=cns)
    save = run_in(ns, ["iptables-save"])
    run_in(ns, ["iptables-restore", "-w", "5", "--noflush"], rules.render(containers, save))


def run_in(ns: str, argv: list[str], data: str = "") -> str:
    with netns.entered(ns):  # the child inherits the calling thread's network namespace
        r = subprocess.run(argv, input=data, capture_output=True, text=True)
    if r.returncode != 0:
        raise PodlabError(f"{argv[0]} in {ns} failed: {r.stderr.strip()}", obj=ns)
    return r.stdout


def _ports(c: DockerContainer) -> tuple[int, int | None]:
    tcp = next((p.container_port for p in c.publish if p.protocol == "tcp"), 80)
    udp = next((p.container_port for p in c.publish if p.protocol == "udp"), None)
    return tcp, udp


def run_container(ctx: BuildContext, c: DockerContainer) -> int | None:
    if c.image == "pause":
        return None
    tcp, udp = _ports(c)
    argv = [f"--http-port={tcp}"] + ([f"--udp-port={udp}"] if udp else [])

    def main() -> None:
        from emulator.images import netexec
        os.environ["POD_NAME"] = f"{c.node}/{c.name}"  # /hostname says which node's container answered
        os.environ["HOSTNAME"] = c.name
        netexec.main(argv)

    log = ctx.paths.node_root(c.node) / "var" / "lib" / "docker" / "containers" / c.name / f"{c.name}-json.log"
    return spawn(main, log, ns=names.container_ns(ctx.topo.name, c.node, c.name), title=c.name[:15],
                 journal=ctx.paths.proc_journal, what=f"docker container {c.node}/{c.name}")


def container_object(topo: Topology, c: DockerContainer, pid: int | None) -> dict:
    """What the store keeps of a container (and ``get containers -o json`` prints)."""
    node = topo.node(c.node)
    return {"apiVersion": "podlab.io/v1", "kind": "Container",
            "metadata": {"name": c.name, "node": c.node, "creationTimestamp": now()},
            "spec": {"image": c.image, "publish": [p.text for p in c.publish], "httpPort": _ports(c)[0]},
            "status": {"state": "running" if pid or c.image == "pause" else "created", "pid": pid,
                       "ipAddress": str(c.ip), "gateway": "172.17.0.1", "macAddress": state.container_mac(c),
                       "network": "bridge", "bridge": names.DOCKER_BRIDGE, "nodeIP": str(node.ip),
                       "ports": [{"hostIp": p.host_ip or "0.0.0.0", "hostPort": p.host_port,
                                  "containerPort": p.container_port, "protocol": p.protocol} for p in c.publish],
                       "namespace": names.container_ns(topo.name, c.node, c.name),
                       "startedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}}
