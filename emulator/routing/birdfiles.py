"""Where one node's BIRD keeps its files, and how its process is named in the lab's journal.

Apart from ``routing.bgp`` so that readers of those files (the API server's mirror pods, ``emulator.apiserver.syspods``)
import no netlink stack: ``routing.bgp`` pulls in pyroute2 (13 MB of private memory in every process that imports it).
"""
from __future__ import annotations

from pathlib import Path

from emulator.state.paths import LabPaths


class BirdFiles:
    """Where one node's BIRD keeps its files (under the node's state directory)."""

    def __init__(self, node_root: str | Path) -> None:
        self.root = Path(node_root)
        self.conf = self.root / "etc/bird/bird.conf"
        self.meta = self.root / "etc/bird/podlab-bgp.json"
        self.ctl = self.root / "run/bird/bird.ctl"
        self.pid = self.root / "run/bird/bird.pid"
        self.log = self.root / "var/log/bird.log"


def daemon_label(node: str) -> str:
    return f"bgp daemon of {node}"  # the builder records mode daemons as "<mode> daemon of <node>"


def files_of(lab: str, node: str) -> BirdFiles:
    return BirdFiles(LabPaths(lab).node_root(node))
