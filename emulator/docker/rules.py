"""Docker's netfilter rules on a node, pure: the ``iptables-restore --noflush`` input for a node's containers.

The rules are what Docker 28 (after moby#49530 replaced its ipsets by the ``DOCKER-CT``/``DOCKER-BRIDGE`` chains)
installs for the default bridge network with ``userland-proxy`` on, one container ``web`` at 172.17.0.2 with
``-p 8080:80``::

    *raw
    -A PREROUTING -d 172.17.0.2/32 ! -i docker0 -p tcp -m tcp --dport 80 -j DROP     no direct access from outside
    *nat
    -A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
    -A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER
    -A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE                      containers leave as the node
    -A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80
    *filter  (FORWARD policy DROP, as dockerd sets it)
    -A FORWARD -j DOCKER-USER
    -A FORWARD -j DOCKER-FORWARD
    -A DOCKER -d 172.17.0.2/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT
    -A DOCKER ! -i docker0 -o docker0 -j DROP
    -A DOCKER-BRIDGE -o docker0 -j DOCKER
    -A DOCKER-CT -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
    -A DOCKER-FORWARD -j DOCKER-CT
    -A DOCKER-FORWARD -j DOCKER-ISOLATION-STAGE-1
    -A DOCKER-FORWARD -j DOCKER-BRIDGE
    -A DOCKER-FORWARD -i docker0 -j ACCEPT
    -A DOCKER-ISOLATION-STAGE-1 -i docker0 ! -o docker0 -j DOCKER-ISOLATION-STAGE-2
    -A DOCKER-ISOLATION-STAGE-2 -o docker0 -j DROP

Docker's own chains are declared (so flushed and refilled) on every apply; a rule in a built-in chain is added
only when ``iptables-save`` does not show it already (lines are written in ``iptables-save``'s normal form so the
comparison is exact), the ``FORWARD`` jumps inserted at the top, DOCKER-USER first. Applying twice changes
nothing. The DNAT has ``! -i docker0``: a container reaching a published port of its own node goes through
dockerd's userland proxy on a real host, which a lab does not run.
"""
from __future__ import annotations

from emulator.topology.docker_section import DOCKER_NET
from emulator.topology.model import DockerContainer
from emulator.topology.names import DOCKER_BRIDGE as BR

FILTER_CHAINS = ("DOCKER", "DOCKER-BRIDGE", "DOCKER-CT", "DOCKER-FORWARD", "DOCKER-ISOLATION-STAGE-1",
                 "DOCKER-ISOLATION-STAGE-2", "DOCKER-USER")
NAT_CHAINS = ("DOCKER",)


def _match(p) -> str:
    return f"-p {p.protocol} -m {p.protocol}"


def builtin_rules(containers: tuple[DockerContainer, ...]) -> dict[str, list[tuple[str, str]]]:
    """{table: [(chain, rule spec)]} in the built-in chains, in the order they must appear."""
    raw = [("PREROUTING", f"-d {c.ip}/32 ! -i {BR} {_match(p)} --dport {p.container_port} -j DROP")
           for c in containers for p in c.publish]
    nat = [("PREROUTING", "-m addrtype --dst-type LOCAL -j DOCKER"),
           ("OUTPUT", "! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER"),
           ("POSTROUTING", f"-s {DOCKER_NET} ! -o {BR} -j MASQUERADE")]
    filt = [("FORWARD", "-j DOCKER-USER"), ("FORWARD", "-j DOCKER-FORWARD")]
    return {"raw": raw, "nat": nat, "filter": filt}


def chain_rules(containers: tuple[DockerContainer, ...]) -> dict[str, list[str]]:
    """{table: ['-A CHAIN ...']} of Docker's own chains."""
    nat = []
    accept = []
    for c in containers:
        for p in c.publish:
            dst = f"-d {p.host_ip}/32 " if p.host_ip else ""
            nat.append(f"-A DOCKER {dst}! -i {BR} {_match(p)} --dport {p.host_port} -j DNAT --to-destination "
                       f"{c.ip}:{p.container_port}")
            accept.append(f"-A DOCKER -d {c.ip}/32 ! -i {BR} -o {BR} {_match(p)} --dport {p.container_port} -j ACCEPT")
    filt = accept + [
        f"-A DOCKER ! -i {BR} -o {BR} -j DROP",
        f"-A DOCKER-BRIDGE -o {BR} -j DOCKER",
        f"-A DOCKER-CT -o {BR} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        "-A DOCKER-FORWARD -j DOCKER-CT",
        "-A DOCKER-FORWARD -j DOCKER-ISOLATION-STAGE-1",
        "-A DOCKER-FORWARD -j DOCKER-BRIDGE",
        f"-A DOCKER-FORWARD -i {BR} -j ACCEPT",
        f"-A DOCKER-ISOLATION-STAGE-1 -i {BR} ! -o {BR} -j DOCKER-ISOLATION-STAGE-2",
        f"-A DOCKER-ISOLATION-STAGE-2 -o {BR} -j DROP",
    ]
    return {"nat": nat, "filter": filt}


def present(save: str) -> set[tuple[str, str]]:
    """(table, '-A CHAIN spec') lines of an ``iptables-save`` output."""
    table, out = "", set()
    for line in save.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
        elif line.startswith("-A "):
            out.add((table, line.strip()))
    return out


def render(containers: tuple[DockerContainer, ...], save: str = "") -> str:
    """The restore input that makes a node hold Docker's rules for ``containers``; ``save`` is its current
    ``iptables-save`` (what is there is not added twice)."""
    have = present(save)
    builtin, own = builtin_rules(containers), chain_rules(containers)
    out: list[str] = []
    for table in ("raw", "nat", "filter"):
        lines = [":FORWARD DROP [0:0]"] if table == "filter" else []
        lines += [f":{c} - [0:0]" for c in {"nat": NAT_CHAINS, "filter": FILTER_CHAINS}.get(table, ())]
        missing = [(ch, spec) for ch, spec in builtin[table] if (table, f"-A {ch} {spec}") not in have]
        if table == "filter":  # inserted at the top, DOCKER-USER ahead of DOCKER-FORWARD
            lines += [f"-I {ch} 1 {spec}" for ch, spec in reversed(missing)]
        else:
            lines += [f"-A {ch} {spec}" for ch, spec in missing]
        lines += own.get(table, [])
        if lines:
            out += [f"*{table}", *lines, "COMMIT"]
    return "\n".join(out) + "\n"
