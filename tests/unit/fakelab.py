"""A lab's records without its kernel objects, for unit tests of what reads them (the CLI, target resolution).

``fake_lab`` writes what ``up`` writes before it builds anything — the lab record and the store's node and pod
objects — under a temporary ``PODLAB_STATE_DIR``, plus a Running status per pod (no process, no namespace).
Commands that only read the records (``get``, ``describe`` of a missing object, target resolution, the exit
codes of not-found) then run as a user would run them, without root and without touching the kernel.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from emulator.cli import main as cli
from emulator.lab.api import Lab
from emulator.state import manifests, record
from emulator.state.paths import LabPaths
from emulator.state.store import Store
from emulator.topology.loader import loads

TOPOLOGY = """
version: 1
name: clig-unit
nodes: [{name: node-1}, {name: node-2}]
pods:
- {name: web-1, node: node-1, containers: [{name: app, image: netexec}, {name: side, image: busybox}]}
- {name: web-2, node: node-2}
"""


def fake_lab(state_dir: Path, monkeypatch: pytest.MonkeyPatch, text: str = TOPOLOGY) -> Lab:
    monkeypatch.setenv("PODLAB_STATE_DIR", str(state_dir))
    topo = loads(text, "<unit>")
    rec = record.new(topo)
    rec["status"] = "ready"
    record.save(rec)
    store = Store(LabPaths(topo.name).store)
    store.init()
    for n in topo.nodes:
        store.put("nodes", n.name, manifests.node_manifest(topo, n))
    for i, p in enumerate(topo.pods, start=2):
        store.put("pods", p.name, manifests.pod_manifest(p))
        node = topo.node(p.node)
        store.put_status("pods", p.name, {
            "name": p.name, "phase": "Running", "nodeName": p.node, "hostIP": str(node.ip),
            "podIP": str(node.pod_cidr.network_address + i),
            "containerStatuses": [{"name": c.name, "ready": True, "restartCount": 0, "state": {"running": {}}}
                                  for c in p.containers]})
    return Lab(topo.name)


def run(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, *argv: str) -> tuple[int, str, str]:
    """``podlab ARGV`` in this process, as root would run it: (exit code, stdout, stderr)."""
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    capsys.readouterr()
    try:
        code = cli.main(list(argv))
    except SystemExit as e:  # argparse's usage errors
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return code, out, err
