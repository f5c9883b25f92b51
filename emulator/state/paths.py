"""Where a lab keeps its files: one directory per lab under ``/run/podlab/labs`` (tmpfs, like the namespaces
themselves: both vanish at reboot, so a stale record can never outlive its kernel objects by a reboot).

Each node gets a small root of its own whose paths are the real ones (``etc/cni/net.d``, ``opt/cni/bin``,
``var/lib/cni/networks/cbr0``, ``run/flannel/subnet.env``), so what a student finds there is what they will find
on a real node. ``PODLAB_STATE_DIR`` moves the whole tree (tests use it).

The tree must be on tmpfs: agents write a status file and an IPAM file per pod, and on a disk file system each
create costs ~0.2 ms against ~0.02 ms on tmpfs. Where ``/run`` is not a tmpfs (some VM images), ``ensure``
mounts a small tmpfs on ``/run/podlab`` itself (as iproute2 bind-mounts ``/run/netns``); it stays mounted.
"""
from __future__ import annotations

import ctypes
import functools
import os
from dataclasses import dataclass
from pathlib import Path

from emulator.errors import StateError

DEFAULT_ROOT = "/run/podlab"


def state_root() -> Path:
    return Path(os.environ.get("PODLAB_STATE_DIR", DEFAULT_ROOT))


def fs_type(path: str) -> str:
    """File system type of the mount holding ``path`` (longest mount point prefix in /proc/self/mounts)."""
    best, kind = "", ""
    real = os.path.realpath(path)
    with open("/proc/self/mounts") as f:
        for line in f:
            parts = line.split()
            mnt = parts[1].replace("\\040", " ")
            if (real == mnt or real.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
                best, kind = mnt, parts[2]
    return kind


def ensure_state_root() -> Path:
    """Make the state tree exist (on a tmpfs); ``StateError`` naming the directory if it cannot be."""
    root = state_root()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StateError(f"cannot create podlab's state directory {root}: {e.strerror or e}", obj=str(root)) from None
    if "PODLAB_STATE_DIR" not in os.environ and fs_type(str(root)) != "tmpfs":
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.mount(b"tmpfs", str(root).encode(), b"tmpfs", 2 | 4, b"mode=755,size=25%") != 0:  # nosuid,nodev
            raise StateError(f"cannot mount a tmpfs on {root}: {os.strerror(ctypes.get_errno())}", obj=str(root))
    return root


def labs_dir() -> Path:
    return state_root() / "labs"


@functools.lru_cache(maxsize=256)
def _lab_root(state: str, lab: str) -> Path:
    return Path(state) / "labs" / lab


@functools.lru_cache(maxsize=4096)
def _node_root(root: Path, node: str) -> Path:
    return root / "nodes" / node


@dataclass(frozen=True)
class LabPaths:
    lab: str

    @property
    def root(self) -> Path:
        """``<state root>/labs/<lab>`` (cached per state root: agents ask for paths of the lab per pod, and
        building them through pathlib each time was ~0.5 ms of CPU per pod)."""
        return _lab_root(os.environ.get("PODLAB_STATE_DIR", DEFAULT_ROOT), self.lab)

    @property
    def record(self) -> Path:
        return self.root / "lab.json"

    @property
    def proc_journal(self) -> Path:
        """Append-only record of every process the lab's commands started (``emulator.proc.journal``)."""
        return self.root / "procs.journal"

    @property
    def store(self) -> Path:
        return self.root / "store"

    def node_root(self, node: str) -> Path:
        return _node_root(self.root, node)

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

    def container_journal(self, node: str) -> Path:
        """Append-only record of every container process an agent started: ``<sandbox id> <pid> <start>``."""
        return self.node_root(node) / "run/podlab-containers.journal"

    def pod_dir(self, pod: str, ns: str = "default") -> Path:
        """A pod's files (container logs): ``pods/<namespace>/<pod>/``."""
        return self.root / "pods" / (ns or "default") / pod

    def container_log(self, pod: str, container: str, ns: str = "default") -> Path:
        return self.pod_dir(pod, ns) / f"{container}.log"
