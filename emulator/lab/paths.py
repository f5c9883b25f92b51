"""Where a lab keeps its files: one directory per lab under ``/run/podlab/labs`` (tmpfs, like the namespaces
themselves: both vanish at reboot, so a stale record can never outlive its kernel objects by a reboot).

Each node gets a small root of its own whose paths are the real ones (``etc/cni/net.d``, ``opt/cni/bin``,
``var/lib/cni/networks/cbr0``, ``run/flannel/subnet.env``), so what a student finds there is what they will find
on a real node. ``PODLAB_STATE_DIR`` moves the whole tree (tests use it).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def state_root() -> Path:
    return Path(os.environ.get("PODLAB_STATE_DIR", "/run/podlab"))


def labs_dir() -> Path:
    return state_root() / "labs"


@dataclass(frozen=True)
class LabPaths:
    lab: str

    @property
    def root(self) -> Path:
        return labs_dir() / self.lab

    @property
    def record(self) -> Path:
        return self.root / "lab.json"

    @property
    def store(self) -> Path:
        return self.root / "store"

    def node_root(self, node: str) -> Path:
        return self.root / "nodes" / node

    def cni_conf_dir(self, node: str) -> Path:
        return self.node_root(node) / "etc/cni/net.d"

    def cni_bin_dir(self, node: str) -> Path:
        return self.node_root(node) / "opt/cni/bin"

    def ipam_dir(self, node: str) -> Path:
        return self.node_root(node) / "var/lib/cni/networks"

    def flannel_env(self, node: str) -> Path:
        return self.node_root(node) / "run/flannel/subnet.env"

    def agent_log(self, node: str) -> Path:
        return self.node_root(node) / "var/log/podlab-agent.log"

    def agent_pid(self, node: str) -> Path:
        return self.node_root(node) / "run/podlab-agent.pid"

    def pod_dir(self, pod: str) -> Path:
        return self.root / "pods" / pod

    def container_log(self, pod: str, container: str) -> Path:
        return self.pod_dir(pod) / f"{container}.log"
