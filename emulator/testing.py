"""Assertions and captures for tests of a pod network, used by the pytest plugin and usable on their own.

    from emulator.testing import LabUnderTest
    with LabUnderTest.up("topologies/demo.yaml", routing="host-gw") as lab:
        lab.assert_reachable("web-1", "web-3")
        lab.assert_no_nat("web-1", "web-3")
        with lab.capture("node/node-1:eth0", bpf="udp port 8472") as cap:
            lab.ping("web-1", "web-3")
        assert cap.lines

Every assertion proves its claim inside the lab: reachability by a real TCP connection (and ICMP), no-NAT by the
source address the *receiving* pod's kernel reported, and a capture by tcpdump in the namespace named.
"""
from __future__ import annotations

import contextlib
import itertools
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from emulator import plugins
from emulator.check import probes as probe
from emulator.check.context import _env, _nsenter
from emulator.lab import teardown
from emulator.lab.api import Lab, popen_in
from emulator.topology.loader import load

plugins.install()  # the testing layer is an entry into podlab, like the CLI

_counter = itertools.count(1)


class NetworkAssertionError(AssertionError):
    pass


@dataclass
class Capture:
    """Packets tcpdump saw at one point while the ``with`` block ran (``lines``: tcpdump's one-line decode)."""

    target: str
    path: Path
    lines: list[str] = field(default_factory=list)


class LabUnderTest(Lab):
    """A ``Lab`` with test helpers; ``LabUnderTest.up`` gives it a unique name and ``down`` removes it."""

    @classmethod
    def up(cls, source, *, name: str | None = None, routing: str | None = None, **kw) -> "LabUnderTest":  # type: ignore[override]
        name = name or f"pt{os.getpid() % 100000}x{next(_counter)}"
        topo = load(source, name=name, routing=routing)
        try:
            Lab.up(topo, **kw)
        except BaseException:
            teardown.destroy(name)
            raise
        return cls(name)

    def ip_of(self, target: str) -> str:
        if target.startswith("node/"):
            return self.node(target[5:]).ip
        ip = self.pod(target).ip
        if not ip:
            raise NetworkAssertionError(f"pod {target} has no IP (status {self.pod(target).status.get('phase')})")
        return ip

    def ping(self, src: str, dst: str, count: int = 1) -> bool:
        return probe.ping(self, src, self.ip_of(dst) if not dst[0].isdigit() else dst, count=count)

    def observed_source(self, src: str, dst: str, port: int = 47999) -> str | None:
        """The source IP that pod ``dst`` saw for a TCP connection from ``src`` (None: no connection)."""
        dst_ns = self.target_ns(dst)
        server = subprocess.Popen(_nsenter(dst_ns, "serve", str(port)), stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, env=_env(), text=True)
        try:
            if server.stdout.readline().strip() != "ready":
                raise NetworkAssertionError(f"could not start a test server in {dst}")
            out = subprocess.run(_nsenter(self.target_ns(src), "probe", json.dumps([[self.ip_of(dst), port]])),
                                 capture_output=True, text=True, env=_env(), timeout=30).stdout
            r = json.loads(out)[0]
            return r["seen"] if r["connected"] else None
        finally:
            server.kill()
            server.wait()

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
    def capture(self, point: str, bpf: str = "", path: str | Path | None = None,
                settle: float = 0.3) -> Iterator[Capture]:
        """tcpdump at ``point`` (``pod:iface``, ``node/NAME:iface``; iface defaults to eth0) during the block."""
        target, _, iface = point.partition(":")
        ns = self.target_ns(target)
        path = Path(path or f"/tmp/podlab-{self.name}-{target.replace('/', '_')}-{iface or 'eth0'}.pcap")
        cap = Capture(point, path)
        proc = popen_in(ns, ["tcpdump", "-Z", "root", "-U", "--immediate-mode", "-n", "-i", iface or "eth0",
                             "-w", str(path), *([bpf] if bpf else [])], what=f"tcpdump {point} (testing)",
                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(settle)
        try:
            yield cap
        finally:
            time.sleep(settle)
            proc.terminate()
            proc.wait(timeout=10)
            vxlan = ["-T", "vxlan"] if "8472" in bpf else []
            cap.lines = subprocess.run(["tcpdump", "-n", "-r", str(path), *vxlan], capture_output=True,
                                       text=True).stdout.splitlines()

    def check(self, only: list[str] | None = None):
        from emulator.check import runner
        return runner.run_lab(self, only)


def main() -> int:  # pragma: no cover - manual use
    print(__doc__)
    return 0


if __name__ == "__main__":
    sys.exit(main())
