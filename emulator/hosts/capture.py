"""``podlab capture`` on a lab over several hosts: each host captures at its own points, the controller merges.

Each point is captured where it is: a pod or node on the host that holds it, ``underlay`` (and
``underlay:stretch0``, ``underlay:lan0``) on every host — each host's ``lan0`` is one segment of the stretched LAN —
and ``underlay:NODE`` on that node's host, ``external`` on the host of the external network (the first node's). Every host runs the one-host capture (``tools.capture``: one tcpdump per
point, in the lab's process journal there) inside ``host serve`` until each point saw ``count`` packets or
``duration`` passed, and sends its packets back. The controller writes one pcapng: one interface per point and
host, named ``HOST/POINT`` (``mult2/node-2:flannel.1``; ``frame.interface_name`` in Wireshark), described with the
host, and every packet in the order of the controller's clock.

Clocks: before the capture the controller reads each host's clock a few times (``clock``) and takes the sample
with the shortest round trip: offset = host clock − the midpoint of the round trip, good to half that round
trip. Each host's timestamps are moved by its offset onto the controller's clock, unless the offset is within its
uncertainty (the clocks agree as far as can be told; always so for hosts sharing one clock), and the offsets are
reported, so packets seen on two machines line up to within the stated uncertainty.
"""
from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from emulator.errors import HostUnreachableError, TargetError, UsageError
from emulator.hosts import controller, records
from emulator.hosts.sessions import for_command
from emulator.tools import pcapng

Progress = Callable[[str], None]
CLOCK_SAMPLES = 5
EVERY_HOST = ("underlay", "underlay:lan0", "underlay:stretch0")


@dataclass(frozen=True)
class Offset:
    host: str
    seconds: float  # host clock - controller clock
    uncertainty: float  # half the shortest round trip

    @property
    def applied(self) -> float:
        """What the timestamps are moved by: nothing when the clocks agree within what the round trip can tell
        (hosts sharing one clock always do: the host's reading lies inside the round trip)."""
        return self.seconds if abs(self.seconds) > self.uncertainty else 0.0

    def text(self) -> str:
        return (f"{self.host} {self.seconds * 1e3:+.3f} ms (±{self.uncertainty * 1e3:.3f} ms"
                + (", applied)" if self.applied else ", within it: not applied)"))


@dataclass
class Merged:
    interfaces: list[pcapng.Interface] = field(default_factory=list)
    packets: list[pcapng.Packet] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    offsets: list[Offset] = field(default_factory=list)


def host_of_target(text: str, where: dict[str, str], hosts: list[str]) -> list[str]:
    """The hosts a target is captured on (pure): its pod's or node's host (``external``: the external network's),
    or every host for the underlay."""
    if text in EVERY_HOST or text.startswith("underlay:") and text.split(":", 1)[1] not in where:
        return list(hosts)
    place, _, iface = text.partition(":")
    if place == "underlay":
        return [where[iface]]  # underlay:NODE, that node's port on lan0
    name = place.split("/")[-1]
    if name not in where:
        raise TargetError(f"{text}: no pod or node {name!r} in this multi-host lab (have: "
                          f"{', '.join(sorted(where)) or 'none'})", obj=text)
    return [where[name]]


def plan_points(targets: list[str], where: dict[str, str], hosts: list[str]) -> dict[str, list[str]]:
    """{host: [targets captured there]} in the order given (pure)."""
    out: dict[str, list[str]] = {}
    for t in targets:
        for h in host_of_target(t, where, hosts):
            out.setdefault(h, []).append(t)
    return {h: out[h] for h in hosts if h in out}


def offset_from(samples: list[tuple[float, float, float]], host: str) -> Offset:
    """Offset from (sent, host clock, received) samples: the one with the shortest round trip (pure)."""
    sent, theirs, got = min(samples, key=lambda s: s[2] - s[0])
    return Offset(host, theirs - (sent + got) / 2, (got - sent) / 2)


def merge(results: dict[str, dict[str, Any]], offsets: dict[str, Offset]) -> Merged:
    """One set of interfaces (``HOST/POINT``) and packets on the controller's clock, in time order (pure)."""
    m = Merged(offsets=[offsets[h] for h in results if h in offsets])
    for host, r in results.items():
        base = len(m.interfaces)
        shift = int(round(offsets[host].applied * 1e6)) if host in offsets else 0
        for i in r["interfaces"]:
            m.interfaces.append(pcapng.Interface(f"{host}/{i['name']}", f"{i['description']}, host {host}",
                                                 i["linktype"], i["snaplen"]))
        for label, n in r["counts"].items():
            m.counts[f"{host}/{label}"] = n
        for ts, orig, iface, data in r["packets"]:
            m.packets.append(pcapng.Packet(ts - shift, base64.b64decode(data), orig, base + iface))
    m.packets.sort(key=lambda p: p.ts_us)
    return m


def capture(lab: str, targets: list[str], *, bpf: str | None, count: int | None, duration: float,
            progress: Progress) -> Merged:
    """Capture at ``targets`` across the lab's hosts (see the module text); raises the first host's error."""
    if duration <= 0:
        raise UsageError("capture across hosts needs a positive --duration (it also bounds -c)", obj=lab)
    with for_command() as ss:
        st = controller.status(lab, ss)
        if st["unreachable"]:
            h, why = next(iter(st["unreachable"].items()))
            raise HostUnreachableError(why, obj=h)
        rec = st["record"]
        hosts = {d["name"]: records.host_of(d) for d in rec["hosts"]}
        where = controller.where(st)
        plan = plan_points(targets, where, list(hosts))

        def clock(name: str) -> Offset:
            s, samples = ss.get(hosts[name]), []
            for _ in range(CLOCK_SAMPLES):
                t0 = time.time()
                theirs = float(s.request("clock", timeout=10))
                samples.append((t0, theirs, time.time()))
            return offset_from(samples, name)
        offs = controller.each([hosts[h] for h in plan], lambda h: clock(h.name))
        err = controller.first_error(offs)
        if err is not None:
            raise err
        res = controller.each([hosts[h] for h in plan], lambda h: ss.get(h).request(
            "capture", lab=lab, points=plan[h.name], filter=bpf, count=count, duration=duration,
            progress=progress, timeout=duration + 60))
        err = controller.first_error(res)
        if err is not None:
            raise err
    return merge(res, offs)  # type: ignore[arg-type]


def write(path: str, m: Merged) -> int:
    with open(path, "wb") as f:
        pcapng.write_file(f, m.interfaces, m.packets)
    return len(m.packets)
