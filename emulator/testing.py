"""Assertions and captures for tests of a pod network, used by the pytest plugin and usable on their own.

    from emulator.testing import LabUnderTest
    with LabUnderTest.up("topologies/demo.yaml", routing="host-gw") as lab:
        lab.assert_reachable("web-1", "web-3")
        lab.assert_no_nat("web-1", "web-3")
        with lab.capture("node/node-1:eth0", bpf="udp port 8472", count=2) as cap:
            lab.ping("web-1", "web-3")
        assert all(f.vni == 1 for f in cap.frames)

Every assertion proves its claim inside the lab: reachability by a real TCP connection (and ICMP), no-NAT by the
source address the *receiving* pod's kernel reported, and a capture by tcpdump in the namespace named.

A capture is ``tools.capture.Capture`` at one point: the block starts only once tcpdump reported "listening on"
(so nothing sent in the block is missed), and with ``count`` the capture ends when tcpdump has seen that many
packets (waiting at most ``timeout`` seconds) rather than after a guessed delay. The packets stay in memory;
``path`` also writes them as pcapng.

Lab names: ``unique_name`` tags every lab with this process (``<prefix><pid>x<n>``), so two test runs on one
machine never pick the same name and a run can find what it left behind.
"""
from __future__ import annotations

import contextlib
import io
import itertools
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from emulator import plugins
from emulator.check import engine
from emulator.check import probes as probe
from emulator.lab import teardown
from emulator.lab.api import SYSTEM_NAMESPACES, Lab
from emulator.state import record
from emulator.tools import capture as capture_tool
from emulator.tools import packets, pcapng, targets
from emulator.topology.loader import load, loads
from emulator.topology.model import Topology

plugins.install()  # the testing layer is an entry into podlab, like the CLI

#: The tag of every lab name this process makes (``unique_name``).
SESSION_TAG = f"{os.getpid() % 100000}x"
_counter = itertools.count(1)


def unique_name(prefix: str = "pt") -> str:
    """A lab name that no other running process makes: ``<prefix><pid>x<n>`` (the PID modulo 100000)."""
    return f"{prefix}{SESSION_TAG}{next(_counter)}"


def topology(source: str | Path | Topology, name: str, routing: str | None = None) -> Topology:
    """The topology to bring up: a ``Topology`` as it is, else a file (a ``Path``, or a one-line string ending in
    ``.yaml``) or YAML text, loaded under ``name`` (and ``routing``, when given)."""
    if isinstance(source, Topology):
        return source
    if isinstance(source, Path) or (source.endswith((".yaml", ".yml")) and "\n" not in source):
        return load(source, name=name, routing=routing)
    return loads(source, source="<test>", name=name, routing=routing)


class NetworkAssertionError(AssertionError):
    pass


@dataclass
class Capture:
    """Packets tcpdump saw at one point while the ``with`` block ran.

    ``frames``: each packet decoded (``tools.packets.Frame``: addresses, protocol, VNI and the inner frame of a
    VXLAN packet); ``lines``: tcpdump's own one-line decode of the same packets (VXLAN decoded when the capture
    holds VXLAN); ``path``: the pcapng file, when one was asked for.
    """

    target: str
    path: Path | None = None
    frames: list[packets.Frame] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    complete: bool = False  #: with ``count``: tcpdump saw that many packets before the timeout


def _tcpdump_lines(data: bytes, frames: list[packets.Frame]) -> list[str]:
    udp = [f for f in frames if f.proto == "UDP"]
    vxlan = ["-T", "vxlan"] if udp and all(f.vni is not None for f in udp) else []
    r = subprocess.run(["tcpdump", "-n", "-r", "-", *vxlan], input=data, capture_output=True, timeout=30)
    return r.stdout.decode(errors="replace").splitlines()


class LabUnderTest(Lab):
    """A ``Lab`` with test helpers; ``LabUnderTest.up`` gives it a unique name and ``down`` removes it."""

    @classmethod
    def up(cls, source, *, name: str | None = None, routing: str | None = None,  # type: ignore[override]
           prefix: str = "pt", **kw) -> "LabUnderTest":
        """Bring ``source`` (a file, YAML text or a ``Topology``) up under a unique name (or ``name``); whatever a
        failed or interrupted ``up`` left is removed — never a lab that existed before."""
        topo = topology(source, name or unique_name(prefix), routing)
        existed = record.load(topo.name) is not None
        try:
            Lab.up(topo, **kw)
        except BaseException:
            if not existed:
                teardown.destroy(topo.name)
            raise
        return cls(topo.name)

    def ip_of(self, target: str) -> str:
        """The IP of a pod or node named in the target grammar (``web-1``, ``node-1``, ``node/node-1``)."""
        place = self.target(target, iface=False)
        if place.kind == "node":
            return self.node(place.name).ip
        if place.kind != "pod":
            raise NetworkAssertionError(f"{target} is the {place.kind}: give a pod or a node")
        ip = self.pod(place.name).ip
        if not ip:
            raise NetworkAssertionError(f"pod {target} has no IP (status {self.pod(place.name).status.get('phase')})")
        return ip

    def ping(self, src: str, dst: str, count: int = 1) -> bool:
        return probe.ping(self, src, self.ip_of(dst) if not dst[0].isdigit() else dst, count=count)

    def wait_serving(self, port: int = 8080, pods: Iterable[str] | None = None, timeout: float = 10) -> None:
        """Wait until the HTTP server (netexec) of every pod named (default: all but the cluster's own, such as the
        coredns pods of kube-system) answers on ``port`` from the pod's node: a Running pod's server binds its port
        a few milliseconds later. All pods are probed at once."""
        views = [p for p in self.pods if (p.name in set(pods) if pods is not None
                                          else p.namespace not in SYSTEM_NAMESPACES)]
        res = probe.matrix(views, lambda p: probe.wait_http(self, f"node/{p.node}", p.ip, port, timeout),
                           workers=max(len(views), 1))
        silent = [p.name for p, ok in res if not ok]
        if silent:
            raise NetworkAssertionError(f"no answer on port {port} within {timeout:.0f}s from {', '.join(silent)}")

    def observed_source(self, src: str, dst: str, port: int = 31999) -> str | None:
        """The source IP that pod ``dst`` saw for a TCP connection from ``src`` (None: no connection)."""
        job = engine.Tcp(self.target_ns(src), self.ip_of(dst), port, listener=self.target_ns(dst))
        r = engine.Prober(max_inflight=1).run([job])[0]  # sockets opened in both namespaces from this process
        if "could not open" in r.get("error", ""):
            raise NetworkAssertionError(f"could not listen in {dst}: {r['error']}")
        return r["seen"] if r["connected"] else None

    def assert_reachable(self, src: str, dst: str) -> None:
        dst_ip = self.ip_of(dst)
        if not probe.ping(self, src, dst_ip):
            raise NetworkAssertionError(f"{src} cannot ping {dst} ({dst_ip})")
        if self.observed_source(src, dst) is None:
            raise NetworkAssertionError(f"{src} cannot open a TCP connection to {dst} ({dst_ip})")

    def assert_no_nat(self, src: str, dst: str) -> None:
        seen, want = self.observed_source(src, dst), self.ip_of(src)
        if seen != want:
            raise NetworkAssertionError(f"{dst} saw {seen} as the source of a connection from {src} ({want}): "
                                        "the packets were NATed on the way")

    def assert_unreachable(self, src: str, dst: str) -> None:
        if probe.ping(self, src, self.ip_of(dst), timeout=1):
            raise NetworkAssertionError(f"{src} can still reach {dst}")

    @contextlib.contextmanager
    def capture(self, point: str, bpf: str = "", count: int | None = None, timeout: float = 10,
                path: str | Path | None = None) -> Iterator[Capture]:
        """tcpdump at ``point`` (the tools' target grammar: ``pod``, ``pod:iface``, ``node/NAME:iface``,
        ``underlay:lan0``; the interface defaults to the place's uplink) while the block runs.

        The block starts once tcpdump is listening. With ``count``, the capture ends when tcpdump has seen that
        many packets (at most ``timeout`` seconds after the block: ``complete`` says whether it did); without,
        it ends with the block, holding what the kernel had handed tcpdump by then.
        """
        where = targets.resolve(self, point)
        result = Capture(point, Path(path) if path else None)
        with capture_tool.Capture([where], bpf=bpf or None, count=count) as cap:
            yield result
            result.complete = cap.wait(duration=timeout) if count else False
        buf = io.BytesIO()
        pcapng.write_file(buf, cap.interfaces, list(cap.packets))
        result.frames = [packets.decode_ethernet(p.data) for p in cap.packets]
        result.lines = _tcpdump_lines(buf.getvalue(), result.frames)
        if result.path is not None:
            result.path.write_bytes(buf.getvalue())
            capture_tool.give_to_user(str(result.path))

    def check(self, only: list[str] | None = None, full: bool | None = None, seed: int | None = None):
        from emulator.check import runner
        return runner.run_lab(self, only, full, seed)


def main() -> int:  # pragma: no cover - manual use
    print(__doc__)
    return 0


if __name__ == "__main__":
    sys.exit(main())
