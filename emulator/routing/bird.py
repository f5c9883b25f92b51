"""BIRD 2 for the bgp routing mode: the per-node configuration (pure) and a client for BIRD's control socket.

Configuration (``render``), as Calico's ``calico-node`` runs BIRD, reduced to what a pod network needs:

* ``router id`` and the local address of every session are the node's underlay IP; AS 64512 unless the topology's
  ``bgp.asn`` says otherwise; iBGP only (every node in the same AS).
* The node announces exactly its pod CIDR. It comes from a ``static`` protocol holding ``<slice> unreachable`` —
  Calico's choice (it originates each IPAM block from a static blackhole). The kernel still routes the slice
  through the connected ``cni0`` route; the static route lives only inside BIRD, because the ``kernel`` protocol
  exports BGP-learned routes only (``source = RTS_BGP``). Exporting the connected route through a ``direct``
  protocol would work too, but would tie the announcement to ``cni0`` being up and to its exact prefix; the static
  route announces the slice the node *owns*, which is the fact the other nodes need.
* Sessions are ``direct`` (the peers share the underlay LAN: the next hop is the peer's own node IP and is resolved
  on ``eth0`` without a recursive lookup) with ``check link`` (a node whose uplink loses carrier drops its sessions
  at once), graceful restart off (a peer that goes away is not given time to come back: its routes are withdrawn
  the moment the TCP session closes), and lab-sized timers: hold 3 s / keepalive 1 s (a silent peer is declared
  dead in 3 s), connect delay 0 (BIRD waits at least 1 s anyway), connect retry 1 s and error wait 0–1 s: after an
  error (a hold timer expiry, a lost link) the session restarts at once instead of after BIRD's default minute, so
  a healed link relearns in about a second.
* Learned routes are installed into the main table with BIRD's protocol number (``ip route`` shows ``proto bird``);
  ``persist off`` makes a stopped BIRD remove them again.
* Layouts: ``mesh`` (every node peers with every other node: ``Mesh_<peer ip>`` sessions, Calico's names) or
  ``reflector`` (the nodes listed in ``bgp.reflectors`` reflect routes; every other node peers only with them;
  reflectors peer with each other as plain iBGP peers sharing one cluster id).

Control socket (``BirdClient``): BIRD answers each command with lines ``NNNN-text`` (more follows), ``NNNN text``
(last line) or `` text`` (continuation with the previous code); codes 8000-9999 are errors. The parsers below turn
``show protocols`` and ``show route`` text into data; they are pure so tests can feed them recorded output.
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from emulator.errors import BirdError, MissingDependencyError
from emulator.topology.model import Node, Topology

DEFAULT_ASN = 64512
RR_CLUSTER_ID = "244.0.0.1"  # the cluster id used in Calico's route reflector examples
INSTALL_HINT = "apt-get install bird2"
SEARCH_PATH = ("/usr/sbin", "/usr/local/sbin", "/sbin")
BGP_STATES = ("Idle", "Connect", "Active", "OpenSent", "OpenConfirm", "Established", "Close")


@dataclass(frozen=True)
class Timers:
    hold: int = 3
    keepalive: int = 1
    connect_retry: int = 1
    error_wait: tuple[int, int] = (0, 1)


@dataclass(frozen=True)
class BgpSettings:
    asn: int = DEFAULT_ASN
    mode: Literal["mesh", "reflector"] = "mesh"
    reflectors: tuple[str, ...] = ()
    timers: Timers = field(default_factory=Timers)


@dataclass(frozen=True)
class Peer:
    name: str  # the BIRD protocol name
    node: str
    ip: str
    rr_client: bool = False


def settings(topo: Topology) -> BgpSettings:
    """The topology's ``bgp`` section (validated by the loader) as settings; defaults when it has none."""
    raw: dict[str, Any] = dict(topo.extra).get("bgp") or {}  # type: ignore[assignment]
    mode = raw.get("mode", "mesh")
    reflectors = tuple(raw.get("reflectors") or ())
    if mode == "reflector" and not reflectors:
        reflectors = (topo.nodes[0].name,)
    return BgpSettings(asn=int(raw.get("asn", DEFAULT_ASN)), mode=mode, reflectors=reflectors)


def protocol_name(kind: str, ip: str) -> str:
    """BIRD protocol names are identifiers: ``Mesh_192_168_56_12`` (Calico's naming)."""
    return f"{kind}_{ip.replace('.', '_')}"


def peers(topo: Topology, node: Node, s: BgpSettings) -> list[Peer]:
    others = [o for o in topo.nodes if o.name != node.name]
    if s.mode == "mesh":
        return [Peer(protocol_name("Mesh", str(o.ip)), o.name, str(o.ip)) for o in others]
    if node.name in s.reflectors:
        return [Peer(protocol_name("Rr", str(o.ip)), o.name, str(o.ip)) if o.name in s.reflectors
                else Peer(protocol_name("Node", str(o.ip)), o.name, str(o.ip), rr_client=True) for o in others]
    return [Peer(protocol_name("Rr", str(o.ip)), o.name, str(o.ip)) for o in others if o.name in s.reflectors]


def render(topo: Topology, node: Node, s: BgpSettings) -> str:
    """The bird.conf of ``node`` (see the module docstring for every choice)."""
    t = s.timers
    reflector = s.mode == "reflector" and node.name in s.reflectors
    lines = [
        f"# BIRD 2 configuration of node {node.name} in lab {topo.name}, written by podlab (routing: bgp, "
        f"{s.mode} layout).",
        f"router id {node.ip};",
        "timeformat protocol iso long ms;",
        "timeformat route iso long ms;",
        "log stderr all;  # debug messages appear once enabled (birdc debug all states)",
        "",
        "protocol device { scan time 10; }",
        "",
        "# The slice this node owns, originated from an unreachable route that stays inside BIRD (the kernel",
        "# reaches the slice through cni0); announced to the peers, never installed in the kernel.",
        "protocol static pod_cidr {",
        "  ipv4;",
        f"  route {node.pod_cidr} unreachable;",
        "}",
        "",
        "# Routes learned over BGP go into the kernel's main table (proto bird); nothing is learned from it.",
        "protocol kernel {",
        "  ipv4 { import none; export where source = RTS_BGP; };",
        "  learn off;",
        "  persist off;",
        "  scan time 10;",
        "}",
        "",
        "template bgp podlab_peer {",
        f"  local {node.ip} as {s.asn};",
        "  direct;",
        "  check link on;",
        "  graceful restart off;",
        f"  hold time {t.hold};",
        f"  startup hold time {t.hold};",
        f"  keepalive time {t.keepalive};",
        "  connect delay time 0;",
        f"  connect retry time {t.connect_retry};",
        f"  error wait time {t.error_wait[0]}, {t.error_wait[1]};",
        "  error forget time 10;",
    ]
    if reflector:
        lines.append(f"  rr cluster id {RR_CLUSTER_ID};")
    export = "all" if reflector else 'where proto = "pod_cidr"'
    lines += [
        "  ipv4 {",
        "    import all;",
        f"    export {export};",
        "  };",
        "}",
        "",
    ]
    for p in peers(topo, node, s):
        extra = " rr client;" if p.rr_client else ""
        lines.append(f"protocol bgp {p.name} from podlab_peer {{ description \"{p.node}\"; "
                     f"neighbor {p.ip} as {s.asn};{extra} }}")
    return "\n".join(lines) + "\n"


def find_bird() -> str:
    """Path of the ``bird`` program (``PODLAB_BIRD`` overrides), or MissingDependencyError with the fix."""
    override = os.environ.get("PODLAB_BIRD")
    if override:
        if os.access(override, os.X_OK):
            return override
        raise MissingDependencyError(f"PODLAB_BIRD={override} is not an executable BIRD program; routing mode bgp "
                                     f"needs BIRD 2: install it with `{INSTALL_HINT}` or fix PODLAB_BIRD",
                                     obj="bird")
    path = os.pathsep.join([os.environ.get("PATH", ""), *SEARCH_PATH])
    found = shutil.which("bird", path=path)
    if not found:
        raise MissingDependencyError(f"routing mode bgp needs BIRD 2 (the `bird` program), which is not installed; "
                                     f"install it with `{INSTALL_HINT}`", obj="bird")
    return found


# -- control socket ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Protocol:
    name: str
    proto: str
    table: str
    state: str  # up | down | start | ...
    since: str
    info: str  # for BGP: the session state (Established, Active, Connect, ...) and its last error


@dataclass(frozen=True)
class Route:
    prefix: str
    protocol: str
    primary: bool
    via: str = ""
    dev: str = ""
    kind: str = "unicast"


class BirdClient:
    """One connection to a BIRD control socket (a Unix socket: no network namespace involved)."""

    def __init__(self, path: str, timeout: float = 2.0) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self._buf = b""
        try:
            self.sock.connect(path)
            self._reply()  # the "0001 BIRD 2.x ready." greeting
        except OSError as e:
            self.sock.close()
            raise BirdError(f"BIRD control socket {path} is not answering ({e.strerror or e}); is BIRD running?",
                            obj=path) from None

    def __enter__(self) -> "BirdClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def _line(self) -> str:
        while b"\n" not in self._buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise BirdError(f"BIRD closed its control socket {self.path}", obj=self.path)
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line.decode(errors="replace")

    def _reply(self) -> list[tuple[int, str]]:
        out: list[tuple[int, str]] = []
        code = 0
        while True:
            line = self._line()
            if len(line) >= 5 and line[:4].isdigit() and line[4] in "- ":
                code, text, last = int(line[:4]), line[5:], line[4] == " "
            else:
                text, last = line[1:], False
            out.append((code, text))
            if last:
                if code >= 8000:
                    raise BirdError(f"BIRD refused the command: {text.strip()}", obj=self.path)
                return out

    def command(self, cmd: str) -> list[tuple[int, str]]:
        try:
            self.sock.sendall(cmd.encode() + b"\n")
            return self._reply()
        except OSError as e:
            raise BirdError(f"BIRD control socket {self.path}: {e}", obj=self.path) from None

    def protocols(self) -> list[Protocol]:
        return parse_protocols(self.command("show protocols"))

    def bgp_routes(self) -> list[Route]:
        return parse_routes(self.command("show route where source = RTS_BGP"))


_PROTO = re.compile(r"^(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?|\S+)\s*(.*)$")
_ROUTE = re.compile(r"^(\S+)?\s+(\w+)\s+\[(\S+)\s[^\]]*\]\s*(\*)?")
_VIA = re.compile(r"^\s*via\s+(\S+)\s+on\s+(\S+)")


def parse_protocols(reply: list[tuple[int, str]]) -> list[Protocol]:
    """``show protocols`` → one Protocol per line of the table (code 1002)."""
    out = []
    for code, text in reply:
        m = _PROTO.match(text.strip()) if code == 1002 else None
        if m:
            out.append(Protocol(*m.groups()))
    return out


def parse_routes(reply: list[tuple[int, str]]) -> list[Route]:
    """``show route`` → Routes (a line without a prefix is another route for the prefix above it)."""
    out: list[Route] = []
    prefix = ""
    for code, text in reply:
        if code not in (1007, 1008, 1012):
            continue
        via = _VIA.match(text)
        if via and out:
            last = out[-1]
            out[-1] = Route(last.prefix, last.protocol, last.primary, via.group(1), via.group(2), last.kind)
            continue
        m = _ROUTE.match(text)
        if m:
            prefix = m.group(1) or prefix
            out.append(Route(prefix, m.group(3), bool(m.group(4)), kind=m.group(2)))
    return out


def since_epoch(since: str) -> float | None:
    """BIRD's ``iso long ms`` time (local time) as a Unix time, or None if it is in another format."""
    try:
        whole, _, frac = since.partition(".")
        return time.mktime(time.strptime(whole, "%Y-%m-%d %H:%M:%S")) + (float("0." + frac) if frac else 0.0)
    except ValueError:
        return None


def bgp_state(p: Protocol) -> str:
    """The BGP session state of a BGP protocol line (``Established``, ``Active``, ...; ``Down`` if disabled)."""
    word = p.info.split()[0] if p.info.split() else ""
    return word if word in BGP_STATES else ("Down" if p.state == "down" else word or p.state)
