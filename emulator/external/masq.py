"""Pod-to-external SNAT, as flannel does it with ``FLANNEL_IPMASQ=true``: masquerade what leaves the pod range.

flannel's rules (``nat`` table; the chain is jumped to from the top of ``POSTROUTING``)::

    -A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 -j RETURN          kube-proxy's marked traffic: its own SNAT
    -A FLANNEL-POSTRTG -s <cluster> -d <cluster> -j RETURN             pod to pod: never NATed
    -A FLANNEL-POSTRTG -s <cluster> ! -d 224.0.0.0/4 -j MASQUERADE     pod to anything else: the node's address
    -A FLANNEL-POSTRTG ! -s <cluster> -d <node slice> -j RETURN        from outside to a pod here: keep the source
    -A FLANNEL-POSTRTG ! -s <cluster> -d <cluster> -j MASQUERADE       from the host to remote pods

plus ``FLANNEL-FWD`` in ``filter`` accepting forwarded traffic from or to the pod range. ``render`` is pure; the
result is one ``iptables-restore --noflush`` per node (the chains are declared, so flushed and refilled, and
the jumps are inserted only when ``iptables-save`` shows them missing), so applying twice changes nothing.
"""
from __future__ import annotations

import subprocess

from emulator.errors import PodlabError
from emulator.netlink import netns
from emulator.services.proxy.iptables import MASQ_MARK, parse_save
from emulator.topology.model import Node, Topology

COMMENT_MASQ = '"flanneld masq"'
COMMENT_FWD = '"flanneld forward"'


def render(cluster: str, node_slice: str, existing_jumps: set[tuple[str, str, str]]) -> str:
    masq = f"-m comment --comment {COMMENT_MASQ}"
    fwd = f"-m comment --comment {COMMENT_FWD}"
    nat = [":FLANNEL-POSTRTG - [0:0]"]
    if ("nat", "POSTROUTING", "FLANNEL-POSTRTG") not in existing_jumps:
        nat.append(f"-I POSTROUTING 1 {masq} -j FLANNEL-POSTRTG")
    nat += [f"-A FLANNEL-POSTRTG -m mark --mark {MASQ_MARK}/{MASQ_MARK} {masq} -j RETURN",
            f"-A FLANNEL-POSTRTG -s {cluster} -d {cluster} {masq} -j RETURN",
            f"-A FLANNEL-POSTRTG -s {cluster} ! -d 224.0.0.0/4 {masq} -j MASQUERADE --random-fully",
            f"-A FLANNEL-POSTRTG ! -s {cluster} -d {node_slice} {masq} -j RETURN",
            f"-A FLANNEL-POSTRTG ! -s {cluster} -d {cluster} {masq} -j MASQUERADE --random-fully"]
    filt = [":FLANNEL-FWD - [0:0]"]
    if ("filter", "FORWARD", "FLANNEL-FWD") not in existing_jumps:
        filt.append(f"-I FORWARD 1 {fwd} -j FLANNEL-FWD")
    filt += [f"-A FLANNEL-FWD -s {cluster} {fwd} -j ACCEPT", f"-A FLANNEL-FWD -d {cluster} {fwd} -j ACCEPT"]
    return "\n".join(["*nat", *nat, "COMMIT", "*filter", *filt, "COMMIT"]) + "\n"


def _run(ns: str, argv: list[str], data: str = "") -> str:
    with netns.entered(ns):  # the child inherits the calling thread's network namespace
        r = subprocess.run(argv, input=data, capture_output=True, text=True)
    if r.returncode != 0:
        raise PodlabError(f"{argv[0]} in {ns} failed: {r.stderr.strip()}", obj=ns)
    return r.stdout


def apply(topo: Topology, node: Node, ns: str) -> None:
    """Install flannel's masquerade rules in the node's namespace (idempotent)."""
    existing = parse_save(_run(ns, ["iptables-save"]))
    _run(ns, ["iptables-restore", "-w", "5", "--noflush"], render(str(topo.pod_cidr), str(node.pod_cidr),
                                                                  existing.jumps))
