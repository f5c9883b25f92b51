"""The controller's mirror of a multi-host lab: every host's objects in one store, for the lab's API server.

A host's store holds only its own part (its nodes, the pods on them, their statuses and events); the API server
on the controller (``hosts.api_across``) serves the whole lab from a store of its own, ``<state root>/multihost/
<lab>.d/api/store``, which this mirror keeps equal to the union of the parts:

- **One thread per host, all hosts in parallel**, each with its own long-lived session (``transport``) asking
  ``mirror`` (``serve_mirror``) in a loop: one request per host per pass, a long poll that returns within ~50 ms
  of a change on the host and after 1 s otherwise. Nodes are taken from the host that holds them
  (``placement`` of the controller's record), pods and their statuses, namespaces and events from every host.
- **Writes only what changed.** Each object is compared with the version last written (without the stamps a
  store puts on a write); a new or changed one is written, one the host no longer has is deleted. The mirror
  store's journal then gives lab-wide resourceVersions and the API server's watch events exactly as on one
  machine (``apiserver.cache`` follows it): an idle lab changes no resourceVersion, ``kubectl get -w`` sees each
  change once. A pod's manifest is removed before its status, so the cache shows it Terminating until its host's
  agent has torn it down, as a real server does.
- **The controller's own objects**: the Services, Endpoints, NetworkPolicies, Deployments (with their statuses)
  and ReplicaSets of the lab live in the controller's store (``hosts.services``, ``hosts.netpols``,
  ``hosts.deploy_across``); a thread copies them the same way whenever that store's resourceVersion (checked five
  times a second) changed.
- **A Deployment's pod gone or failed** on its host (deleted there, its phase Failed) calls ``on_owned_pod``
  (the API server reconciles the Deployments then, which replaces it: ``api_across``); **a pod whose IP changed
  on its own** (its agent made its sandbox again, after a ``fail`` or a host's restart) or that stopped running
  calls ``on_pod_moved``: the API server then pushes the Endpoints and the policies' peers again, so they follow
  the pod without waiting for the controller's next change (a pod's first IP needs no push: the controller's own
  ``apply`` made it and pushes it).
- **Nodes** carry the label ``podlab.io/host`` (``kubectl get nodes -L podlab.io/host``) and their readiness in
  the annotation ``podlab.io/kubelet``, so a change of readiness is a watch event of the node.
- **A host that does not answer**: its nodes become ``Unknown`` (kubectl: NotReady) and its pods stay as last
  seen, as a real cluster keeps the pods of a node whose kubelet stopped reporting; the thread reconnects every
  2 s and the next answer brings the host up to date. Namespaces are the union of the hosts' (the first host by
  name that has one gives its object).

``fresh(after)`` lets a write through the API read its own write: it waits until every reachable host has
answered a pass that began after the write returned (meanwhile passes do not wait for a change: the pass in
flight returns as soon as the write changed its host's store, the next one at once).
"""
from __future__ import annotations

import copy
import threading
import time
from pathlib import Path
from typing import Any, Callable

from emulator.hosts.transport import HostSession
from emulator.services.deployments import owner
from emulator.state import events as event_log
from emulator.state import feed as feeds
from emulator.state.store import Store, dumps
from emulator.topology.hosts_section import Host

Key = tuple[str, str, str]  # (kind, namespace, name); kind "pods/status" for a pod's status (and deployments')
#: copied from the controller's store
OWN_KINDS = ("services", "endpoints", "networkpolicies", "deployments", "replicasets")
WAIT = 1.0
RETRY = 2.0
TIMEOUT = 15.0  # a pass answers within WAIT; a host that died without a word (no FIN) is found after this
HOST_LABEL = "podlab.io/host"
READY_ANNOTATION = "podlab.io/kubelet"


def stripped(obj: dict) -> dict:
    """``obj`` without what a store stamps on a write (its resourceVersion and generation)."""
    out = {k: v for k, v in obj.items() if k != "resourceVersion"}
    if isinstance(obj.get("metadata"), dict):
        out["metadata"] = {k: v for k, v in obj["metadata"].items() if k not in ("resourceVersion", "generation")}
    return out


def key_of(kind: str, obj: dict) -> Key:
    if kind.endswith("/status"):
        return kind, obj.get("namespace") or "default", obj.get("name", "")
    meta = obj.get("metadata") or {}
    return kind, ("" if kind in ("nodes", "namespaces") else meta.get("namespace") or "default"), meta.get("name", "")


def with_host(node: dict, host: str, ready: str) -> dict:
    """A node as the mirror stores it: labelled with its host (``kubectl get nodes -L podlab.io/host``) and
    annotated with its readiness, so that a change of it (a host away, an agent stopped) is a watch event."""
    meta = dict(node.get("metadata") or {})
    meta["labels"] = {**(meta.get("labels") or {}), HOST_LABEL: host}
    meta["annotations"] = {**(meta.get("annotations") or {}), READY_ANNOTATION: ready}
    return {**node, "metadata": meta}


def desired(part: dict, nodes: set[str], host: str = "") -> dict[Key, dict]:
    """The objects of one host's answer that it owns: its nodes, its pods and their statuses (pure)."""
    out: dict[Key, dict] = {}
    ready = part.get("ready") or {}
    for n in part.get("nodes", []):
        name = (n.get("metadata") or {}).get("name")
        if name in nodes:
            out[key_of("nodes", n)] = with_host(n, host, ready.get(name, "Unknown"))
    for p in part.get("pods", []):
        out[key_of("pods", p)] = p
    for st in part.get("statuses", []):
        if st.get("name"):
            out[key_of("pods/status", st)] = st
    return out


def changes(have: dict[Key, dict], want: dict[Key, dict]) -> tuple[list[Key], list[Key]]:
    """(keys to write, keys to delete) that make ``have`` (stripped objects) equal ``want`` (pure). Deletions of
    pods' manifests come before their statuses (the cache shows the pod Terminating in between)."""
    put = [k for k, o in want.items() if k not in have or have[k] != stripped(o)]
    gone = [k for k in have if k not in want]
    gone.sort(key=lambda k: (k[0].endswith("/status"), k))
    return put, gone


def owned_pod_changed(have: dict[Key, dict], want: dict[Key, dict]) -> bool:
    """Did a pod owned by a ReplicaSet go away, or turn Failed, between ``have`` and ``want`` (pure)?"""
    for k, o in have.items():
        if k[0] == "pods" and k not in want and owner(o):
            return True
    for k, st in want.items():
        pod = want.get(("pods", k[1], k[2]))
        if k[0] == "pods/status" and st.get("phase") == "Failed" and (have.get(k) or {}).get("phase") != "Failed" \
                and pod is not None and owner(pod):
            return True
    return False


def pod_moved(have: dict[Key, dict], want: dict[Key, dict], remaking: set[Key]) -> bool:
    """Did a pod that had an IP get another one (or lose it), or stop running, between ``have`` and ``want``
    (pure but for ``remaking``: the statuses dropped while their pod stayed, an agent making the sandbox again,
    whose next IP is a move too)? Its Endpoints and the policies' peer sets name the old address until pushed."""
    moved = False
    for k, old in have.items():
        if k[0] != "pods/status" or not old.get("podIP"):
            continue
        if k not in want:  # its status dropped while the pod stays: its agent is making the sandbox again
            if ("pods", k[1], k[2]) in want:
                remaking.add(k)
                moved = True
            continue  # the pod went with it (a delete, which the controller pushed itself)
        new = want[k]
        if new.get("podIP") != old["podIP"] or (old.get("phase") == "Running") != (new.get("phase") == "Running"):
            moved = True
    for k in list(remaking):
        if ("pods", k[1], k[2]) not in want:
            remaking.discard(k)  # deleted meanwhile
        elif (want.get(k) or {}).get("podIP"):
            remaking.discard(k)  # its new address
            moved = True
    return moved


class Mirror:
    def __init__(self, lab: str, store: Store, hosts: list[Host], placement: dict[str, str],
                 controller_store: Path | None = None, log: Callable[[str], None] = lambda s: None) -> None:
        self.lab, self.store, self.hosts, self.log = lab, store, hosts, log
        self.nodes_of = {h.name: {n for n, hh in placement.items() if hh == h.name} for h in hosts}
        self.controller_store = controller_store
        self.lock = threading.Lock()  # one writer of the mirror store at a time
        self.cond = threading.Condition()
        self.have: dict[str, dict[Key, dict]] = {h.name: {} for h in hosts}
        self.spaces: dict[str, dict[str, dict]] = {h.name: {} for h in hosts}
        self.own: dict[Key, dict] = {}  # copied from the controller's store (its Services and Endpoints)
        self.ns_have: dict[Key, dict] = {}
        self.events: dict[str, dict[str, list[dict]]] = {h.name: {} for h in hosts}
        self.ready: dict[str, str] = {n: "Unknown" for n in placement}
        self.answered: dict[str, float] = {}  # host → monotonic time its last answered pass began
        self.down: dict[str, str] = {}  # host → why it does not answer
        self.stopping = False
        self.go: threading.Event | None = None
        self.hurry = 0  # writes waiting in ``fresh``
        self._src: Store | None = None  # the controller's store, and its resourceVersion last copied
        self._src_rv: int | None = None
        self.on_owned_pod: Callable[[], None] | None = None  # a Deployment's pod gone or failed on a host
        self.on_pod_moved: Callable[[], None] | None = None  # a pod's IP changed on its own, or it stopped
        self.remaking: set[Key] = set()  # pods whose sandbox their agent is making again (``pod_moved``)

    # -- running --------------------------------------------------------------------------------------------
    def start(self, go: threading.Event | None = None) -> None:
        """One thread per host (each connects at once, and asks its host from ``go`` on), one for the
        controller's store."""
        self.go = go
        for h in self.hosts:
            threading.Thread(target=self._follow_host, args=(h,), daemon=True, name=f"mirror-{h.name}").start()
        threading.Thread(target=self._follow_controller, daemon=True, name="mirror-controller").start()

    def wait_first(self, timeout: float = 30.0) -> None:
        """Until every host answered once or was found unreachable."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while any(h.name not in self.answered and h.name not in self.down for h in self.hosts) and \
                    time.monotonic() < deadline:
                self.cond.wait(0.1)

    def fresh(self, after: float, timeout: float = 10.0) -> None:
        """Until every host that answers has answered a pass begun after ``after`` (monotonic time)."""
        deadline = time.monotonic() + timeout
        with self.cond:
            self.hurry += 1  # meanwhile the passes do not wait for a change: the next one answers at once
            try:
                while time.monotonic() < deadline and any(
                        self.answered.get(h.name, 0) <= after for h in self.hosts if h.name not in self.down):
                    self.cond.wait(0.05)
            finally:
                self.hurry -= 1
        self._copy_controller()

    def _follow_host(self, h: Host) -> None:
        session: HostSession | None = None
        since: Any = None
        seen: Any = None
        while not self.stopping:
            began = time.monotonic()
            try:
                if session is None:
                    session = HostSession(h)
                    session.open()
                if self.go is not None:
                    self.go.wait()
                    began = time.monotonic()
                r = session.request("mirror", lab=self.lab, since=since, ready=seen, wait=0 if self.hurry else WAIT,
                                    timeout=TIMEOUT)
            except Exception as e:  # unreachable, or an error there: its nodes Unknown, try again
                if session is not None:
                    session.close()
                session, since, seen = None, None, None
                self._lost(h, str(e))
                time.sleep(RETRY)
                continue
            with self.lock:
                owned, moved = self._apply_host(h, r)
            if owned and self.on_owned_pod is not None:
                self.on_owned_pod()
            if moved and self.on_pod_moved is not None:
                self.on_pod_moved()
            since, seen = r["rv"], r["ready"]
            with self.cond:
                if self.down.pop(h.name, None) is not None:
                    self.log(f"host {h.name} answers again")
                self.answered[h.name] = began
                self.cond.notify_all()

    def _lost(self, h: Host, why: str) -> None:
        with self.cond:
            if h.name not in self.down:
                self.log(f"host {h.name} does not answer ({why}); its nodes are Unknown, its pods as last seen")
            self.down[h.name] = why
            for n in self.nodes_of[h.name]:
                self.ready[n] = "Unknown"
            self.cond.notify_all()
        with self.lock:  # its nodes rewritten Unknown: a watch of the nodes sees them go NotReady
            have = self.have[h.name]
            self._sync(have, {k: with_host(v, h.name, "Unknown") if k[0] == "nodes" else v for k, v in have.items()})

    def _follow_controller(self) -> None:
        while not self.stopping:
            try:
                self._copy_controller()
            except (OSError, ValueError) as e:
                self.log(f"the controller's store: {e}")
            time.sleep(0.2)

    # -- applying -------------------------------------------------------------------------------------------
    def _apply_host(self, h: Host, r: dict) -> tuple[bool, bool]:
        """Take one host's answer in; (a Deployment's pod went away or failed there, a pod's IP changed on its own
        or it stopped running there)."""
        for n, state in r["ready"].items():
            if n in self.nodes_of[h.name]:
                self.ready[n] = state
        if r.get("same"):
            return False, False
        want = desired(r, self.nodes_of[h.name], h.name)
        owned = owned_pod_changed(self.have[h.name], want)
        moved = pod_moved(self.have[h.name], want, self.remaking)
        self._sync(self.have[h.name], want)
        self.spaces[h.name] = {(o.get("metadata") or {}).get("name", ""): o for o in r.get("namespaces", [])}
        self._sync_namespaces()
        self._sync_events(h.name, r.get("events") or {})
        return owned, moved

    def _copy_controller(self) -> None:
        if self.controller_store is None or not (self.controller_store / feeds.JOURNAL).exists():
            return
        if self._src is None:
            self._src = Store(self.controller_store)  # one for the process: its file cache spares re-parsing
        src = self._src
        rv = src.resource_version()
        if rv == self._src_rv:
            return
        want: dict[Key, dict] = {}
        for kind in OWN_KINDS:
            for o in src.list(kind):
                want[key_of(kind, o)] = o
        for ns, name in src.keys("deployments", status=True):
            st = src.get_status("deployments", name, ns)
            if st is not None:
                want[("deployments/status", ns, name)] = st
        with self.lock:
            self._sync(self.own, want)
        self._src_rv = rv

    def _sync_namespaces(self) -> None:
        want: dict[Key, dict] = {}
        for host in sorted(self.spaces, reverse=True):  # the first host by name wins
            for name, o in self.spaces[host].items():
                want[("namespaces", "", name)] = o
        self._sync(self.ns_have, want)

    def _sync(self, have: dict[Key, dict], want: dict[Key, dict]) -> None:
        put, gone = changes(have, want)
        for k in put:
            kind, ns, name = k
            obj = copy.deepcopy(want[k])
            if kind.endswith("/status"):
                self.store.put_status(kind.split("/")[0], name, stripped(obj), ns)
            else:
                self.store.put(kind, name, stripped(obj))
            have[k] = stripped(want[k])
        for k in gone:
            kind, ns, name = k
            if kind.endswith("/status"):
                self.store.delete(kind.split("/")[0], name, ns, status=True)
            else:
                self.store.delete(kind, name, ns or "default")
            have.pop(k, None)

    def _sync_events(self, host: str, now: dict[str, list[dict]]) -> None:
        """New event lines are written with their own time and text; a file its host removed is removed."""
        old = self.events[host]
        for fk, lines in now.items():
            ns, _, file_key = fk.partition("/")
            kind, _, name = file_key.partition("-")
            had = {dumps(x) for x in old.get(fk, [])}
            for line in lines:
                if dumps(line) not in had:
                    write_event(self.store.root, ns, kind, name, line)
        for fk in old:
            if fk not in now:
                ns, _, file_key = fk.partition("/")
                kind, _, name = file_key.partition("-")
                event_log.delete(self.store.root, kind, name, ns)
        self.events[host] = now


def write_event(root: Path, ns: str, kind: str, name: str, line: dict) -> None:
    """One event line, as its host wrote it (time, type, reason, source, message), with this store's next
    resourceVersion (``state.events.emit_many`` stamps the current time: a mirrored event keeps its own)."""
    import json
    import os
    feed = feeds.of(root)
    d = f"{root}/events/{ns}"
    with feed.locked():
        rv = feed.next()
        text = json.dumps({**{k: v for k, v in line.items() if k != "rv"}, "rv": rv})
        os.makedirs(d, exist_ok=True)
        fd = os.open(f"{d}/{kind}-{name}.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, (text + "\n").encode())
        finally:
            os.close(fd)
        feed.append([feeds.line(rv, "put", "events", ns, f"{kind}-{name}", text)])
