"""The cluster's own pods, as ``kubectl get pods -A -o wide`` lists them on a real cluster: one pod per node for
each node-level component that the lab actually runs, with the status of the real process behind it.

* ``kube-system/kube-proxy-xxxxx`` (DaemonSet ``kube-proxy``) when the lab runs kube-proxy: the node's
  kube-proxy process (``kube-proxy of <node>`` in the lab's process journal);
* ``kube-system/calico-node-xxxxx`` (DaemonSet ``calico-node``, Calico's manifest install) in ``bgp`` mode: the
  node's BIRD (``bgp daemon of <node>``), so ``podlab bgp stop`` turns it not ready and a restarted BIRD counts
  as a container restart;
* ``kube-flannel/kube-flannel-ds-xxxxx`` (DaemonSet ``kube-flannel-ds``, where current flannel manifests put
  it) in ``vxlan``/``host-gw`` mode: flannel's work (the node's subnet lease, its routes) is done by podlab's
  node agent, so the pod follows that agent.

Their DaemonSets are written too (``kubectl get ds -A``: desired = nodes, ready = running processes), read-only
through the API. They are mirror objects, like the kubelet's mirror pods of static pods: written by this module (a thread of the
API server, ``Mirror.run``, every second) and never started by a node agent, which leaves every pod annotated
``podlab.io/process`` alone (and its status, marked ``sandbox.mirror``). All are ``hostNetwork``: IP = the
node's IP, ``exec`` runs in the node's namespace, ``logs`` reads the process's own log
(``podlab.io/log``). The name suffix is derived from lab and node (stable across restarts of the server); a
deleted one is written again, as its DaemonSet would recreate it.
"""
from __future__ import annotations

import hashlib
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from emulator.proc import journal
from emulator.proc.lifecycle import alive
from emulator.routing.birdfiles import daemon_label, files_of
from emulator.services.proxy.kubeproxy import log_path as proxy_log
from emulator.state.manifests import namespace_manifest, now
from emulator.state.paths import LabPaths
from emulator.state.store import Store, read_json
from emulator.topology import names
from emulator.topology.model import Namespace

PROCESS_ANNOTATION = "podlab.io/process"
LOG_ANNOTATION = "podlab.io/log"
ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # what Kubernetes draws generated name suffixes from
VERSION = "v1.37.0"


@dataclass(frozen=True)
class SysPod:
    namespace: str
    daemonset: str
    container: str
    image: str
    node: str
    node_ip: str
    label: tuple[str, str]
    proc: tuple[int, int | None] | None     # the process behind it, None if it is not running
    log: str

    @property
    def name(self) -> str:
        h = int(hashlib.sha256(f"{self.daemonset}/{self.node}".encode()).hexdigest(), 16)
        return f"{self.daemonset}-" + "".join(ALPHABET[(h >> (5 * i)) % len(ALPHABET)] for i in range(5))


def suffix_uid(*parts: str) -> str:
    h = hashlib.sha256("/".join(parts).encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def newest(paths: LabPaths) -> dict[str, journal.Entry]:
    """The newest journal entry of each process name (the current process of that name)."""
    last: dict[str, journal.Entry] = {}
    for e in journal.entries(paths.proc_journal):
        last[e.what] = e
    return last


def wanted(paths: LabPaths, store: Store, last: dict[str, journal.Entry] | None = None) -> list[SysPod]:
    rec = read_json(paths.record) or {}
    mode = rec.get("routing", "")
    last = newest(paths) if last is None else last
    out = []
    for n in store.list("nodes"):
        node = n["metadata"]["name"]
        ip = next((a["address"] for a in n.get("status", {}).get("addresses", []) if a["type"] == "InternalIP"), "")

        def proc(what: str) -> tuple[int, int | None] | None:
            e = last.get(what)
            return (e.pid, e.start) if e and alive(e.pid, e.start) else None
        if f"kube-proxy of {node}" in last:
            out.append(SysPod("kube-system", "kube-proxy", "kube-proxy", f"registry.k8s.io/kube-proxy:{VERSION}",
                              node, ip, ("k8s-app", "kube-proxy"), proc(f"kube-proxy of {node}"),
                              str(proxy_log(paths, node))))
        if mode == "bgp":
            out.append(SysPod("kube-system", "calico-node", "calico-node", "docker.io/calico/node:v3.29.1", node,
                              ip, ("k8s-app", "calico-node"), proc(daemon_label(node)),
                              str(files_of(paths.lab, node).log)))
        elif mode in ("vxlan", "host-gw"):
            pf = read_json(paths.agent_pid(node)) or {}
            agent = (pf["pid"], pf.get("start")) if pf.get("pid") and alive(pf["pid"], pf.get("start")) else None
            out.append(SysPod("kube-flannel", "kube-flannel-ds", "kube-flannel", "ghcr.io/flannel-io/flannel:v0.26.7",
                              node, ip, ("app", "flannel"), agent, str(paths.agent_log(node))))
    return out


def manifest(lab: str, p: SysPod) -> dict:
    return {"kind": "Pod", "apiVersion": "v1",
            "metadata": {"name": p.name, "namespace": p.namespace, "uid": suffix_uid(lab, p.name),
                         "generateName": f"{p.daemonset}-",
                         "labels": {p.label[0]: p.label[1], "controller-revision-hash": "podlab",
                                    "pod-template-generation": "1"},
                         "annotations": {PROCESS_ANNOTATION: p.daemonset, LOG_ANNOTATION: p.log},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": p.daemonset,
                                              "uid": suffix_uid(lab, "ds", p.namespace, p.daemonset),
                                              "controller": True, "blockOwnerDeletion": True}]},
            "spec": {"nodeName": p.node, "hostNetwork": True, "priorityClassName": "system-node-critical",
                     "restartPolicy": "Always", "dnsPolicy": "ClusterFirst",
                     "containers": [{"name": p.container, "image": p.image}]}}


def status(lab: str, p: SysPod, old: dict | None) -> dict:
    oldcs = ((old or {}).get("containerStatuses") or [{}])[0]
    restarts = int(oldcs.get("restartCount", 0))
    was = oldcs.get("process")
    before = was or oldcs.get("lastProcess")
    now_proc = list(p.proc) if p.proc else None
    if now_proc and before and before != now_proc:
        restarts += 1  # a new process (BIRD started again): a restart of the container
    if now_proc:
        started = oldcs.get("state", {}).get("running", {}).get("startedAt") if was == now_proc else None
        state = {"running": {"startedAt": started or now()}}
    else:
        state = {"waiting": {"reason": "CrashLoopBackOff", "message": f"the node's {p.container} process is not "
                                                                      "running"}}
    ready = bool(now_proc)
    cs = {"name": p.container, "image": p.image, "ready": ready, "restartCount": restarts, "state": state,
          "pid": None, "process": now_proc, **({} if now_proc else {"lastProcess": before})}
    if was and not now_proc:
        cs["lastState"] = {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": now()}}
    elif oldcs.get("lastState"):
        cs["lastState"] = oldcs["lastState"]
    return {"name": p.name, "namespace": p.namespace, "phase": "Running", "sandboxReady": True,
            "nodeName": p.node, "uid": suffix_uid(lab, p.name), "hostIP": p.node_ip, "podIP": p.node_ip,
            "podIPs": [{"ip": p.node_ip}], "startTime": (old or {}).get("startTime") or now(),
            "containerStatuses": [cs], "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "sandbox": {"id": suffix_uid(lab, "sandbox", p.name), "netns": names.node_ns(lab, p.node),
                        "hostNetwork": True, "mirror": True}}


def _same(a: dict | None, b: dict) -> bool:
    if a is None:
        return False
    strip = lambda st: {k: v for k, v in st.items() if k not in ("resourceVersion", "startTime")}  # noqa: E731
    return strip(a) == strip(b)


class Mirror:
    def __init__(self, lab: str, store: Store) -> None:
        self.lab, self.store, self.paths = lab, store, LabPaths(lab)
        self._key: tuple[int, int] | None = None
        self._last: dict[str, journal.Entry] = {}

    def _journal(self) -> dict[str, journal.Entry]:
        """``newest``, read again only when the journal has grown (every ``kubectl exec`` adds a line)."""
        try:
            st = os.stat(self.paths.proc_journal)
            key = (st.st_ino, st.st_size)
        except FileNotFoundError:
            key = None
        if key != self._key:
            self._key, self._last = key, newest(self.paths)
        return self._last

    def sync(self) -> None:
        want = wanted(self.paths, self.store, self._journal())
        for key in sorted({(p.namespace, p.daemonset) for p in want}):
            self._daemonset(key, [p for p in want if (p.namespace, p.daemonset) == key])
        for ns in {p.namespace for p in want}:
            if self.store.get("namespaces", ns) is None:
                self.store.put("namespaces", ns, namespace_manifest(Namespace(ns)))
        for p in want:
            if self.store.get("pods", p.name, p.namespace) is None:
                self.store.put("pods", p.name, manifest(self.lab, p))
            old = self.store.get_status("pods", p.name, p.namespace)
            new = status(self.lab, p, old)
            if not _same(old, new):
                self.store.put_status("pods", p.name, new, p.namespace)

    def _daemonset(self, key: tuple[str, str], pods: list[SysPod]) -> None:
        ns, name = key
        p0 = pods[0]
        ready = sum(1 for p in pods if p.proc)
        status = {"desiredNumberScheduled": len(pods), "currentNumberScheduled": len(pods), "numberReady": ready,
                  "updatedNumberScheduled": len(pods), "numberAvailable": ready, "observedGeneration": 1,
                  **({"numberUnavailable": len(pods) - ready} if ready < len(pods) else {})}
        old = self.store.get("daemonsets", name, ns)
        if old is not None and old.get("status") == status:
            return
        labels = {p0.label[0]: p0.label[1]}
        obj = {"kind": "DaemonSet", "apiVersion": "apps/v1",
               "metadata": {"name": name, "namespace": ns, "uid": suffix_uid(self.lab, "ds", ns, name),
                            "labels": labels, "generation": 1},
               "spec": {"selector": {"matchLabels": labels},
                        "template": {"metadata": {"labels": labels},
                                     "spec": {"hostNetwork": True, "priorityClassName": "system-node-critical",
                                              "nodeSelector": {"kubernetes.io/os": "linux"},
                                              "containers": [{"name": p0.container, "image": p0.image}]}},
                        "updateStrategy": {"type": "RollingUpdate",
                                           "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}},
                        "revisionHistoryLimit": 10},
               "status": status}
        self.store.put("daemonsets", name, obj)

    def run(self, every: float = 1.0) -> None:
        while True:
            try:
                self.sync()
            except (OSError, ValueError, KeyError) as e:  # a lab being removed under us: try again, say why
                print(f"{time.strftime('%H:%M:%S')} mirror pods: {e}", flush=True)
            time.sleep(every)

    def start(self) -> threading.Thread:
        t = threading.Thread(target=self.run, daemon=True, name="mirror-pods")
        t.start()
        return t


def log_of(pod: dict) -> Path | None:
    """The log file of a mirror pod's process (None for any other pod)."""
    v = ((pod.get("metadata") or {}).get("annotations") or {}).get(LOG_ANNOTATION)
    return Path(v) if v and PROCESS_ANNOTATION in pod["metadata"]["annotations"] else None
