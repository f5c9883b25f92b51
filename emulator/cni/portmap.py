"""Built-in ``portmap``: a pod's ``hostPort`` as the reference CNI ``portmap`` plugin (iptables backend) makes it.

A kubelet hands a pod's ``ports[].hostPort`` to every plugin that declares the ``portMappings`` capability, as
``runtimeConfig.portMappings: [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]``; ``portmap``,
chained after the main plugin, reads the pod's address from ``prevResult`` and writes, in the node's ``nat``
table (the chains and the order of containernetworking/plugins' ``plugins/meta/portmap``)::

    -A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
    -A OUTPUT -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
    -A POSTROUTING -m comment --comment "CNI portfwd requiring masquerade" -j CNI-HOSTPORT-MASQ
    -A CNI-HOSTPORT-DNAT -p tcp -m comment --comment "dnat name: \\"cbr0\\" id: \\"<id>\\"" -m multiport
       --dports 8080 -j CNI-DN-<21 hex>
    -A CNI-HOSTPORT-MASQ -m mark --mark 0x2000/0x2000 -j MASQUERADE
    -A CNI-HOSTPORT-SETMARK -m comment --comment "CNI portfwd masquerade mark" -j MARK --set-xmark 0x2000/0x2000
    -A CNI-DN-<..> -s 10.244.1.0/24 -p tcp -m tcp --dport 8080 -j CNI-HOSTPORT-SETMARK     hairpin: masquerade
    -A CNI-DN-<..> -s 127.0.0.1/32 -p tcp -m tcp --dport 8080 -j CNI-HOSTPORT-SETMARK      from the node's lo
    -A CNI-DN-<..> -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.244.1.2:80

The per-pod chain is ``CNI-DN-`` + the SHA-512 of network name + container ID in hex, cut to 28 characters, as
the plugin's ``FormatChainNameWithPrefix`` names it, so a built-in node and a ``cni: reference`` node (which runs
the real ``/usr/lib/cni/portmap``, chained in the same conflist) read alike in ``iptables-save``. The shared
chains are created when missing and never flushed (other pods' jumps live there); the pod's own chain is
rewritten whole. DEL removes the pod's jumps (found by the comment naming its ID) and its chain; a second DEL
finds nothing to do. ``render_add``/``render_del`` are pure; the plugin runs in the agent, in the node's
namespace, and applies them with one ``iptables-restore --noflush`` each.
"""
from __future__ import annotations

import hashlib
import ipaddress
import subprocess

from emulator.cni.spec import INVALID_CONFIG, CniRequest
from emulator.errors import CniError

TYPE = "portmap"
CAPABILITY = "portMappings"
MARK = "0x2000"
DNAT, SETMARK, MASQ = "CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-SETMARK", "CNI-HOSTPORT-MASQ"
MASQ_COMMENT = '"CNI portfwd requiring masquerade"'
MARK_COMMENT = '"CNI portfwd masquerade mark"'


def chain_name(network: str, container_id: str) -> str:
    return ("CNI-DN-" + hashlib.sha512((network + container_id).encode()).hexdigest())[:28]


def _comment(network: str, container_id: str) -> str:
    return f'"dnat name: \\"{network}\\" id: \\"{container_id}\\""'


def mappings(conf: dict) -> list[tuple[int, int, str]]:
    raw = (conf.get("runtimeConfig") or {}).get(CAPABILITY) or []
    out = []
    for m in raw:
        try:
            hp, cp, proto = int(m["hostPort"]), int(m["containerPort"]), str(m.get("protocol", "tcp")).lower()
        except (KeyError, TypeError, ValueError):
            raise CniError(f"invalid runtimeConfig.{CAPABILITY} entry {m!r}", code=INVALID_CONFIG) from None
        if hp > 0 and proto in ("tcp", "udp", "sctp"):
            out.append((hp, cp, proto))
    return out


def _chains(save: str) -> set[str]:
    table, out = "", set()
    for line in save.splitlines():
        if line.startswith("*"):
            table = line[1:]
        elif line.startswith(":") and table == "nat":
            out.add(line[1:].split()[0])
    return out


def _lines(save: str) -> set[str]:
    table, out = "", set()
    for line in save.splitlines():
        if line.startswith("*"):
            table = line[1:]
        elif line.startswith("-A ") and table == "nat":
            out.add(line.strip())
    return out


def render_add(network: str, container_id: str, ip: str, subnet: str, maps: list[tuple[int, int, str]],
               save: str = "") -> str:
    chains, have = _chains(save), _lines(save)
    own = chain_name(network, container_id)
    lines = [f":{c} - [0:0]" for c in (DNAT, SETMARK, MASQ) if c not in chains]
    lines += [f":{own} - [0:0]"]  # declared: flushed and refilled
    top = [f"-A PREROUTING -m addrtype --dst-type LOCAL -j {DNAT}", f"-A OUTPUT -m addrtype --dst-type LOCAL -j {DNAT}",
           f"-A POSTROUTING -m comment --comment {MASQ_COMMENT} -j {MASQ}",
           f"-A {MASQ} -m mark --mark {MARK}/{MARK} -j MASQUERADE",
           f"-A {SETMARK} -m comment --comment {MARK_COMMENT} -j MARK --set-xmark {MARK}/{MARK}"]
    lines += [x for x in top if x not in have]
    for proto in sorted({p for _, _, p in maps}):
        ports = ",".join(str(hp) for hp, _, p in maps if p == proto)
        jump = (f"-A {DNAT} -p {proto} -m comment --comment {_comment(network, container_id)} -m multiport "
                f"--dports {ports} -j {own}")
        if jump not in have:
            lines.append(jump)
    for hp, cp, proto in maps:
        m = f"-p {proto} -m {proto} --dport {hp}"
        lines += [f"-A {own} -s {subnet} {m} -j {SETMARK}", f"-A {own} -s 127.0.0.1/32 {m} -j {SETMARK}",
                  f"-A {own} {m} -j DNAT --to-destination {ip}:{cp}"]
    return "\n".join(["*nat", *lines, "COMMIT"]) + "\n"


def render_del(network: str, container_id: str, save: str) -> str:
    own = chain_name(network, container_id)
    lines = ["-D" + line[2:] for line in sorted(_lines(save)) if line.startswith(f"-A {DNAT} ")
             and line.endswith(f"-j {own}")]
    if own in _chains(save):
        lines += [f"-F {own}", f"-X {own}"]
    return "\n".join(["*nat", *lines, "COMMIT"]) + "\n" if lines else ""


def _run(argv: list[str], data: str = "") -> str:
    r = subprocess.run(argv, input=data, capture_output=True, text=True)
    if r.returncode != 0:
        raise CniError(f"{argv[0]} failed: {r.stderr.strip()}")
    return r.stdout


def _save() -> str:
    return _run(["iptables-save", "-t", "nat"])


def add(req: CniRequest, conf: dict, ctx: object = None) -> dict:
    prev = conf.get("prevResult") or {}
    maps = mappings(conf)
    if not maps:
        return prev
    addr = next((i["address"] for i in prev.get("ips", []) if "." in str(i.get("address", ""))), None)
    if addr is None:
        raise CniError("portmap: prevResult holds no IPv4 address for the container", code=INVALID_CONFIG)
    iface = ipaddress.ip_interface(addr)
    _run(["iptables-restore", "-w", "5", "--noflush"],
         render_add(conf.get("name", ""), req.container_id, str(iface.ip), str(iface.network), maps, _save()))
    return prev


def delete(req: CniRequest, conf: dict, ctx: object = None) -> None:
    """Remove the pod's rules. A DEL without ``runtimeConfig`` (a garbage collection, which no longer knows the
    pod's ports) looks at the table; a DEL that says the pod had no port mappings costs nothing."""
    if "runtimeConfig" in conf and not mappings(conf):
        return
    text = render_del(conf.get("name", ""), req.container_id, _save())
    if text:
        _run(["iptables-restore", "-w", "5", "--noflush"], text)


def check(req: CniRequest, conf: dict, ctx: object = None, prev: dict | None = None) -> None:
    if mappings(conf) and chain_name(conf.get("name", ""), req.container_id) not in _chains(_save()):
        raise CniError(f"portmap: chain {chain_name(conf.get('name', ''), req.container_id)} is missing")
