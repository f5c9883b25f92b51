"""The kernel's own account of each packet's way through a node's rules: ``nft monitor trace``, as on a real node.

nftables can trace a packet through every chain it meets, naming each rule that matched and its verdict, when
the packet carries the ``nftrace`` bit (nftables wiki, "Ruleset debug/tracing"). For a capture, ``Tracer`` does
in each node's namespace what a student would do there by hand:

    table inet podlab-trace {                            (added for the capture, deleted when it stops)
        chain prerouting { type filter hook prerouting priority raw - 50; ... meta nftrace set 1 }
        chain output     { type filter hook output priority raw - 50; ... meta nftrace set 1 }
    }
    nft monitor                                          (a recorded process in the node's namespace)

The chains mark every IPv4 packet except the two kinds no policy is about and which would flood the trace: the
outer UDP packets of flannel's VXLAN (port 8472; the inner packet is marked again when ``flannel.1`` hands it
back to prerouting) and BGP (TCP 179). ``nft monitor`` (not ``monitor trace``) also prints ruleset events, so the
``add table inet podlab-trace`` it echoes tells that it is listening before any packet is marked; the matching
``delete table`` ends the reading. Nothing else of the node changes: the policy table, its rules and counters stay
as the enforcer wrote them (its health check looks at its own table only). A capture killed before it could clean
up leaves the trace table until the next capture on that node (which replaces it) or ``down``.

``parse`` turns the monitor's lines into ``PacketTrace`` s: one per packet and node (a ``trace id`` from the
``packet:`` line of the trace table's own chain, where every packet starts: the kernel reuses ids), the packet's
addresses and ports (from the first ``packet:`` line), every rule it matched with table, chain, comment and
verdict, and the verdict that ended it. Pure, so tests run on recorded lines.
"""
from __future__ import annotations

import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field

from emulator.errors import NftError, ToolError
from emulator.netlink import netns
from emulator.proc import journal
from emulator.services.proxy.libnft import Nft
from emulator.state.paths import LabPaths

FAMILY, TABLE = "inet", "podlab-trace"
VXLAN_PORT, BGP_PORT = 8472, 179
READY_TIMEOUT = 5.0


def setup_text() -> str:
    """The trace table, as one transaction (replacing a leftover one)."""
    lines = [f"add table {FAMILY} {TABLE}", f"delete table {FAMILY} {TABLE}",
             f'add table {FAMILY} {TABLE} {{ comment "podlab capture: nftrace for nft monitor" ; }}']
    for chain, hook in (("prerouting", "prerouting"), ("output", "output")):
        lines.append(f"add chain {FAMILY} {TABLE} {chain} {{ type filter hook {hook} priority raw - 50 ; }}")
        for skip in (f"udp dport {VXLAN_PORT}", f"tcp dport {BGP_PORT}", f"tcp sport {BGP_PORT}"):
            lines.append(f"add rule {FAMILY} {TABLE} {chain} {skip} return")
        lines.append(f"add rule {FAMILY} {TABLE} {chain} meta nfproto ipv4 meta nftrace set 1")
    return "\n".join(lines) + "\n"


# -- parsing ``nft monitor`` --------------------------------------------------------------------------------------
_LINE = re.compile(r"^trace id (?P<id>\S+) (?P<family>\S+) (?P<table>\S+) (?P<chain>\S+) (?P<rest>.*)$")
_VERDICT = re.compile(r"^rule (?P<rule>.*) \(verdict (?P<verdict>\w+)(?: (?P<target>\S+))?\)\s*$")
_COMMENT = re.compile(r'comment "(?P<c>[^"]*)"')


@dataclass(frozen=True)
class Event:
    table: str  # "inet kube-network-policies"
    chain: str
    rule: str  # as nft prints it ("" for the chain's policy)
    verdict: str  # accept | drop | reject | jump | goto | continue | return | policy-accept ...
    target: str = ""  # of a jump/goto
    comment: str = ""


@dataclass
class PacketTrace:
    node: str
    id: str
    src: str = ""
    dst: str = ""
    proto: str = ""
    sport: int | None = None
    dport: int | None = None
    flags: str = ""  # tcp flags (syn, ...), or the icmp type
    iif: str = ""
    oif: str = ""
    first: tuple[str, str, str, int | None] | None = None  # the flow as first seen (before a DNAT)
    events: list[Event] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        """drop / reject if a rule ended the packet so, else accept."""
        return next((e.verdict for e in self.events if e.verdict in ("drop", "reject")), "accept")

    @property
    def decided_by(self) -> Event | None:
        """The event that ended the packet (drop/reject) or, for an accepted one, the last accept."""
        ends = [e for e in self.events if e.verdict in ("drop", "reject")]
        if ends:
            return ends[0]
        acc = [e for e in self.events if e.verdict == "accept"]
        return acc[-1] if acc else None

    def flow(self) -> tuple[str, str, str, int | None]:
        return self.src, self.dst, self.proto, self.dport

    def flows(self) -> set[tuple[str, str, str, int | None]]:
        """The flow as the rules last saw it, and as it first came (a DNAT in between changes it)."""
        return {self.flow()} | ({self.first} if self.first else set())

    def text(self) -> str:
        ports = (f":{self.sport} → {self.dst}:{self.dport}" if self.dport is not None else f" → {self.dst}")
        return f"{self.proto or 'ip'} {self.src}{ports}" + (f" [{self.flags}]" if self.flags else "")

    def as_dict(self) -> dict:
        return {"node": self.node, "id": self.id, "src": self.src, "dst": self.dst, "proto": self.proto,
                "sport": self.sport, "dport": self.dport, "flags": self.flags, "verdict": self.verdict,
                "firstSeenAs": list(self.first) if self.first and self.first != self.flow() else None,
                "events": [e.__dict__ for e in self.events]}


def _field(rx: str, text: str) -> str | None:
    m = re.search(rx, text)
    return m.group(1) if m else None


def _packet(pt: PacketTrace, text: str) -> None:
    pt.src = _field(r"\bip saddr (\S+)", text) or pt.src
    pt.dst = _field(r"\bip daddr (\S+)", text) or pt.dst
    l4 = _field(r"\b(tcp|udp) (?:sport|dport) ", text)
    icmp = _field(r"\bicmp type (\S+)", text)
    pt.proto = l4 or ("icmp" if icmp else _field(r"\bip protocol (\S+)", text) or pt.proto)
    sp, dp = _field(r"\b(?:tcp|udp) sport (\d+)", text), _field(r"\b(?:tcp|udp) dport (\d+)", text)
    pt.sport, pt.dport = (int(sp) if sp else pt.sport), (int(dp) if dp else pt.dport)
    pt.flags = _field(r"\btcp flags == (\S+)", text) or icmp or pt.flags
    pt.iif = _field(r'\biif "([^"]+)"', text) or pt.iif
    pt.oif = _field(r'\boif "([^"]+)"', text) or pt.oif
    if pt.first is None and pt.src:
        pt.first = pt.flow()


def parse(node: str, lines: list[str]) -> list[PacketTrace]:
    """The packets traced in one node, in the order their first line came (monitor lines of other kinds skipped)."""
    out: list[PacketTrace] = []
    current: dict[str, PacketTrace] = {}
    for raw in lines:
        m = _LINE.match(raw.strip())
        if not m:
            continue
        table, chain, rest = f"{m['family']} {m['table']}", m["chain"], m["rest"]
        if table == f"{FAMILY} {TABLE}":
            if rest.startswith("packet: "):  # a packet enters the namespace (the kernel reuses trace ids)
                pt = current[m["id"]] = PacketTrace(node, m["id"])
                out.append(pt)
                _packet(pt, rest[8:])
            continue  # our own marking rules are not the packet's story
        pt = current.get(m["id"])
        if pt is None:  # marked before the monitor listened: its first lines were missed
            pt = current[m["id"]] = PacketTrace(node, m["id"])
            out.append(pt)
        if rest.startswith("packet: "):
            _packet(pt, rest[8:])
        elif rest.startswith("policy "):
            pt.events.append(Event(table, chain, "", "policy-" + rest.split()[1]))
        else:
            v = _VERDICT.match(rest)
            if v:
                c = _COMMENT.search(v["rule"])
                pt.events.append(Event(table, chain, v["rule"], v["verdict"], v["target"] or "", c["c"] if c else ""))
    return out


# -- running it ---------------------------------------------------------------------------------------------------
@dataclass
class _Monitor:
    node: str
    ns: str
    proc: subprocess.Popen
    lines: list[str] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    stopping: bool = False
    thread: threading.Thread | None = None


class Tracer:
    """``nft monitor`` with the trace table in each given node namespace; a context manager (always cleans up)."""

    def __init__(self, lab: str, nodes: dict[str, str]) -> None:
        self.lab, self.nodes = lab, dict(nodes)  # node name → its netns
        self.monitors: list[_Monitor] = []

    def start(self) -> "Tracer":
        for node, ns in self.nodes.items():
            argv = ["nsenter", f"--net={netns.path(ns)}", "--", "nft", "monitor"]
            if self.lab:
                argv = journal.wrap(LabPaths(self.lab).proc_journal, f"nft monitor {node}", argv)
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                                    text=True)
            m = _Monitor(node, ns, proc)
            m.thread = threading.Thread(target=self._read, args=(m,), daemon=True)
            m.thread.start()
            self.monitors.append(m)
        deadline = time.monotonic() + READY_TIMEOUT
        pending = list(self.monitors)
        while pending:  # nft monitor is listening once it echoes our table (re-added until it does)
            for m in pending:
                self._nft(m.ns, setup_text())
            time.sleep(0.05)
            pending = [m for m in pending if not m.ready.is_set()]
            if pending and time.monotonic() > deadline:
                self.stop()
                raise ToolError(f"nft monitor in {pending[0].node} did not start listening", obj=pending[0].node)
        return self

    @staticmethod
    def _nft(ns: str, text: str) -> None:
        with netns.entered(ns):
            with Nft() as n:
                n.run(text)

    def _read(self, m: _Monitor) -> None:
        assert m.proc.stdout is not None
        for line in m.proc.stdout:
            if line.startswith("trace id "):
                m.lines.append(line.rstrip("\n"))
            elif f"table {FAMILY} {TABLE}" in line:
                if line.startswith("add table"):
                    m.ready.set()
                elif line.startswith("delete table") and m.stopping:
                    m.done.set()

    def stop(self) -> None:
        for m in self.monitors:
            m.stopping = True
            try:
                self._nft(m.ns, f"delete table {FAMILY} {TABLE}\n")
            except (NftError, OSError):
                m.done.set()  # the table is gone already (or the namespace with it): nothing more to read
        for m in self.monitors:
            m.done.wait(1.0)
            if m.proc.poll() is None:
                m.proc.send_signal(signal.SIGTERM)
            try:
                m.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                m.proc.kill()
                m.proc.wait()
            if m.thread is not None:
                m.thread.join(timeout=5)
            if m.proc.stdout is not None:
                m.proc.stdout.close()

    def __enter__(self) -> "Tracer":
        return self.start() if not self.monitors else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def traces(self) -> list[PacketTrace]:
        return [pt for m in self.monitors for pt in parse(m.node, m.lines)]
