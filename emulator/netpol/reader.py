"""The lab's store read as the engine's inputs, once, then file by file as inotify names what changed.

Inputs: pods (``metadata.namespace``, labels, named container ports) joined with their status by file and
``uid`` (the agent's ``podIP``: a pod without one is in no set), Namespace objects' labels (a namespace without
an object still carries ``kubernetes.io/metadata.name``: the engine adds it) and NetworkPolicies (parsed once per
file version). An enforcer on a 1000-pod lab cannot afford to re-read every file on each of the thousands of
status writes a bring-up makes — ten enforcers doing so took more CPU than the agents — so ``refresh`` takes the
names ``state.watch.Watcher.wait_changes`` reports and re-reads only those files (``os.stat`` and, when the
inode or mtime moved, the JSON), and ``changed_pods`` tells the node builder which pods to look at again. A
``refresh(None)`` (the first read, an inotify queue overflow, every full sync) scans everything. Directory layout:
``<kind>/<name>.json``, or one subdirectory per Kubernetes namespace (``<kind>/<ns>/<name>.json``); files
starting with a dot are writes in progress.

On a host of a multi-host lab the store holds only that host's pods; the controller pushes the other hosts' pods
into ``remotepods/<ns>/<name>.json`` (``emulator.hosts.netpols``: each a pod trimmed to its metadata, node, named
container ports and ``status.podIP``), and they are read here as pods like the others, so a node's peer sets hold
pods of every host while only its own pods are ever selected (their ``nodeName`` is another host's node). A local
pod wins over a remote one of the same name (a pod moved between hosts, until the next push). On one machine that
directory stays empty.

``versions`` is the store's change counter of every input (the directories' mtimes), read *before* the files,
so a status that reports it never claims a change it has not read.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from emulator.netpol import parse
from emulator.netpol.engine import Cluster, PodInfo
from emulator.netpol.model import Labels, NetworkPolicy
from emulator.state.store import Store

POLICIES, NAMESPACES, REMOTE = "networkpolicies", "namespaces", "remotepods"
WATCHED = (("pods", False), ("pods", True), (POLICIES, False), (NAMESPACES, False), (REMOTE, False))
_REMOTE = "remote:"  # the prefix of a remote pod's key among the pods read


def container_ports(pod: dict) -> tuple[tuple[str, int, str], ...]:
    return tuple((p["name"], int(p["containerPort"]), p.get("protocol", "TCP"))
                 for c in pod.get("spec", {}).get("containers", []) for p in c.get("ports", []) if p.get("name"))


class DirCache:
    """The JSON objects of one kind's directory (and its namespace subdirectories), keyed by relative name."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.objs: dict[str, dict] = {}
        self._stamp: dict[str, tuple[int, int]] = {}
        try:  # the namespace directories there already, so that a watcher made before the first read covers them
            self.subdirs: set[Path] = {Path(e.path) for e in os.scandir(root)
                                       if not e.name.startswith(".") and e.is_dir(follow_symlinks=False)}
        except FileNotFoundError:
            self.subdirs = set()

    def _load(self, key: str, path: str) -> bool:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            st = None
        if st is None:
            gone = key in self.objs
            self.objs.pop(key, None)
            self._stamp.pop(key, None)
            return gone
        stamp = (st.st_ino, st.st_mtime_ns)
        if self._stamp.get(key) == stamp:
            return False
        try:
            with open(path) as f:
                obj = json.load(f)
        except (FileNotFoundError, ValueError):
            return False
        self.objs[key], self._stamp[key] = obj, stamp
        return True

    def scan(self) -> set[str]:
        """Read the whole directory; the keys that changed."""
        seen: set[str] = set()
        changed: set[str] = set()

        def walk(d: str, prefix: str) -> None:
            try:
                entries = list(os.scandir(d))
            except FileNotFoundError:
                return
            for e in entries:
                if e.name.startswith("."):
                    continue
                if e.is_dir(follow_symlinks=False) and not prefix:
                    self.subdirs.add(Path(e.path))
                    walk(e.path, e.name + "/")
                elif e.name.endswith(".json"):
                    key = prefix + e.name[:-5]
                    seen.add(key)
                    if self._load(key, e.path):
                        changed.add(key)
        walk(str(self.root), "")
        for key in [k for k in self.objs if k not in seen]:
            self._load(key, str(self.root / f"{key}.json"))
            changed.add(key)
        return changed

    def touch(self, d: Path, names: set[str]) -> set[str]:
        """Re-read the files ``names`` of directory ``d`` (this root or a subdirectory); the keys that changed."""
        prefix = "" if d == self.root else f"{d.name}/"
        changed = set()
        for n in names:
            if n.startswith("."):
                continue
            if n.endswith(".json"):
                key = prefix + n[:-5]
                if self._load(key, str(d / n)):
                    changed.add(key)
            elif not prefix and (d / n).is_dir():  # a new namespace directory
                self.subdirs.add(d / n)
                for e in os.listdir(d / n):
                    if e.endswith(".json") and not e.startswith(".") and self._load(f"{n}/{e[:-5]}", str(d / n / e)):
                        changed.add(f"{n}/{e[:-5]}")
        return changed


class ClusterReader:
    def __init__(self, store: Store) -> None:
        self.store = store
        root = store.root
        self.dirs = {"pods": DirCache(root / "pods"), "status": DirCache(root / "status" / "pods"),
                     "policies": DirCache(root / POLICIES), "namespaces": DirCache(root / NAMESPACES),
                     "remote": DirCache(root / REMOTE)}
        self._pods: dict[str, PodInfo] = {}  # file key → PodInfo
        self._policies: dict[str, NetworkPolicy] = {}
        self._namespaces: dict[str, Labels] = {}
        self.changed_pods: set[str] | None = None  # pod refs changed by the last refresh (None: all)
        self._read = False

    def versions(self) -> tuple[int, ...]:
        return tuple(self.store.version(k, s) for k, s in WATCHED)

    def watch_dirs(self) -> list[Path]:
        out = []
        for c in self.dirs.values():
            out += [c.root, *sorted(c.subdirs)]
        return out

    def refresh(self, changes: dict[Path, set[str]] | None = None) -> bool:
        """Bring the inputs up to date (everything when ``changes`` is None); True if any input changed."""
        touched: dict[str, set[str]] = {}
        if changes is None or not self._read:
            touched = {k: c.scan() for k, c in self.dirs.items()}
            self._read = True
            full = True
        else:
            full = False
            for k, c in self.dirs.items():
                keys: set[str] = set()
                for d, names in changes.items():
                    if d == c.root or d in c.subdirs:
                        keys |= c.touch(d, names)
                touched[k] = keys
        pod_keys = touched["pods"] | touched["status"] | {_REMOTE + k for k in touched["remote"]}
        changed_refs: set[str] = set()
        for key in pod_keys:
            old = self._pods.pop(key, None)
            if old is not None:
                changed_refs.add(old.ref)
            info = self._pod_info(key)
            if info is not None:
                self._pods[key] = info
                changed_refs.add(info.ref)
        if touched["policies"]:
            for key in touched["policies"]:
                m = self.dirs["policies"].objs.get(key)
                self._policies.pop(key, None)
                if m is not None:
                    self._policies[key] = parse.from_store(m)
        if touched["namespaces"]:
            self._namespaces = {o["metadata"]["name"]: tuple(sorted((o["metadata"].get("labels") or {}).items()))
                                for o in self.dirs["namespaces"].objs.values() if o.get("metadata", {}).get("name")}
        self.changed_pods = None if full else changed_refs
        return any(touched.values())

    def _pod_info(self, key: str) -> PodInfo | None:
        if key.startswith(_REMOTE):
            m = self.dirs["remote"].objs.get(key[len(_REMOTE):])
            return None if m is None else _info(m, (m.get("status") or {}).get("podIP"))
        m = self.dirs["pods"].objs.get(key)
        if m is None or m.get("spec", {}).get("hostNetwork"):
            return None  # a hostNetwork pod is its node, not a pod of the pod network: no policy applies to it
        meta = m.get("metadata", {})
        st = self.dirs["status"].objs.get(key)
        if st is not None and st.get("uid") != meta.get("uid"):
            st = None  # the status of an earlier pod of that name
        return _info(m, (st or {}).get("podIP"), key)

    def _ensure(self) -> None:
        if not self._read:
            self.refresh(None)

    def pods(self) -> dict[str, PodInfo]:
        self._ensure()
        out = {p.ref: p for k, p in self._pods.items() if k.startswith(_REMOTE)}
        out.update({p.ref: p for k, p in self._pods.items() if not k.startswith(_REMOTE)})  # a local one wins
        return out

    def namespaces(self) -> dict[str, Labels]:
        self._ensure()
        return dict(self._namespaces)

    def policies(self) -> dict[tuple[str, str], NetworkPolicy]:
        self._ensure()
        return {p.key: p for p in self._policies.values()}

    def cluster(self) -> Cluster:
        return Cluster(list(self.pods().values()), self.namespaces(), list(self.policies().values()))


def _info(m: dict, ip: str | None, key: str = "") -> PodInfo | None:
    if m.get("spec", {}).get("hostNetwork"):
        return None
    meta = m.get("metadata", {})
    return PodInfo(namespace=meta.get("namespace") or "default", name=meta.get("name", key),
                   labels=tuple(sorted((meta.get("labels") or {}).items())), ip=ip or None,
                   node=m.get("spec", {}).get("nodeName", ""), ports=container_ports(m))
