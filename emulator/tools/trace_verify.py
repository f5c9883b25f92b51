"""``trace --verify``: send a real probe along the traced path and confirm every hop with interface counters.

Each hop lists the counters that must grow if the packet really passes there (``Check``: namespace, interface,
rx or tx). We read every involved namespace's counters (one link dump each), send the probe from the source
namespace — ``ping -c N`` for icmp, a TCP connection attempt (curl) or a UDP datagram for tcp/udp — read them
again and mark each hop verified when all its counters grew by at least the number of probe packets. Other
traffic in the lab can only add to a counter, never hide a missing packet, so a hop marked ✗ is a real break.
Where the rules pick a Service endpoint at random, one probe may well go to another endpoint than the traced
one: the probe is then repeated (up to ``RANDOM_TRIES`` times, counting from the first reading) until the
traced path has seen it, and the report says how many probes it took. Where a NetworkPolicy rule decided
(``trace_netpol``), its packet counter is read before and after the probe too: the report says by how much it
grew — for a packet a policy drops (the probe is sent then as well), that is the kernel confirming the drop point.
"""
from __future__ import annotations

from emulator.lab.api import Lab, run_in
from emulator.netlink.observe import Snapshot
from emulator.tools import trace_netpol
from emulator.tools.trace_model import TraceResult

PINGS = 3
RANDOM_TRIES = 8  # two equally likely endpoints: all eight probes miss the traced one once in 256 runs


def probe_argv(proto: str, dst: str, port: int | None, count: int = PINGS) -> list[str]:
    """The probe command run in the source namespace (pure)."""
    if proto == "tcp":
        return ["curl", "-s", "-o", "/dev/null", "--max-time", "2", f"http://{dst}:{port or 80}/"]
    if proto == "udp":
        return ["bash", "-c", f"for i in $(seq {count}); do echo podlab-trace > /dev/udp/{dst}/{port or 53}; done"]
    return ["ping", "-n", "-q", "-c", str(count), "-i", "0.2", "-W", "2", dst]


def snapshot(namespaces: set[str]) -> dict[str, dict[str, tuple[int, int]]]:
    out = {}
    for ns in namespaces:
        v = Snapshot(ns=ns)
        try:
            out[ns] = v.counters()
        finally:
            v.close()
    return out


def random_choice(res: TraceResult) -> bool:
    """Did the rules choose the traced endpoint at random among several?"""
    return any(d.get("nat") == "dnat" and d.get("alternatives")
               for h in res.hops if h.detail for d in h.detail.get("decisions", []))


def _mark(res: TraceResult, before: dict, after: dict, need: int) -> None:
    for h in res.hops:
        if not h.checks:
            continue
        ok = True
        for c in h.checks:
            i = 0 if c.dir == "rx" else 1
            delta = after.get(c.ns, {}).get(c.iface, (0, 0))[i] - before.get(c.ns, {}).get(c.iface, (0, 0))[i]
            ok = ok and delta >= need
        h.verified = ok


def verify(lab: Lab, res: TraceResult, count: int = PINGS) -> TraceResult:
    """Probe the path of ``res`` and set ``verified`` on every hop that has checks; returns ``res``."""
    checks = [c for h in res.hops for c in h.checks]
    if not res.hops:
        return res
    namespaces = {c.ns for c in checks}
    src_ns = res.hops[0].ns
    need = count if res.packet.proto in ("icmp", "udp") else 1
    tries = RANDOM_TRIES if random_choice(res) else 1
    rule_ns = {ns for _, ns, _ in trace_netpol.deciding_rules(res)}
    rules_before = trace_netpol.read_counters(rule_ns)
    before = snapshot(namespaces)
    for n in range(1, tries + 1):
        r = run_in(src_ns, probe_argv(res.packet.proto, res.packet.dst, res.packet.port, count), timeout=30)
        _mark(res, before, snapshot(namespaces), need)
        if all(h.verified is not False for h in res.hops):
            break
    what = {"icmp": f"{count} pings", "tcp": "a TCP connection attempt", "udp": f"{count} UDP datagrams"}
    answered = "answered" if r.returncode == 0 else f"not answered (exit {r.returncode})"
    bad = [f"{h.at} {h.iface}" for h in res.hops if h.verified is False]
    tried = f" (probe {n} of up to {tries}: the endpoint is chosen at random)" if tries > 1 else ""
    res.probe = (f"{what[res.packet.proto]} from {res.src_name}: {answered}{tried}; "
                 + (f"counters did not move at {', '.join(bad)}" if bad else
                    f"all {sum(1 for h in res.hops if h.verified)} checked hops saw the probe"))
    if rule_ns:
        res.probe += "; " + "; ".join(trace_netpol.verify_words(res, rules_before, trace_netpol.read_counters(rule_ns)))
    if res.packet.proto == "icmp" and r.returncode != 0 and res.problem is None:
        res.problem = f"the traced path looks complete but the probe was {answered}"
    return res
