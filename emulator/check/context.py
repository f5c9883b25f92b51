"""What the checks share for one lab: its Running pods and nodes, and one probe matrix measured once.

The matrix is measured with ``wire``: a server in every pod, then one prober per pod (towards every other pod)
and one per node (towards the node's own pods), all at once. Each prober opens its connections in parallel, so a
9-pod lab takes about as long as the slowest connection, not 72 of them. Servers are our own child processes,
stopped when the context closes.
"""
from __future__ import annotations

import json
import os
import random
import select
import subprocess
import sys
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from emulator.lab.api import Lab
from emulator.netlink import netns

PKG_PARENT = str(Path(__file__).resolve().parents[2])


@dataclass(frozen=True)
class PodInfo:
    name: str  # the pod's reference: ``name`` in default, ``namespace/name`` elsewhere
    ip: str
    node: str
    netns: str
    namespace: str = "default"


def _nsenter(ns: str, *args: str) -> list[str]:
    return ["nsenter", f"--net={netns.path(ns)}", "--", sys.executable, "-m", "emulator.check.wire", *args]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = PKG_PARENT + (":" + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


@dataclass
class Context:
    lab: Lab
    port: int = field(default_factory=lambda: random.randint(41000, 48999))
    _servers: list[subprocess.Popen] = field(default_factory=list)

    @cached_property
    def pods(self) -> list[PodInfo]:
        out = []
        for p in self.lab.pods:
            st = p.status
            if st.get("phase") == "Running" and st.get("podIP"):
                out.append(PodInfo(p.ref, st["podIP"], p.node, p.netns, p.namespace))
        return out

    @cached_property
    def routing(self) -> str:
        return self.lab.record.get("routing", "")

    def start_servers(self) -> list[str]:
        """Start a server in every pod; return the pods whose server did not come up."""
        env = _env()
        for p in self.pods:
            self._servers.append(subprocess.Popen(_nsenter(p.netns, "serve", str(self.port)), stdout=subprocess.PIPE,
                                                  stderr=subprocess.DEVNULL, env=env, text=True))
        bad = []
        for p, proc in zip(self.pods, self._servers):
            r, _, _ = select.select([proc.stdout], [], [], 10)
            if not r or proc.stdout.readline().strip() != "ready":
                bad.append(p.name)
        return bad

    @cached_property
    def matrix(self) -> dict[tuple[str, str], dict]:
        """(source, target pod) → probe result; sources are pod names and ``node/<name>``."""
        failed = self.start_servers()
        jobs: list[tuple[str, str, list[PodInfo]]] = []
        for p in self.pods:
            jobs.append((p.name, p.netns, [q for q in self.pods if q.name != p.name]))
        for n in self.lab.nodes:
            jobs.append((f"node/{n.name}", n.netns, [q for q in self.pods if q.node == n.name]))
        env = _env()
        procs = [(src, targets, subprocess.Popen(
            _nsenter(ns, "probe", json.dumps([[t.ip, self.port] for t in targets])), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=env, text=True)) for src, ns, targets in jobs if targets]
        out: dict[tuple[str, str], dict] = {}
        for src, targets, proc in procs:
            stdout, stderr = proc.communicate(timeout=60)
            try:
                results = json.loads(stdout)
            except ValueError:
                results = [{"target": t.ip, "connected": False, "error": stderr.strip() or "prober failed"}
                           for t in targets]
            for t, r in zip(targets, results):
                if t.name in failed:
                    r = {**r, "error": f"check server did not start in {t.name}"}
                out[(src, t.name)] = r
        return out

    def connect(self, ns: str, targets: list[tuple[str, int]]) -> list[dict]:
        """Open a TCP connection from namespace ``ns`` to each (ip, port), all at once; one result per target."""
        proc = subprocess.run(_nsenter(ns, "connect", json.dumps([[ip, p] for ip, p in targets])),
                              capture_output=True, text=True, env=_env(), timeout=60)
        try:
            return json.loads(proc.stdout)
        except ValueError:
            return [{"target": ip, "port": p, "connected": False, "error": proc.stderr.strip() or "prober failed"}
                    for ip, p in targets]

    def close(self) -> None:
        for proc in self._servers:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        self._servers.clear()

    def __enter__(self) -> "Context":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
