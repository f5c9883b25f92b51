"""The lab's API store: the single source of desired state and status, as a directory of JSON files.

Why files: the store must survive any process crashing (CLI, agent), take concurrent writers and be readable by a
student with ``cat``. Each object is one JSON file written atomically (write a temporary file, then ``rename``),
so a reader sees the old or the new version, never half of one. Desired state and status never share a file:
``pods/<name>.json`` (the manifest, written by the API/CLI) and ``status/pods/<name>.json`` (written only by the
agent of the pod's node), so no two writers ever race on one file, much like spec and status are separate
subresources in Kubernetes. Watchers poll a directory's mtime, which every create, rename and unlink changes;
status writes land in another directory, so they never wake the watchers of desired state. ``list`` re-reads
only files whose mtime changed since the last call, so an agent polling 1000 manifests parses only what changed.

Pods are also indexed by node, as a kubelet's watch is filtered by ``spec.nodeName``: ``pods-by-node/<node>/
<name>.json`` is a hard link to the manifest (same inode, so it is the same bytes), made after the manifest is
written and removed before it is deleted. A node's agent watches only its own index directory, so creating a
pod wakes one agent, not all of them.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from emulator.errors import LabTimeoutError

KINDS = ("pods", "nodes", "services", "endpoints", "deployments", "events")
#: kind → (index directory, path to the index value in the object)
INDEXES = {"pods": ("pods-by-node", ("spec", "nodeName"))}


def write_atomic(path: Path | str, data: str | bytes, mode: int | None = None) -> None:
    """Write a file so that a reader sees the old or the new content, never half of one: a temporary file in
    the same directory (named after the writer's PID, so two writers never share one), then ``rename``. The one
    way podlab writes a file another process may be reading (store objects, CNI configs, resolv.conf, ...)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)
    if mode is not None:
        os.chmod(tmp, mode)
    os.replace(tmp, path)


def write_json(path: Path, obj: Any) -> None:
    write_atomic(path, json.dumps(obj, separators=(",", ":")))


def read_json(path: Path) -> Any | None:
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except ValueError:
        return None  # only possible for a file not written by write_json


def _unlink(p: Path) -> None:
    try:
        os.unlink(p)
    except FileNotFoundError:
        pass  # already gone: deleting is idempotent


class Store:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._cache: dict[Path, tuple[int, dict]] = {}

    def init(self) -> None:
        for k in KINDS:
            (self.root / k).mkdir(parents=True, exist_ok=True)
            (self.root / "status" / k).mkdir(parents=True, exist_ok=True)

    def _dir(self, kind: str, status: bool = False) -> Path:
        return self.root / "status" / kind if status else self.root / kind

    def _path(self, kind: str, name: str, status: bool = False) -> Path:
        return self._dir(kind, status) / f"{name}.json"

    def _index_of(self, kind: str, obj: dict | None) -> Path | None:
        if kind not in INDEXES or obj is None:
            return None
        d, keys = INDEXES[kind]
        v: object = obj
        for k in keys:
            v = v.get(k) if isinstance(v, dict) else None
        return self.root / d / str(v) if v else None

    def put(self, kind: str, name: str, obj: dict) -> None:
        old_index = self._index_of(kind, self.get(kind, name)) if kind in INDEXES else None
        path = self._path(kind, name)
        write_json(path, obj)
        index = self._index_of(kind, obj)
        if old_index and old_index != index:
            _unlink(old_index / f"{name}.json")
        if index:
            index.mkdir(parents=True, exist_ok=True)
            tmp = index / f".{name}.{os.getpid()}.lnk"
            _unlink(tmp)
            os.link(path, tmp)
            os.replace(tmp, index / f"{name}.json")

    def list_index(self, kind: str, value: str) -> Iterator[dict]:
        """Objects of ``kind`` whose index value is ``value`` (pods of one node)."""
        d = self.root / INDEXES[kind][0] / value
        try:
            entries = os.listdir(d)
        except FileNotFoundError:
            return
        for e in sorted(entries):
            if e.endswith(".json") and not e.startswith("."):
                obj = self._cached(d / e)
                if obj is not None:
                    yield obj

    def _cached(self, p: Path) -> dict | None:
        """The object in ``p``, parsed again only if its mtime changed since we last read it."""
        try:
            mtime = os.stat(p).st_mtime_ns
        except FileNotFoundError:
            return None
        hit = self._cache.get(p)
        if hit and hit[0] == mtime:
            return hit[1]
        obj = read_json(p)
        if obj is not None:
            self._cache[p] = (mtime, obj)
        return obj

    def index_dir(self, kind: str, value: str) -> Path:
        return self.root / INDEXES[kind][0] / value

    def put_status(self, kind: str, name: str, status: dict) -> None:
        write_json(self._path(kind, name, True), status)

    def get(self, kind: str, name: str) -> dict | None:
        return read_json(self._path(kind, name))

    def get_status(self, kind: str, name: str) -> dict | None:
        return read_json(self._path(kind, name, True))

    def delete(self, kind: str, name: str, status: bool = False) -> None:
        if not status and kind in INDEXES:
            index = self._index_of(kind, self.get(kind, name))
            if index:
                _unlink(index / f"{name}.json")
        _unlink(self._path(kind, name, status))

    def names(self, kind: str, status: bool = False) -> list[str]:
        try:
            entries = os.listdir(self._dir(kind, status))
        except FileNotFoundError:
            return []
        return sorted(e[:-5] for e in entries if e.endswith(".json") and not e.startswith("."))

    def list(self, kind: str, status: bool = False) -> Iterator[dict]:
        """Every object of ``kind`` (or every status), parsing only files changed since the last call."""
        for n in self.names(kind, status):
            obj = self._cached(self._path(kind, n, status))
            if obj is not None:
                yield obj

    def with_status(self, kind: str, name: str) -> dict | None:
        obj = self.get(kind, name)
        if obj is None:
            return None
        return {**obj, "status": self.get_status(kind, name) or {}}

    def version(self, kind: str, status: bool = False) -> int:
        """Changes whenever an object of ``kind`` is created, replaced or deleted (for cheap polling)."""
        try:
            return os.stat(self._dir(kind, status)).st_mtime_ns
        except FileNotFoundError:
            return 0


def wait_file(path: Path, ok: Callable[[dict], bool], timeout: float, what: str, obj: str) -> dict:
    """Wait until the JSON file at ``path`` exists and satisfies ``ok``; LabTimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        data = read_json(path)
        if data is not None and ok(data):
            return data
        if time.monotonic() > deadline:
            detail = f" (last status: {data.get('error') or data})" if isinstance(data, dict) else ""
            raise LabTimeoutError(f"{what} was not ready within {timeout:.0f}s{detail}", obj=obj)
        time.sleep(0.01)
