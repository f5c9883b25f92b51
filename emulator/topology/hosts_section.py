"""The topology's optional ``hosts`` section: the machines a lab spans, and which node runs where.

    hosts:                                    # or `podlab up FILE --hosts inventory.yaml` (same list)
      - {name: vm1, address: 192.168.57.11}
      - {name: vm2, address: 192.168.57.12, user: vagrant, key: ~/.ssh/id_ed25519, port: 22}
    placement: round-robin                    # round-robin (default) | packed; a node's own `host:` wins
    tunnel: {port: 14790}                     # the UDP port of the stretched underlay (see below)
    nodes:
      - {name: node-1, host: vm1}

Per host: ``name`` (a DNS label, shown in every message about the host), ``address`` (IPv4: the address SSH
connects to, and the VXLAN endpoint: its interface carries the stretched underlay), ``user`` (default root;
another user needs passwordless ``sudo -n``), ``key`` (a private key file; default: paramiko's usual keys),
``port`` (SSH, default 22), ``knownHosts`` (a known_hosts file holding the host's key; default
``~/.ssh/known_hosts``: unknown host keys are refused), ``command`` (how to run podlab there, default ``podlab``).

Placement: nodes with ``host:`` stay there; the others are dealt round-robin over the hosts in file order, or
``packed`` (the first ceil(N/H) nodes on the first host, and so on). The tunnel port defaults to 14790: not 8472
(the Linux and flannel default, which the lab's own flannel.1 uses inside the nodes), not 4789 (IANA; Calico,
Docker overlay and NSX use it, and clouds filter it) and not containerlab's 14789 (so a clab VXLAN on the same
host never shares its socket). The VNI is derived from the lab name, so two labs on one host share the port but
not the segment.

The result is a frozen ``HostSet`` kept in ``Topology.extra["hosts"]``; ``mtu_given`` says whether the file set
``underlay.mtu`` (then ``up`` refuses hosts that cannot carry it; otherwise it uses the hosts' NIC MTU - 50).
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from emulator.errors import TopologyError
from emulator.topology import names, yamlsafe
from emulator.topology.model import Node, Topology
from emulator.topology.validate import Validator, did_you_mean, is_int, show

HOST_KEYS = ("name", "address", "user", "key", "port", "knownHosts", "command")
INVENTORY_KEYS = ("hosts", "placement", "tunnel")
TUNNEL_KEYS = ("port",)
PLACEMENTS = ("round-robin", "packed")
DEFAULT_TUNNEL_PORT = 14790
#: ports the stretch must not use (flannel/Linux default, IANA VXLAN, VXLAN-GPE, Geneve, containerlab's default)
TAKEN_PORTS = {8472: "the Linux and flannel VXLAN default (the lab's flannel.1)", 4789: "the IANA VXLAN port",
               4790: "VXLAN-GPE", 6081: "Geneve", 14789: "containerlab's VXLAN default"}


@dataclass(frozen=True)
class Host:
    name: str
    address: IPv4Address
    user: str = "root"
    key: str | None = None
    port: int = 22
    known_hosts: str | None = None
    command: str = "podlab"


@dataclass(frozen=True)
class HostSet:
    hosts: tuple[Host, ...]
    placement: tuple[tuple[str, str], ...]  # (node, host) in node order
    strategy: str = "round-robin"
    tunnel_port: int = DEFAULT_TUNNEL_PORT
    mtu_given: bool = False
    source: str = ""

    def host(self, name: str) -> Host:
        for h in self.hosts:
            if h.name == name:
                return h
        raise KeyError(name)

    def host_of(self, node: str) -> str:
        return dict(self.placement)[node]

    def nodes_on(self, host: str) -> tuple[str, ...]:
        return tuple(n for n, h in self.placement if h == host)

    @property
    def lab_host(self) -> str:
        """The host of the lab's first node: it also holds what a lab has once, on the underlay (the cluster DNS
        host, the external network's router and host), since the underlay is one LAN across the hosts."""
        return self.placement[0][1]


def vni(lab: str) -> int:
    """The stretch's VXLAN network identifier for lab ``lab``: stable, 24 bits, never 0 or flannel's 1."""
    return 2 + zlib.crc32(lab.encode()) % (2 ** 24 - 2)


def of(topo: Topology) -> HostSet | None:
    """The lab's hosts, or None for a lab on this machine alone."""
    value = dict(topo.extra).get("hosts")
    return value if isinstance(value, HostSet) else None


def holds_lab_host(topo: Topology) -> bool:
    """Whether ``topo`` (a host's part: its own nodes) is the part of ``HostSet.lab_host``, the one that builds the
    lab's one-of-a-kind namespaces on its underlay; False on one machine (no hosts)."""
    hs = of(topo)
    return hs is not None and bool(hs.placement) and any(n.name == hs.placement[0][0] for n in topo.nodes)


def parse_hosts(v: Validator, raw: object, field: str = "hosts") -> tuple[Host, ...]:
    entries = v.list_of(raw, field, "hosts", "[{name: vm1, address: 192.168.57.11}]")
    if not entries:
        v.fail(field, "the hosts list is empty", "list at least one host, e.g. '- {name: vm1, address: "
               "192.168.57.11}', or drop 'hosts' for a lab on this machine")
    out: list[Host] = []
    seen: dict[str, int] = {}
    addrs: dict[IPv4Address, int] = {}
    for i, entry in enumerate(entries):
        at = f"{field}[{i}]"
        data = v.mapping(entry, at, HOST_KEYS, "a host")
        name = v.dns_name(data.get("name"), f"{at}.name", "host", names.MAX_OBJECT_NAME, example=f"vm{i + 1}")
        if name in seen:
            v.fail(f"{at}.name", f"host name '{name}' is already used by {field}[{seen[name]}]",
                   f"give each host a unique name, e.g. vm{len(entries) + 1}")
        seen[name] = i
        if "address" not in data:
            v.fail(f"{at}.address", f"host '{name}' has no address", "add its IPv4 address, e.g. "
                   f"'address: 192.168.57.{11 + i}' (the one SSH reaches and the other hosts see)")
        addr = v.address(data["address"], f"{at}.address")
        if addr in addrs:
            v.fail(f"{at}.address", f"{addr} is already the address of {field}[{addrs[addr]}]",
                   "give each host its own address")
        addrs[addr] = i
        user = v.string(data.get("user", "root"), f"{at}.user", "user", "'user: vagrant'")
        port = data.get("port", 22)
        if not is_int(port) or not 1 <= port <= 65535:
            v.fail(f"{at}.port", f"SSH port {show(port)} is not an integer from 1 to 65535", "use e.g. 'port: 22'")
        key = data.get("key")
        if key is not None:
            key = str(Path(v.string(key, f"{at}.key", "key file", "'key: ~/.ssh/id_ed25519'")).expanduser())
        known = data.get("knownHosts")
        if known is not None:
            known = str(Path(v.string(known, f"{at}.knownHosts", "known_hosts file", "'knownHosts: "
                                      "~/.ssh/known_hosts'")).expanduser())
        command = v.string(data.get("command", "podlab"), f"{at}.command", "command", "'command: podlab'")
        out.append(Host(name=name, address=addr, user=user, key=key, port=port, known_hosts=known, command=command))
    return tuple(out)


def parse_tunnel(v: Validator, raw: object) -> int:
    data = v.mapping(raw, "tunnel", TUNNEL_KEYS, "tunnel")
    port = data.get("port", DEFAULT_TUNNEL_PORT)
    if not is_int(port) or not 1024 <= port <= 65535:
        v.fail("tunnel.port", f"UDP port {show(port)} is not an integer from 1024 to 65535",
               f"use e.g. 'port: {DEFAULT_TUNNEL_PORT}'")
    if port in TAKEN_PORTS:
        v.fail("tunnel.port", f"UDP port {port} is {TAKEN_PORTS[port]}: captures, firewalls and other tunnels "
               "would mistake the lab's stretch for it", f"use another port, e.g. {DEFAULT_TUNNEL_PORT}")
    return port


def place(v: Validator, hosts: tuple[Host, ...], nodes: tuple[Node, ...], raw_nodes: list[Any],
          strategy: str) -> tuple[tuple[str, str], ...]:
    known = [h.name for h in hosts]
    pinned: dict[str, str] = {}
    for i, entry in enumerate(raw_nodes):
        host = entry.get("host") if isinstance(entry, dict) else None
        if host is None:
            continue
        if host not in known:
            hint = did_you_mean(host, known)
            v.fail(f"nodes[{i}].host", f"unknown host {show(host)}; known hosts: {', '.join(known)}",
                   (hint + " " if hint else "") + "use a name from 'hosts', or drop 'host' to place it by "
                   "'placement'")
        pinned[nodes[i].name] = host
    free = [n.name for n in nodes if n.name not in pinned]
    auto: dict[str, str] = {}
    if strategy == "packed":
        per = -(-len(nodes) // len(hosts))
        load = {h: sum(1 for x in pinned.values() if x == h) for h in known}
        for n in free:
            h = next((h for h in known if load[h] < per), known[-1])
            auto[n] = h
            load[h] += 1
    else:
        for i, n in enumerate(free):
            auto[n] = known[i % len(known)]
    return tuple((n.name, pinned.get(n.name) or auto[n.name]) for n in nodes)


def parse(v: Validator, data: dict[Any, Any], nodes: tuple[Node, ...],
          inventory: tuple[tuple[Host, ...], str, int | None, str] | None = None) -> HostSet | None:
    """The hosts of a topology (``data`` is the whole file), or of an inventory read by ``load_inventory``
    (which replaces the file's ``hosts``); None if neither names hosts (then ``host:`` on a node is an error)."""
    raw_nodes = data.get("nodes") or []
    if inventory is None and "hosts" not in data:
        for key in ("placement", "tunnel"):
            if key in data:
                v.fail(key, f"'{key}' is set but the topology has no 'hosts'",
                       "add a 'hosts' list or pass --hosts inventory.yaml, or drop it")
        for i, entry in enumerate(raw_nodes):
            if isinstance(entry, dict) and "host" in entry:
                v.fail(f"nodes[{i}].host", f"node '{nodes[i].name}' names host {show(entry['host'])} but the "
                       "topology has no 'hosts'", "add a 'hosts' list or pass --hosts inventory.yaml, or drop "
                       "'host'")
        return None
    if inventory is not None:
        hosts, source, inv_port, inv_strategy = inventory
    else:
        hosts, source, inv_port, inv_strategy = parse_hosts(v, data.get("hosts")), v.file, None, ""
    strategy = v.choice(data.get("placement", inv_strategy or "round-robin"), "placement", PLACEMENTS,
                        "placement")
    port = parse_tunnel(v, data["tunnel"]) if "tunnel" in data else (inv_port or DEFAULT_TUNNEL_PORT)
    underlay = data.get("underlay")
    mtu_given = isinstance(underlay, dict) and "mtu" in underlay
    return HostSet(hosts=hosts, placement=place(v, hosts, nodes, raw_nodes, strategy), strategy=strategy,
                   tunnel_port=port, mtu_given=mtu_given, source=source)


def load_inventory(path: str | Path) -> tuple[tuple[Host, ...], str, int | None, str]:
    """An inventory file (``--hosts``): a list of hosts, or a mapping with ``hosts`` and optionally
    ``placement``/``tunnel``. Returns (hosts, file, tunnel port or None, placement or '')."""
    text = yamlsafe.read_text(path, TopologyError, "UTF-8 YAML inventory file (a 'hosts' list)")
    v = Validator(str(path))
    doc = yamlsafe.load(text, str(path), TopologyError)
    if isinstance(doc, list):
        return parse_hosts(v, doc, "hosts"), str(path), None, ""
    data = v.mapping(doc, "", INVENTORY_KEYS, "the inventory file")
    if "hosts" not in data:
        v.fail("hosts", "the inventory names no hosts", "write 'hosts: [{name: vm1, address: 192.168.57.11}, ...]'")
    strategy = v.choice(data["placement"], "placement", PLACEMENTS, "placement") if "placement" in data else ""
    port = parse_tunnel(v, data["tunnel"]) if "tunnel" in data else None
    return parse_hosts(v, data["hosts"]), str(path), port, strategy
