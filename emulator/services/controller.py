"""The controller-manager of a lab: a real process running the endpoints and deployment controllers.

Loop (woken by inotify on the store directories it follows, ``state.watch.KindsWatcher``, and a full pass every
second): when pods, pod statuses, services, deployments or nodes changed
in the store (but never sooner after a pass than three times that pass took: while 1000 pods start, their status
writes would otherwise keep it busy from one pass to the next, on a CPU the agents need), (1) plan every Deployment (``deployments.plan``, pure) and create/delete its pods in the store
(the node agents then start/stop them; a new pod's resolv.conf is written before its manifest, so its
containers start with it), placing them as the scheduler would, on Ready nodes only (``state.nodes``: a node
without CNI configuration is NotReady); with no such node a pod stays unbound and Pending with the scheduler's
FailedScheduling message and event, and is bound on the first pass that finds one (e.g. after ``podlab cni
install``: the full pass every second notices it), (2) keep every pod's resolv.conf (``resolv``), (3) recompute every selector
Service's Endpoints (``endpoints.compute``, pure) and write only those that changed, deleting the Endpoints of
Services that are gone (not on a host of a multi-host lab, ``whole=False``: there the controller computes
every Endpoints from the pods of all hosts and pushes them, ``emulator.hosts.services``), (4) write each
Deployment's status, (5) collect garbage (not on a host of a multi-host lab either: the Deployments and
ReplicaSets owning pods there are in the controller's store, ``emulator.hosts.deploy_across``). A status file (``controller.json`` in the lab
directory) records the store versions each pass covered, so ``up`` can wait until endpoints reflect the running
pods. On SIGTERM (``down``) it exits; ``down`` removes the resolv.conf files after deleting the lab's namespaces
(``ServicesComponent.teardown``, from the ledger), off the path that waits for the daemons.
"""
from __future__ import annotations

import random
import signal
import time
import traceback
from typing import Callable

from emulator.state.paths import LabPaths
from emulator.services import deployments, endpoints
from emulator.proc.daemon import log
from emulator.state import events, manifests
from emulator.state import nodes as node_state
from emulator.state.resolv import ResolvFiles
from emulator.state.store import Store, write_json
from emulator.state.watch import KindsWatcher
from emulator.topology import hostports

POLL = 0.01
RESYNC = 1.0
#: the pause after a pass, in multiples of its duration (bounds the controller to ~1/4 of a core when busy)
BACKOFF = 3.0
#: how often the pass re-reads every pod's resolv.conf instead of trusting what it wrote (a file removed by hand)
VERIFY = 30.0
WATCHED = (("pods", False), ("pods", True), ("services", False), ("deployments", False), ("nodes", False),
           ("endpoints", False))


def sync_replicasets(store: Store, dep: dict, wanted: list[dict]) -> None:
    """Write the Deployment's ReplicaSets that changed; delete its old ones that are no longer wanted (also the
    deployment controller of a multi-host lab's controller, over its own store: ``hosts.deploy_across``)."""
    ns, uid = dep["metadata"].get("namespace") or "default", dep["metadata"].get("uid")
    names = {rs["metadata"]["name"] for rs in wanted}
    for rs in wanted:
        have = store.get("replicasets", rs["metadata"]["name"], ns)
        if have is None or any(have.get(k) != rs.get(k) for k in ("spec", "status")) or \
                (have["metadata"].get("annotations") or {}) != rs["metadata"]["annotations"]:
            if have is not None:
                rs["metadata"]["creationTimestamp"] = have["metadata"].get("creationTimestamp")
            store.put("replicasets", rs["metadata"]["name"], rs)
    for rs in store.list("replicasets", ns=ns):
        refs = rs["metadata"].get("ownerReferences") or []
        if any(r.get("uid") == uid for r in refs) and rs["metadata"]["name"] not in names:
            store.delete("replicasets", rs["metadata"]["name"], ns)


def status_path(paths: LabPaths):
    return paths.root / "controller.json"


class _Statuses:
    """The pods' statuses by (namespace, name), each read from the store when first asked for (``get``, all that
    ``deployments.plan`` and ``endpoints.compute`` use): only the pods of Deployments and of selector Services are
    ever read, through the store's cache (parsed again only when the file changed). Listing every status of the
    lab instead kept all of them parsed in the controller-manager (at 5,000 pods ~30 MB, for the 2 coredns pods),
    and re-read 5,000 files each pass."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.seen: dict[tuple[str, str], dict | None] = {}

    def get(self, key: tuple[str, str], default=None):
        if key not in self.seen:
            self.seen[key] = self.store.cached_status("pods", key[1], key[0])
        st = self.seen[key]
        return default if st is None else st


class ControllerManager:
    def __init__(self, lab: str, nameserver: str, domain: str, seed: int | None = None,
                 whole: bool = True) -> None:
        self.paths = LabPaths(lab)
        # False on a host of a multi-host lab: its store holds only this host's pods; the controller computes
        # every Endpoints and owns the Deployments (their pods here are owned by ReplicaSets only it holds)
        self.whole = whole
        self.store = Store(self.paths.store)
        self.resolv = ResolvFiles(lab, nameserver, domain)
        self.rng = random.Random(seed)
        self.stopping = False
        self.passes = 0

    def versions(self) -> tuple[int, ...]:
        return tuple(self.store.version(k, s) for k, s in WATCHED)

    def reconcile(self, verify: bool = False) -> None:
        from emulator.state import namespaces
        pods = list(self.store.list("pods"))
        statuses = _Statuses(self.store)  # read only if a Deployment or a selector's Endpoints need them
        nodes, unfit = self._schedulable()
        counts: dict[str, int] = {}
        for p in pods:
            n = p["spec"].get("nodeName", "")
            counts[n] = counts.get(n, 0) + 1
        for dep in sorted(self.store.list("deployments"),
                          key=lambda d: (d["metadata"].get("namespace", ""), d["metadata"]["name"])):
            ns, dname = dep["metadata"].get("namespace") or "default", dep["metadata"]["name"]
            plan = deployments.plan(dep, pods, statuses, nodes, counts, self.rng)
            if not namespaces.active(self.store, ns):
                plan.create = []  # the namespace is being deleted: nothing new in it
            if plan.create:
                self.resolv.ensure(plan.create, prune=False)
            for pod in plan.create:
                self.store.put("pods", pod["metadata"]["name"], pod)
                if pod["spec"]["nodeName"]:
                    log(f"deployment {ns}/{dname}: created pod {pod['metadata']['name']} on {pod['spec']['nodeName']}")
                else:
                    self._unscheduled(pod, unfit)
            if plan.bind:
                pods = self._bind(pods, ns, plan.bind)
            for name in plan.delete:
                self.store.delete("pods", name, ns)
                log(f"deployment {ns}/{dname}: deleted pod {name}")
            if plan.create or plan.delete:
                pods = [p for p in pods if (p["metadata"].get("namespace") or "default", p["metadata"]["name"])
                        not in {(ns, n) for n in plan.delete}] + plan.create
            old = self.store.get_status("deployments", dname, ns) or {}
            old = {k: v for k, v in old.items() if k != "resourceVersion"}
            if old != plan.status:
                with self.store.locked():  # not deleted since we listed it (else its status would outlive it)
                    if self.store.get("deployments", dname, ns) is not None:
                        self.store.put_status("deployments", dname, plan.status, ns)
            self._sync_replicasets(dep, plan.replicasets)
        self.resolv.ensure(pods, verify=verify, live=lambda: self.store.list("pods"))
        if self.whole:
            self._sync_endpoints(pods, statuses)
        for ns, name in self.store.keys("deployments", status=True):
            self._orphan_delete("deployments", name, ns, lambda: self.store.get("deployments", name, ns) is None,
                                status=True)
        if self.whole:
            self._collect_garbage(pods)

    def _sync_endpoints(self, pods: list[dict], statuses: _Statuses) -> None:
        services = list(self.store.list("services"))
        live = set()
        for svc in services:
            want = endpoints.compute(svc, pods, statuses)
            if want is None:
                continue
            name, ns = svc["metadata"]["name"], svc["metadata"].get("namespace") or "default"
            live.add((ns, name))
            have = self.store.get("endpoints", name, ns)
            if not endpoints.same(have, want):
                if have is not None:
                    want["metadata"]["creationTimestamp"] = have["metadata"].get("creationTimestamp")
                with self.store.locked():
                    if self.store.get("services", name, ns) is not None:  # not deleted since we listed it
                        self.store.put("endpoints", name, want)
        svc_keys = {(s["metadata"].get("namespace") or "default", s["metadata"]["name"]) for s in services}
        for ns, name in self.store.keys("endpoints"):
            # a Service written since we listed them (the API server's ``kubernetes``, whose Endpoints follow
            # it) keeps its Endpoints: looked up again under the write lock (``_orphan_delete``)
            if (ns, name) not in svc_keys:
                self._orphan_delete("endpoints", name, ns, lambda: self.store.get("services", name, ns) is None)

    def _orphan_delete(self, kind: str, name: str, ns: str, orphaned: Callable[[], bool],
                       status: bool = False) -> bool:
        """Delete an object (or status) that a list showed without its owner, if ``orphaned()`` (a fresh look at
        the store) still says so *under the store's write lock*. What was listed is a past state: the owner may
        have been written since (with a new object of its own, as the API server writes the ``kubernetes``
        Service, then its Endpoints), and a check outside the lock could pass just before that happens."""
        with self.store.locked():
            return orphaned() and self.store.delete(kind, name, ns, status=status)

    def _schedulable(self) -> tuple[list[str], dict[str, int]]:
        """The nodes the scheduler would place a Deployment's pod on (``state.nodes.schedulable``: Ready, not
        cordoned; a Docker host runs no kubelet and is no candidate), and how many Kubernetes nodes are left out
        for which reason (for the FailedScheduling message)."""
        ok, unfit = [], {"not-ready": 0, "unschedulable": 0}
        for n in self.store.list("nodes"):
            why = node_state.schedulable(self.paths, n)
            if not why:
                ok.append(n["metadata"]["name"])
            elif why in unfit:
                unfit[why] += 1
        return ok, unfit

    def _unscheduled(self, pod: dict, unfit: dict[str, int]) -> None:
        """A new pod no node can take: Pending, PodScheduled False, and the scheduler's FailedScheduling event."""
        meta = pod["metadata"]
        ns = meta.get("namespace") or "default"
        msg = hostports.no_ready_node_message(sum(unfit.values()), unfit["not-ready"], unfit["unschedulable"])
        self.store.put_status("pods", meta["name"], manifests.unscheduled_status(meta["name"], ns, meta["uid"], msg),
                              ns)
        events.emit(self.store.root, "pod", meta["name"], "FailedScheduling", msg, "default-scheduler", "Warning",
                    ns=ns)
        log(f"pod {ns}/{meta['name']}: {msg}")

    def _bind(self, pods: list[dict], ns: str, bind: list[tuple[str, str]]) -> list[dict]:
        """Bind unbound pods to the nodes now offered (the scheduler's Binding): the Unschedulable status goes
        first (the node's agent is the writer of the next one), then the pod with its ``nodeName``."""
        placed = dict(bind)
        out = []
        for p in pods:
            name = p["metadata"]["name"]
            if (p["metadata"].get("namespace") or "default") == ns and name in placed:
                p = {**p, "spec": {**p["spec"], "nodeName": placed[name]}}
                self.store.delete("pods", name, ns, status=True)
                self.store.put("pods", name, p)
                events.emit(self.store.root, "pod", name, "Scheduled",
                            f"Successfully assigned {ns}/{name} to {placed[name]}", "default-scheduler", ns=ns)
                log(f"pod {ns}/{name}: bound to {placed[name]}")
            out.append(p)
        return out

    def _sync_replicasets(self, dep: dict, wanted: list[dict]) -> None:
        sync_replicasets(self.store, dep, wanted)

    def _collect_garbage(self, pods: list[dict]) -> None:
        """The garbage collector: ReplicaSets whose Deployment is gone, then the pods of ReplicaSets that are gone
        (deleting a Deployment through the API, with kubectl's Background propagation, leaves them to us)."""
        deps = {(d["metadata"].get("namespace") or "default", d["metadata"].get("uid")) for d in
                self.store.list("deployments")}
        for rs in list(self.store.list("replicasets")):
            ns = rs["metadata"].get("namespace") or "default"
            refs = [r for r in rs["metadata"].get("ownerReferences") or [] if r.get("kind") == "Deployment"]
            if refs and (ns, refs[0].get("uid")) not in deps:
                ref = refs[0]
                if self._orphan_delete("replicasets", rs["metadata"]["name"], ns,
                                       lambda: (self.store.get("deployments", ref.get("name", ""), ns) or {})
                                       .get("metadata", {}).get("uid") != ref.get("uid")):
                    log(f"garbage collector: deleted replicaset {ns}/{rs['metadata']['name']} (its deployment "
                        "is gone)")
        live = {(d["metadata"].get("namespace") or "default", d["metadata"]["name"]) for d in
                self.store.list("deployments")}
        for p in pods:
            rs = deployments.owner(p)
            ns, name, uid = p["metadata"].get("namespace") or "default", p["metadata"]["name"], p["metadata"].get("uid")
            if rs and (ns, rs.rsplit("-", 1)[0]) not in live and self._orphan_delete(
                    "pods", name, ns, lambda: self.store.get("deployments", rs.rsplit("-", 1)[0], ns) is None
                    and (self.store.get("pods", name, ns) or {}).get("metadata", {}).get("uid") == uid):
                log(f"garbage collector: deleted pod {ns}/{name} (its deployment is gone)")

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        log("controller-manager (endpoints, deployments) starting")
        last: tuple[int, ...] | None = None
        last_full = last_verify = time.monotonic()
        watch = KindsWatcher([self.store.root / "status" / k if st else self.store.root / k
                              for k, st in dict.fromkeys(WATCHED)])
        try:
            while not self.stopping:
                v = self.versions()
                now = time.monotonic()
                pause = POLL
                if v != last or now - last_full > RESYNC:
                    last, last_full = v, now
                    verify = now - last_verify > VERIFY
                    last_verify = now if verify else last_verify
                    try:
                        self.reconcile(verify=verify)
                        self.passes += 1
                        write_json(status_path(self.paths), {"versions": list(v), "time": time.time(),
                                                             "passes": self.passes})
                    except Exception:  # keep the control plane alive; the error goes to its log
                        traceback.print_exc()
                    pause = min(max(POLL, BACKOFF * (time.monotonic() - now)), 0.5)
                time.sleep(pause)
                watch.wait(max(0.0, RESYNC - (time.monotonic() - last_full)))
        finally:
            watch.close()
            log("controller-manager stopped (the pods' resolv.conf files go with the lab: ServicesComponent."
                "teardown removes them after the namespaces, while the kernel frees those)")

    def _stop(self, *_: object) -> None:
        self.stopping = True
