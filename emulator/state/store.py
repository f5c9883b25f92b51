"""The lab's API store: the single source of desired state and status, as a directory of JSON files.

Why files: the store must survive any process crashing (CLI, agent), take concurrent writers and be readable by a
student with ``cat``. Each object is one JSON file written atomically (write a temporary file, then ``rename``),
so a reader sees the old or the new version, never half of one. Desired state and status never share a file:
``pods/<namespace>/<name>.json`` (the manifest, written by the API/CLI) and ``status/pods/<namespace>/<name>.json``
(written only by the agent of the pod's node), so no two writers ever race on one file, much like spec and status
are separate subresources in Kubernetes.

Layout: objects of a namespaced kind (pods, services, endpoints, deployments, replicasets, networkpolicies) live
one directory per Kubernetes namespace, ``<kind>/<namespace>/<name>.json``, exactly as ``kubectl get -n`` scopes
them (``cat store/pods/x/a.json``); cluster-scoped kinds (nodes, namespaces) are ``<kind>/<name>.json``. Callers
name the namespace with ``ns=`` (it defaults to ``default``, as kubectl without ``-n``); ``put`` takes it from the
object's ``metadata.namespace`` (and writes ``default`` there when it is missing). ``keys``/``list`` without
``ns`` cover every namespace, which is what the controllers, kube-proxy and DNS want.

Every write goes through the lab's change feed (``feed``): under one lock it gets the next lab-wide
``resourceVersion`` (stamped as ``metadata.resourceVersion``, or ``resourceVersion`` in a status) and a line in the
journal the API server follows for watches. ``put`` also fills what an API server fills: a ``uid`` and a
``creationTimestamp`` for a new object (kept from the stored one on an update, unless the writer gives its own),
and ``metadata.generation`` (1, then one more whenever ``spec`` changes). ``expect_rv`` makes a write
conditional (``ConflictError`` when the object changed since it was read; a pod's version is the newer of its
manifest's and its status's, and a deployment's likewise), ``create`` makes it fail on an existing object (``AlreadyExistsError``).

Watchers poll ``version(kind)``: the newest mtime of the kind's directories (the kind's and each namespace's),
which every create, rename and unlink in them changes; status writes land in another tree, so they never wake
the watchers of desired state. ``list`` re-reads only files whose mtime changed since the last call, so an agent
polling 1000 manifests parses only what changed.

Pods are also indexed by node, as a kubelet's watch is filtered by ``spec.nodeName``: ``pods-by-node/<node>/
<namespace>.<name>.json`` is a hard link to the manifest (same inode, so it is the same bytes), made after the
manifest is written and removed before it is deleted. A node's agent watches only its own index directory, so
creating a pod wakes one agent, not all of them (the namespace prefix keeps ``x/a`` and ``y/a`` apart; names
are DNS labels, so the first dot ends the namespace).
"""
from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

from emulator.errors import AlreadyExistsError, ConflictError, LabTimeoutError
from emulator.state import feed as feeds

DEFAULT_NS = "default"
CLUSTER_KINDS = ("nodes", "namespaces")
#: ``remotepods``: on a host of a multi-host lab, the other hosts' pods as NetworkPolicy peers (``netpol.reader``)
NAMESPACED_KINDS = ("pods", "services", "endpoints", "deployments", "replicasets", "networkpolicies", "daemonsets",
                    "remotepods")
KINDS = CLUSTER_KINDS + NAMESPACED_KINDS
#: kinds whose status is a file of its own (written by an agent or controller)
STATUS_KINDS = ("pods", "deployments")
#: kind → (index directory, path to the index value in the object)
INDEXES = {"pods": ("pods-by-node", ("spec", "nodeName"))}
Key = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped kinds


def write_atomic(path: Path | str, data: str | bytes, mode: int | None = None) -> None:
    """Write a file so that a reader sees the old or the new content, never half of one: a temporary file in
    the same directory (named after the writer's PID, so two writers never share one), then ``rename``. The one
    way podlab writes a file another process may be reading (store objects, CNI configs, resolv.conf, ...)."""
    head, tail = os.path.split(os.fspath(path))
    tmp = os.path.join(head, f".{tail}.{os.getpid()}.tmp")
    with open(tmp, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)
    if mode is not None:
        os.chmod(tmp, mode)
    os.replace(tmp, path)


def _write_new(path: str, data: str) -> None:
    """``write_atomic``, making the directory first if it does not exist yet (a new namespace)."""
    try:
        write_atomic(path, data)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_atomic(path, data)


def dumps(obj: Any) -> str:
    """The store's JSON of ``obj`` (compact; the journal embeds the very same text)."""
    return json.dumps(obj, separators=(",", ":"))


def write_json(path: Path | str, obj: Any) -> None:
    write_atomic(path, dumps(obj))


def read_json(path: Path | str) -> Any | None:
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except ValueError:
        return None  # only possible for a file not written by write_json


def _unlink(p: Path | str) -> None:
    try:
        os.unlink(p)
    except FileNotFoundError:
        pass  # already gone: deleting is idempotent


def _entries(d: Path) -> list[str]:
    try:
        return sorted(e[:-5] for e in os.listdir(d) if e.endswith(".json") and not e.startswith("."))
    except (FileNotFoundError, NotADirectoryError):
        return []


def rv_of(obj: dict | None, status: bool = False) -> int:
    """The resourceVersion stamped on a stored object (or status), 0 if none."""
    if not obj:
        return 0
    v = obj.get("resourceVersion") if status else (obj.get("metadata") or {}).get("resourceVersion")
    try:
        return int(v or 0)
    except (TypeError, ValueError):
        return 0


def namespaced(kind: str) -> bool:
    return kind not in CLUSTER_KINDS


def namespace_of(obj: dict | None) -> str:
    return ((obj or {}).get("metadata") or {}).get("namespace") or DEFAULT_NS


class Store:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._sroot = str(self.root)  # the write paths are strings: pathlib cost more than the writes on tmpfs
        self._cache: dict[str, tuple[tuple[int, int], dict]] = {}

    @property
    def feed(self) -> feeds.Feed:
        return feeds.of(self.root)

    def locked(self):
        """The lab-wide write lock (re-entrant): a check of the store and the write it decides, taken together,
        are atomic for every other writer, since every write takes this lock. The controllers delete an
        object only if its owner is still absent *under this lock* (``delete`` of an Endpoints whose Service is
        gone): a check outside it leaves a window in which the owner and a new object of its can be written,
        and the new object would then be deleted."""
        return self.feed.locked()

    def resource_version(self) -> int:
        """The lab's current resourceVersion (the last one handed out)."""
        return self.feed.current()

    def current_rv(self, kind: str, name: str, ns: str = DEFAULT_NS, obj: dict | None = None) -> int:
        """The object's resourceVersion as the API shows it (a pod's or deployment's: the newer of manifest and
        status)."""
        rv = rv_of(obj if obj is not None else self.get(kind, name, ns))
        if kind in STATUS_KINDS and rv:
            rv = max(rv, rv_of(self.get_status(kind, name, ns), status=True))
        return rv

    def init(self) -> None:
        """Make a new store's directories (a store of that path made earlier by this process is forgotten)."""
        feeds.forget(self.root)
        for k in KINDS:
            (self.root / k).mkdir(parents=True, exist_ok=True)
        for k in STATUS_KINDS:
            (self.root / "status" / k).mkdir(parents=True, exist_ok=True)

    # -- paths
    def _kind_dir(self, kind: str, status: bool = False) -> Path:
        return self.root / "status" / kind if status else self.root / kind

    def _dir(self, kind: str, ns: str = DEFAULT_NS, status: bool = False) -> Path:
        d = self._kind_dir(kind, status)
        return d / (ns or DEFAULT_NS) if namespaced(kind) else d

    def _path(self, kind: str, name: str, ns: str = DEFAULT_NS, status: bool = False) -> Path:
        return self._dir(kind, ns, status) / f"{name}.json"

    def _index_of(self, kind: str, obj: dict | None) -> str | None:
        if kind not in INDEXES or obj is None:
            return None
        d, keys = INDEXES[kind]
        v: object = obj
        for k in keys:
            v = v.get(k) if isinstance(v, dict) else None
        return f"{self._sroot}/{d}/{v}" if v else None

    def _spath(self, kind: str, name: str, ns: str = DEFAULT_NS, status: bool = False) -> str:
        """``_path`` as a string."""
        d = f"{self._sroot}/status/{kind}" if status else f"{self._sroot}/{kind}"
        return f"{d}/{ns or DEFAULT_NS}/{name}.json" if namespaced(kind) else f"{d}/{name}.json"

    @staticmethod
    def index_entry(ns: str, name: str) -> str:
        """The file name of an object in an index directory: ``<namespace>.<name>.json``."""
        return f"{ns or DEFAULT_NS}.{name}.json"

    # -- writes
    def put(self, kind: str, name: str, obj: dict, expect_rv: int | str | None = None,
            create: bool = False) -> dict:
        """Store ``obj`` as ``name`` and return it (stamped); a namespaced object goes to its
        ``metadata.namespace`` (``default`` if unset, which is then written into it)."""
        feed = self.feed
        with feed.locked():
            feed.append([self._put(feed, kind, name, obj, expect_rv, create)])
        return obj

    def put_many(self, kind: str, objs: list[tuple[str, dict]]) -> None:
        """``put`` of every (name, object), under one hold of the lock and with one journal write (the objects
        of a new lab: ``up`` stores a thousand pods before the agents start)."""
        feed = self.feed
        with feed.locked():
            lines: list[str] = []
            try:
                for name, obj in objs:
                    lines.append(self._put(feed, kind, name, obj))
            finally:  # what was written is journaled, even if a later write failed
                feed.append(lines)

    def _put(self, feed: feeds.Feed, kind: str, name: str, obj: dict, expect_rv: int | str | None = None,
             create: bool = False) -> str:
        """Write ``obj`` (under the lock); its journal line."""
        meta = obj.setdefault("metadata", {})
        ns = ""
        if namespaced(kind):
            ns = meta.get("namespace") or DEFAULT_NS
            meta["namespace"] = ns
        path = self._spath(kind, name, ns)
        old = read_json(path)
        if create and old is not None:
            raise AlreadyExistsError(f'{kind} "{name}" already exists', obj=name)
        if expect_rv is not None and str(self.current_rv(kind, name, ns, old) if old else "") != str(expect_rv):
            raise ConflictError(f'Operation cannot be fulfilled on {kind} "{name}": the object has been '
                                "modified; please apply your changes to the latest version and try again",
                                obj=name)
        old_meta = (old or {}).get("metadata") or {}
        meta.setdefault("uid", old_meta.get("uid") or str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", old_meta.get("creationTimestamp")
                        or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        if "spec" in obj:
            gen = int(old_meta.get("generation") or 0)
            meta["generation"] = gen + 1 if old is None or not gen or old.get("spec") != obj["spec"] else gen
        rv = feed.next()
        meta["resourceVersion"] = str(rv)
        data = dumps(obj)
        _write_new(path, data)
        old_index = self._index_of(kind, old)
        index = self._index_of(kind, obj)
        entry = self.index_entry(ns, name)
        if old_index and old_index != index:
            _unlink(f"{old_index}/{entry}")
        if index:
            if not os.path.isdir(index):
                os.makedirs(index, exist_ok=True)
            tmp = f"{index}/.{entry}.{os.getpid()}.lnk"
            _unlink(tmp)
            os.link(path, tmp)
            os.replace(tmp, f"{index}/{entry}")
        return feeds.line(rv, "put", kind, ns, name, data)

    def put_status(self, kind: str, name: str, status: dict, ns: str = DEFAULT_NS) -> None:
        path = self._spath(kind, name, ns, True)
        feed = self.feed
        with feed.locked():
            rv = feed.next()
            data = dumps({**status, "resourceVersion": str(rv)})
            _write_new(path, data)
            feed.append([feeds.line(rv, "put", kind, ns if namespaced(kind) else "", name, data, status=True)])

    def delete(self, kind: str, name: str, ns: str = DEFAULT_NS, status: bool = False,
               expect_rv: int | str | None = None) -> bool:
        """Remove an object (or its status); False if there was nothing to remove."""
        path = self._spath(kind, name, ns, status)
        feed = self.feed
        with feed.locked():
            if not status and (kind in INDEXES or expect_rv is not None):
                old = read_json(path)
                if expect_rv is not None and old is not None and str(self.current_rv(kind, name, ns, old)) != \
                        str(expect_rv):
                    raise ConflictError(f'Operation cannot be fulfilled on {kind} "{name}": the object has been '
                                        "modified; please apply your changes to the latest version and try again",
                                        obj=name)
                index = self._index_of(kind, old)
                if index:
                    _unlink(f"{index}/{self.index_entry(ns, name)}")
            try:
                os.unlink(path)
            except FileNotFoundError:
                return False
            feed.record(feed.next(), "delete", kind, ns if namespaced(kind) else "", name, status=status)
        return True

    def drop_namespace(self, ns: str) -> None:
        """Remove the (empty) directories of namespace ``ns`` once its objects are deleted."""
        for kind in NAMESPACED_KINDS:
            for status in (False, True):
                d = self._dir(kind, ns, status)
                if d.is_dir() and not _entries(d):
                    shutil.rmtree(d, ignore_errors=True)

    # -- reads
    def get(self, kind: str, name: str, ns: str = DEFAULT_NS) -> dict | None:
        return read_json(self._spath(kind, name, ns))

    def get_status(self, kind: str, name: str, ns: str = DEFAULT_NS) -> dict | None:
        return read_json(self._spath(kind, name, ns, True))

    def cached_status(self, kind: str, name: str, ns: str = DEFAULT_NS) -> dict | None:
        """The status of one object through the cache ``list`` keeps (parsed again only if its file changed): for a
        controller that asks for a few statuses every pass without keeping every status of the lab."""
        return self._cached(self._spath(kind, name, ns, True))

    def with_status(self, kind: str, name: str, ns: str = DEFAULT_NS) -> dict | None:
        obj = self.get(kind, name, ns)
        if obj is None:
            return None
        return {**obj, "status": self.get_status(kind, name, ns) or {}}

    def namespaces_of(self, kind: str, status: bool = False) -> list[str]:
        """The Kubernetes namespaces that have a directory for ``kind`` (empty ones included)."""
        try:
            return sorted(e for e in os.listdir(self._kind_dir(kind, status)) if not e.startswith("."))
        except FileNotFoundError:
            return []

    def names(self, kind: str, status: bool = False, ns: str = DEFAULT_NS) -> list[str]:
        """Names of ``kind`` in namespace ``ns`` (cluster-scoped kinds: all of them)."""
        return _entries(self._dir(kind, ns, status))

    def keys(self, kind: str, status: bool = False, ns: str | None = None) -> list[Key]:
        """(namespace, name) of every object of ``kind``, in namespace ``ns`` or (None) in all of them."""
        if not namespaced(kind):
            return [("", n) for n in _entries(self._kind_dir(kind, status))]
        spaces = [ns] if ns is not None else self.namespaces_of(kind, status)
        return [(s, n) for s in spaces for n in _entries(self._dir(kind, s, status))]

    def list(self, kind: str, status: bool = False, ns: str | None = None) -> Iterator[dict]:
        """Every object of ``kind`` (or every status), in ``ns`` or (None) every namespace, parsing only files
        changed since the last call."""
        for s, n in self.keys(kind, status, ns):
            obj = self._cached(self._spath(kind, n, s, status))
            if obj is not None:
                yield obj

    def scan(self, kind: str, status: bool = False) -> Iterator[tuple[str, str, dict]]:
        """(namespace, name, object) of every object of ``kind`` (or status), read once, uncached: a whole
        kind read in one pass (``os.scandir`` and string paths; the API server's start reads 1000s of files)."""
        root = str(self._kind_dir(kind, status))
        spaces = [(s, os.path.join(root, s)) for s in self.namespaces_of(kind, status)] if namespaced(kind) \
            else [("", root)]
        for ns, d in spaces:
            try:
                entries = sorted(e.name for e in os.scandir(d) if e.name.endswith(".json") and e.name[0] != ".")
            except (FileNotFoundError, NotADirectoryError):
                continue  # the namespace directory went meanwhile: nothing of it to read
            for e in entries:
                obj = read_json(os.path.join(d, e))
                if obj is not None:
                    yield ns, e[:-5], obj

    def list_index(self, kind: str, value: str) -> Iterator[dict]:
        """Objects of ``kind`` whose index value is ``value`` (pods of one node)."""
        d = self.root / INDEXES[kind][0] / value
        try:
            entries = os.listdir(d)
        except FileNotFoundError:
            return
        for e in sorted(entries):
            if e.endswith(".json") and not e.startswith("."):
                obj = self._cached(f"{d}/{e}")
                if obj is not None:
                    yield obj

    def _cached(self, p: str) -> dict | None:
        """The object in ``p``, parsed again only if the file changed since we last read it: another mtime or
        another inode (every write is a rename of a new file, so two writes within one tick of the file system's
        clock still differ). String paths: a controller lists 1000s of them per pass, and pathlib cost more than
        the ``stat``."""
        try:
            st = os.stat(p)
        except FileNotFoundError:
            return None
        stamp = (st.st_mtime_ns, st.st_ino)
        hit = self._cache.get(p)
        if hit and hit[0] == stamp:
            return hit[1]
        obj = read_json(p)
        if obj is not None:
            self._cache[p] = (stamp, obj)
        return obj

    def index_dir(self, kind: str, value: str) -> Path:
        return self.root / INDEXES[kind][0] / value

    def version(self, kind: str, status: bool = False) -> int:
        """Changes whenever an object of ``kind`` is created, replaced or deleted (for cheap polling): the newest
        mtime of the kind's directory and of its namespaces' directories."""
        d = self._kind_dir(kind, status)
        try:
            v = os.stat(d).st_mtime_ns
        except FileNotFoundError:
            return 0
        if namespaced(kind):
            try:
                with os.scandir(d) as it:
                    for e in it:
                        if e.is_dir(follow_symlinks=False):
                            v = max(v, e.stat(follow_symlinks=False).st_mtime_ns)
            except FileNotFoundError:
                pass  # the directory was removed while we looked: its objects are gone, the kind's mtime says so
        return v


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
