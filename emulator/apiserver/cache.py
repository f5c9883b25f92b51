"""The watch cache: every object of the lab as the API shows it, kept current by following the store's journal.

At start the cache takes the store's lock just long enough to note the current resourceVersion and the journal's
end, reads every object without holding it (the agents go on writing: the server starts while a big lab's pods
start), then applies the journal from the noted end: whatever changed while the files were read is replayed in
order, so the cache ends as the store is (a file read newer than a replayed line is overwritten by that line,
then by its own later line; an event read from its file and replayed again is kept once); from then on a thread
follows the journal
(inotify on the store directory wakes it within a millisecond of a write) and applies each change in order:
the API object is recomputed (``views``) and a watch event ``(rv, ADDED|MODIFIED|DELETED, resource, object)``
is appended to a bounded history. ``LIST`` is served from the cache, ``WATCH`` from the history (410 Gone when
the asked resourceVersion is older than what the history holds), and a write through the API waits until the
cache has applied its own resourceVersion, so a client reads its writes.

Pods follow the real deletion sequence: when a pod's manifest is deleted while its agent still reports it, the
pod stays visible with a ``deletionTimestamp`` (kubectl shows ``Terminating``) until the agent has torn the
sandbox down and removed the status; then it is DELETED. EndpointSlices are derived from Endpoints. Each cached
object keeps its serialized JSON once computed, so a LIST of thousands of pods is mostly a join of bytes.
"""
from __future__ import annotations

import json
import os
import threading
import time
from collections import deque
from typing import Callable, Iterator

from emulator.apiserver import views
from emulator.state import feed as feeds
from emulator.state.manifests import now
from emulator.state.store import CLUSTER_KINDS, Store
from emulator.state.watch import Watcher

HISTORY = 1024
Key = tuple[str, str]
PLAIN = {"namespaces": "Namespace", "services": "Service", "replicasets": "ReplicaSet", "daemonsets": "DaemonSet",
         "networkpolicies": "NetworkPolicy", "nodes": "Node", "endpoints": "Endpoints"}


POD_STATUS_KEYS = ("name", "namespace", "uid", "phase", "reason", "message", "nodeName", "hostIP", "podIP", "startTime",
                   "containerStatuses", "resourceVersion")


def _slim(st: dict) -> dict:
    """What of an agent's pod status the API shows (its CNI result, commands and PIDs stay in the store)."""
    out = {k: st[k] for k in POD_STATUS_KEYS if k in st}
    if "containerStatuses" in out:
        out["containerStatuses"] = [{k: c[k] for k in ("name", "image", "ready", "restartCount", "state", "lastState")
                                     if k in c} for c in out["containerStatuses"]]
    if st.get("sandbox"):
        out["sandbox"] = {"id": st["sandbox"].get("id", "")}
    return out


def _pack(obj: dict) -> bytes:
    """A pod's manifest or status as the cache keeps it between uses: compact JSON (~0.3-0.6 kB) instead of the
    parsed dict (~2.2 kB each: at 5,000 pods the two took ~22 MB of the server's memory)."""
    return json.dumps(obj, separators=(",", ":")).encode()


def _unpack(v: dict | bytes | None) -> dict | None:
    return json.loads(v) if isinstance(v, bytes) else v


class Entry:
    """One version of an object. The API object is computed on first use (``make``), so following the journal
    during a busy ``up`` costs a JSON parse per change, not a view and a serialization nobody asked for.

    A ``slim`` entry (pods: thousands of them) keeps only its JSON once that is computed: the view's dict
    (~3.9 kB a pod, against 2 kB of JSON) is dropped, and ``obj`` parses the JSON again for the readers that
    need a dict (tables, selectors, watches), each getting its own copy. Plain LISTs join the JSON directly."""
    __slots__ = ("_obj", "_make", "rv", "_json", "_meta", "_slim")

    def __init__(self, obj: dict | Callable[[], dict], rv: int, slim: bool = False) -> None:
        self._obj, self._make = (None, obj) if callable(obj) else (obj, None)
        self.rv, self._json, self._meta, self._slim = rv, None, None, slim

    @property
    def obj(self) -> dict:
        if self._obj is not None:
            return self._obj
        if self._json is not None:  # a slim entry: its dict was dropped once serialized
            return json.loads(self._json)
        obj = self._make() if self._make is not None else {}
        self._make = None
        if self._slim:  # serialized at once (the caller gets the dict, the entry keeps the bytes)
            self._meta, self._json = _meta_json(obj), json.dumps(obj, separators=(",", ":")).encode()
        else:
            self._obj = obj
        return obj

    @property
    def json(self) -> bytes:
        if self._json is None:
            obj = self.obj
            if self._json is None:
                self._json = json.dumps(obj, separators=(",", ":")).encode()
                if self._slim:
                    self._meta = self._meta or _meta_json(obj)
                    self._obj = None
        return self._json

    @property
    def meta_json(self) -> bytes:
        if self._meta is None:
            self._meta = _meta_json(self.obj)
        return self._meta


def _meta_json(obj: dict) -> bytes:
    return json.dumps({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                       "metadata": obj.get("metadata") or {}}, separators=(",", ":")).encode()


class Cache:
    def __init__(self, store: Store, node_ready: Callable[[str], str] = lambda n: "Ready",
                 node_capacity: Callable[[dict], int] = lambda n: 110) -> None:
        self.store = store
        self.node_ready, self.node_capacity = node_ready, node_capacity
        self.cond = threading.Condition()
        self.rv = self.oldest = 0
        self.history: deque[tuple[int, str, str, Entry]] = deque(maxlen=HISTORY)
        self.objects: dict[str, dict[Key, Entry]] = {r: {} for r in (
            "pods", "nodes", "namespaces", "services", "endpoints", "endpointslices", "deployments", "replicasets",
            "networkpolicies", "events", "daemonsets")}
        # what the store holds, by (kind, namespace, name); a pod's manifest and status as packed JSON (``_pack``)
        self.spec: dict[tuple[str, str, str], dict | bytes] = {}
        self.status: dict[tuple[str, str, str], dict | bytes] = {}
        self.event_files: dict[Key, list[str]] = {}  # (ns, "<kind>-<name>") → names of its events
        self.ghosts: dict[Key, str] = {}
        self._cold: deque[Entry] = deque()  # entries whose JSON is not computed yet (warmed when quiet)
        self._fd = -1
        self._ino = 0
        self._buf = b""
        self.stopping = False

    # -- start-up ---------------------------------------------------------------------------------------------
    def load(self) -> None:
        feed = self.store.feed
        with feed.locked():  # every line up to this resourceVersion is in the journal, none after its end
            self.rv = self.oldest = feed.current()
            path = self.store.root / feeds.JOURNAL
            self._fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
            self._ino = os.fstat(self._fd).st_ino
            os.lseek(self._fd, 0, os.SEEK_END)
        for kind in ("namespaces", "nodes", "pods", "services", "endpoints", "deployments", "replicasets",
                     "networkpolicies", "daemonsets"):
            for ns, name, obj in self.store.scan(kind):
                self.spec[(kind, ns, name)] = _pack(obj) if kind == "pods" else obj
        for kind in ("pods", "deployments"):
            for ns, name, st in self.store.scan(kind, status=True):
                self.status[(kind, ns, name)] = _pack(_slim(st)) if kind == "pods" else st
        lines = self._read_event_files()
        for (kind, ns, name) in list(self.spec):
            self._refresh(kind, ns, name, self.rv, emit=False)
        for (ns, key), items in lines.items():
            for line in items:
                self._add_event(ns, key, line, emit=False)
        self._drain()  # what changed while the files were read

    def _read_event_files(self) -> dict[Key, list[dict]]:
        out: dict[Key, list[dict]] = {}
        root = str(self.store.root / "events")
        for ns in sorted(os.listdir(root)) if os.path.isdir(root) else []:
            d = os.path.join(root, ns)
            for f in sorted(e.name for e in os.scandir(d) if e.name.endswith(".jsonl")):
                try:
                    with open(os.path.join(d, f)) as fh:
                        out[(ns, f[:-6])] = [json.loads(x) for x in fh if x.strip()]
                except (OSError, ValueError):
                    continue  # an event file removed or being replaced: the next read has it
        return out

    # -- following the journal --------------------------------------------------------------------------------
    def follow(self) -> None:
        """Run in a thread: apply the journal's new lines as they are written; when the store is quiet, compute
        the JSON of objects nobody has asked for yet, so the next LIST finds it ready."""
        watcher = Watcher([self.store.root], poll=0.01)
        try:
            while not self.stopping:
                self._drain()
                if not watcher.wait(0.1 if self._cold else 1.0) and self._cold:
                    self._warm(256)
        finally:
            watcher.close()

    def _warm(self, n: int) -> None:
        for _ in range(min(n, len(self._cold))):
            e = self._cold.popleft()
            e.json  # noqa: B018 - computed and kept (with its metadata's)

    def _drain(self) -> None:
        while True:
            chunk = os.read(self._fd, 1 << 20)
            if chunk:
                self._buf += chunk
                lines = self._buf.split(b"\n")
                self._buf = lines.pop()
                with self.cond:
                    for line in lines:
                        if line.strip():
                            self.apply(json.loads(line))
                    self.cond.notify_all()
                continue
            try:
                ino = os.stat(self.store.root / feeds.JOURNAL).st_ino
            except FileNotFoundError:
                return
            if ino == self._ino:
                return
            os.close(self._fd)  # rotated: the old file is read to its end, go on with the new one
            self._fd = os.open(self.store.root / feeds.JOURNAL, os.O_RDONLY | os.O_CLOEXEC)
            self._ino, self._buf = os.fstat(self._fd).st_ino, b""

    def apply(self, e: dict) -> None:
        """One journal entry (call with ``cond`` held)."""
        rv, kind, ns, name = e["rv"], e["kind"], e.get("ns", ""), e["name"]
        if rv <= self.rv:
            return
        self.rv = rv
        if kind == "events":
            if e["op"] == "put":
                self._add_event(ns, name, e["obj"])
            else:
                self._drop_events(ns, name, rv)
            return
        key = (kind, ns, name)
        if e.get("status"):
            if e["op"] == "put":
                self.status[key] = _pack(_slim(e["obj"])) if kind == "pods" else e["obj"]
            else:
                self.status.pop(key, None)
        elif e["op"] == "put":
            if kind == "pods" and (ns, name) in self.ghosts:  # a new pod of the same name: the old one is gone
                self._emit(rv, "DELETED", "pods", self.objects["pods"].pop((ns, name)))
                self.ghosts.pop((ns, name))
            self.spec[key] = _pack(e["obj"]) if kind == "pods" else e["obj"]
        else:
            self.spec.pop(key, None)
        self._refresh(kind, ns, name, rv)

    # -- recomputing API objects ------------------------------------------------------------------------------
    def _refresh(self, kind: str, ns: str, name: str, rv: int, emit: bool = True) -> None:
        k = (ns, name)
        spec = self.spec.get((kind, ns, name))
        if kind == "pods":
            packed = self.status.get((kind, ns, name))
            if spec is None:
                st = _unpack(packed)
                old = self.objects["pods"].get(k)
                if old is None:
                    return
                alive = st is not None and st.get("uid") == (old.obj["metadata"].get("uid"))
                if alive:  # Terminating until its agent is done
                    ts = self.ghosts.setdefault(k, now())
                    obj = views.pod({**old.obj, "metadata": {**old.obj["metadata"], "resourceVersion": str(rv)}},
                                    st, deleting=ts)
                    obj["metadata"]["resourceVersion"] = str(rv)
                    self._put("pods", k, obj, rv, emit)
                else:
                    self.ghosts.pop(k, None)
                    self._delete("pods", k, rv, emit)
                return
            # the bytes are parsed when the view is made (the cold entries are warmed when the store is quiet)
            self._put("pods", k, lambda: views.pod(_unpack(spec), _unpack(packed)), rv, emit)
        elif kind == "deployments":
            if spec is None:
                self._delete(kind, k, rv, emit)
            else:
                dst = self.status.get((kind, ns, name))
                self._put(kind, k, lambda: views.deployment(spec, dst), rv, emit)
        elif kind in PLAIN:
            if spec is None:
                self._delete(kind, k, rv, emit)
            else:
                api = "apps/v1" if kind in ("replicasets", "daemonsets") else "networking.k8s.io/v1" if kind == "networkpolicies" \
                    else "v1"
                self._put(kind, k, (lambda: views.replicaset(spec)) if kind == "replicasets"
                          else (lambda: views.with_kind(spec, api, PLAIN[kind])), rv, emit)
            if kind in ("endpoints", "services"):
                self._refresh_slices(ns, name, rv, emit)

    def _refresh_slices(self, ns: str, name: str, rv: int, emit: bool) -> None:
        ep = self.spec.get(("endpoints", ns, name))
        svc = self.spec.get(("services", ns, name))
        want = {s["metadata"]["name"]: s for s in (views.endpoint_slices(ep, svc) if ep else [])}
        have = [k for k in self.objects["endpointslices"] if k[0] == ns and k[1].rsplit("-", 1)[0] == name]
        for k in have:
            if k[1] not in want:
                self._delete("endpointslices", k, rv, emit)
        for sname, obj in want.items():
            obj["metadata"]["resourceVersion"] = str(rv)
            self._put("endpointslices", (ns, sname), obj, rv, emit)

    def _add_event(self, ns: str, file_key: str, line: dict, emit: bool = True) -> None:
        short, _, name = file_key.partition("-")
        res = {"pod": "pods", "node": "nodes", "deployment": "deployments", "service": "services"}.get(short, "")
        owner = _unpack(self.spec.get((res, "" if res == "nodes" else ns, name))) if res else None
        uid = (owner.get("metadata") or {}).get("uid", "") if owner else ""
        ename = views.event_name(file_key, int(line.get("rv", 0)))
        known = self.event_files.setdefault((ns, file_key), [])
        if ename in known:  # read from its file at start, and replayed from the journal
            return
        known.append(ename)
        raw = _pack(line)  # kept packed until the event is asked for (most never are)
        self._put("events", (ns, ename), lambda: views.event(json.loads(raw), ns, file_key, uid),
                  int(line.get("rv", self.rv)), emit)

    def _drop_events(self, ns: str, file_key: str, rv: int) -> None:
        for ename in self.event_files.pop((ns, file_key), []):
            self._delete("events", (ns, ename), rv, True)

    def _put(self, resource: str, k: Key, obj: dict | Callable[[], dict], rv: int, emit: bool) -> None:
        had = k in self.objects[resource]
        entry = Entry(obj, rv, slim=resource == "pods")
        self.objects[resource][k] = entry
        if resource in ("pods", "services", "endpoints", "endpointslices"):
            self._cold.append(entry)
        if emit:
            self._emit(rv, "MODIFIED" if had else "ADDED", resource, entry)

    def _delete(self, resource: str, k: Key, rv: int, emit: bool) -> None:
        entry = self.objects[resource].pop(k, None)
        if entry is not None and emit:
            def last() -> dict:
                o = entry.obj
                return {**o, "metadata": {**o.get("metadata", {}), "resourceVersion": str(rv)}}
            self._emit(rv, "DELETED", resource, Entry(last, rv))

    def _emit(self, rv: int, kind: str, resource: str, entry: Entry) -> None:
        if len(self.history) == self.history.maxlen:
            self.oldest = self.history[0][0]
        self.history.append((rv, kind, resource, entry))

    # -- reads ------------------------------------------------------------------------------------------------
    def entries(self, resource: str, ns: str | None = None) -> list[Entry]:
        """Current objects of ``resource`` (in namespace ``ns``), sorted by namespace and name."""
        with self.cond:
            items = self.objects[resource]
            keys = sorted(k for k in items if ns is None or k[0] == ns)
            out = [items[k] for k in keys]
        if resource == "nodes":
            out = [self._node(e) for e in out]
        return out

    def get(self, resource: str, ns: str, name: str) -> Entry | None:
        with self.cond:
            e = self.objects[resource].get(("" if resource in CLUSTER_KINDS else ns, name))
        return self._node(e) if e is not None and resource == "nodes" else e

    def _node(self, e: Entry) -> Entry:
        name = e.obj["metadata"]["name"]
        return Entry(views.node(e.obj, self.node_ready(name), self.node_capacity(e.obj)), e.rv)

    def wait_for(self, rv: int, timeout: float = 5.0) -> None:
        """Until the cache has applied ``rv`` (a write's own version): read-your-writes."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while self.rv < rv and time.monotonic() < deadline:
                self.cond.wait(0.05)

    def events_after(self, rv: int, timeout: float) -> tuple[list[tuple[int, str, str, Entry]], bool]:
        """History events newer than ``rv`` (waiting up to ``timeout`` for one); second item False when ``rv``
        is older than the history (the caller answers 410 Gone)."""
        with self.cond:
            if rv < self.oldest:
                return [], False
            if self.rv <= rv:
                self.cond.wait(timeout)
            return [h for h in self.history if h[0] > rv], True

    def watch_start(self) -> int:
        with self.cond:
            return self.rv

    def stop(self) -> None:
        self.stopping = True

    def __iter__(self) -> Iterator[str]:
        return iter(self.objects)

