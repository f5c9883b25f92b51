"""What a trace is made of — packets, hops, counter checks, the result — and how it is shown; plus NAT hooks.

Pure data, so the walker (``trace``) and the verifier (``trace_verify``) share one vocabulary and tests can
build results by hand. A hop is one thing a device or table did to the packet, at one interface of one
namespace, in the words of the tool a student would use to see it (``ip route``, ``ip neigh``, ``bridge fdb``,
``iptables-save``, ``nft list ruleset``). Each hop lists the interface counters that must move if the hop really
happens (``Check``): ``--verify`` sends a probe and reads them.

NAT hooks: the walker is given a sequence of them (``trace(..., nat_hooks=...)``; the default is the explicit
list ``trace_nat.NAT_HOOKS``) and calls each, in order, at every netfilter hook a packet passes — ``output`` in
the namespace that sends it, ``prerouting`` where it arrives, ``input`` before local delivery, ``forward`` and
``postrouting`` where it is routed on — as ``hook(ctx, at, packet)``: ``ctx`` the walker's view of the lab
(``NatContext``), ``at`` the place (``NatAt``: namespace, hook, in and out devices). A hook returns None (nothing
to say) or a ``NatStep``: the packet as it leaves the hook (addresses, port, mark), a line for the trace (e.g.
"DNAT 10.96.0.10:53 → 10.244.1.2:53 by KUBE-SEP-…"), the same as data for ``-o json``, and, when the packet
goes no further (dropped, rejected, or a Service address nothing translated), the problem to report.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from emulator.netlink.observe import Snapshot

Proto = Literal["icmp", "tcp", "udp"]
NatPoint = Literal["output", "prerouting", "input", "forward", "postrouting"]


@dataclass(frozen=True)
class Packet:
    src: str
    dst: str
    proto: Proto = "icmp"
    port: int | None = None  # destination port (tcp/udp)
    mark: int = 0  # the packet mark (netfilter), kept while the packet stays in one namespace

    def text(self) -> str:
        port = f":{self.port}" if self.port else ""
        return f"{self.proto} {self.src} → {self.dst}{port}"

    def with_(self, **kw: object) -> "Packet":
        return replace(self, **kw)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Check:
    """An interface counter that must grow when the hop happens: ``dir`` is "rx" or "tx"."""

    ns: str
    iface: str
    dir: Literal["rx", "tx"]


@dataclass
class Hop:
    at: str  # pod, node or host name (gw, external), or "underlay"
    kind: str  # pod | node | host | underlay
    ns: str
    iface: str
    action: str  # out | in | route | bridge | vxlan | decap | nat | deliver
    text: str
    checks: list[Check] = field(default_factory=list)
    verified: bool | None = None
    detail: dict | None = None  # a NAT hook's decision as data (rules, chains, alternatives)


@dataclass
class TraceResult:
    lab: str
    routing: str
    src_name: str
    dst_name: str
    packet: Packet
    hops: list[Hop] = field(default_factory=list)
    delivered: bool = False
    problem: str | None = None  # the first thing that breaks the path, with where and what is missing
    probe: str | None = None  # --verify: what the probe reported
    handoff: dict | None = None  # across hosts: the frame left this host by its stretch (``trace.resume`` goes on)

    @property
    def ok(self) -> bool:
        return self.delivered and self.problem is None and all(h.verified is not False for h in self.hops)

    def path(self) -> str:
        """The path in one line: ``web-1 eth0 → node-1 veth… → cni0 → flannel.1 ⇒ …``."""
        parts: list[str] = []
        last_at, tunnel = None, False
        for h in self.hops:
            if h.action in ("route", "nat", "deliver"):
                continue
            name = h.iface if h.at == last_at else f"{h.at} {h.iface}"
            if not parts or parts[-1].removeprefix("⇒ ") != name:
                parts.append(("⇒ " if tunnel and parts else "") + name)
                tunnel = False
            tunnel = tunnel or h.action == "vxlan"
            last_at = h.at
        return " → ".join(parts).replace("→ ⇒", "⇒")

    def as_dict(self) -> dict:
        d = asdict(self)
        d["ok"] = self.ok
        d["path"] = self.path()
        return d

    def lines(self) -> list[str]:
        head = (f"trace {self.src_name} → {self.dst_name}: {self.packet.text()} "
                f"(lab {self.lab}, routing {self.routing})")
        out = [head]
        w_at = max([len(h.at) for h in self.hops] + [4])
        w_if = max([len(h.iface) for h in self.hops] + [5])
        for i, h in enumerate(self.hops, 1):
            mark = {True: "✓", False: "✗", None: " "}[h.verified]
            out.append(f"{i:>3} {mark} {h.at:<{w_at}}  {h.iface:<{w_if}}  {h.text}")
        if self.problem:
            out.append(f"PROBLEM: {self.problem}")
        elif self.delivered:
            out.append(f"path: {self.path()}")
        if self.probe:
            out.append(f"verify: {self.probe}")
        return out


@dataclass(frozen=True)
class NatAt:
    """Where a NAT hook is called: a namespace (kind, owner, name), the netfilter hook, the packet's devices."""

    kind: str  # pod | node | host | underlay
    owner: str
    ns: str
    point: NatPoint
    in_dev: str | None = None
    out_dev: str | None = None


@dataclass(frozen=True)
class NatStep:
    packet: Packet
    text: str
    problem: str | None = None  # set: the packet goes no further, for this reason
    detail: dict | None = None


class NatContext(Protocol):
    """What a NAT hook may use of the walker: the lab, kernel views of its namespaces, a per-trace memo."""

    lab: object
    memo: dict
    prefer: str | None  # the endpoint the user asked the trace to follow (``--endpoint``)

    def view(self, kind: str, owner: str) -> "Snapshot": ...


class NatHook(Protocol):
    def __call__(self, ctx: NatContext, at: NatAt, packet: Packet) -> NatStep | None: ...


def result_from_dict(d: dict) -> TraceResult:
    """A result from its ``as_dict`` form (what a host of a multi-host lab sends back)."""
    hops = [Hop(**{**{k: v for k, v in h.items()}, "checks": [Check(**c) for c in h.get("checks", [])]})
            for h in d.get("hops", [])]
    return TraceResult(d["lab"], d["routing"], d["src_name"], d["dst_name"], Packet(**d["packet"]), hops,
                       d.get("delivered", False), d.get("problem"), d.get("probe"), d.get("handoff"))
