"""The kube-proxy of one node: a real process in the node's namespace that keeps its rules equal to the store.

Loop (woken by inotify on the store's ``services`` and ``endpoints`` directories, ``state.watch.KindsWatcher``; an
idle kube-proxy costs no CPU between its health checks): if the ``services`` or ``endpoints`` of the store changed, rebuild the desired
``ProxyState`` (pure, ``state.build``) and sync the *difference* in one transaction (``backends``); every two
seconds, check the canary (tables flushed or deleted by hand → the next sync is a full one, which rebuilds everything
from the desired state); every 30 seconds, a full sync anyway. A sync that fails is retried at once as a full
sync, then every two seconds. After each sync a status file (``var/lib/kube-proxy/status.json`` under the node's
root) records the store versions it covered and when, which is how ``up`` and the benchmark know the node has
applied a change. It also sets ``net.bridge.bridge-nf-call-iptables=1`` in its namespace, as kube-proxy
requires: with it, the replies a pod sends straight over ``cni0`` to a pod on the same node pass the node's
conntrack and get un-DNATed.

    python3 -m emulator.services.proxy --lab demo --node node-1 [--mode iptables|nftables]
"""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from emulator.errors import PodlabError
from emulator.state.paths import LabPaths
from emulator.netlink import netns
from emulator.proc.daemon import log
from emulator.services.proxy import backends, state
from emulator.state.store import Store, read_json, write_json
from emulator.state.watch import KindsWatcher
from emulator.topology import names

POLL = 0.01
HEALTH_PERIOD = 2.0
FULL_SYNC_PERIOD = 30.0


def status_path(paths: LabPaths, node: str) -> Path:
    return paths.node_root(node) / "var/lib/kube-proxy/status.json"


def log_path(paths: LabPaths, node: str) -> Path:
    return paths.node_root(node) / "var/log/kube-proxy.log"


class KubeProxy:
    def __init__(self, lab: str, node: str, mode: str, cluster_cidr: str) -> None:
        self.paths = LabPaths(lab)
        self.store = Store(self.paths.store)
        self.node, self.mode, self.cluster_cidr = node, mode, cluster_cidr
        self.backend = backends.backend(mode)
        self.builder = state.Builder(node, cluster_cidr)
        self.applied: state.ProxyState | None = None
        self.stopping = False
        self.counts = {"syncs": 0, "fullSyncs": 0, "failures": 0}
        self.last_error = ""
        self.reported: tuple[int, int] | None = None
        self.covered: tuple[int, int] | None = None  # the store versions the last sync started from

    def versions(self) -> tuple[int, int]:
        return self.store.version("services"), self.store.version("endpoints")

    def desired(self) -> state.ProxyState:
        return self.builder.build(list(self.store.list("services")), list(self.store.list("endpoints")))

    def sync(self, full: bool) -> bool:
        versions = self.covered = self.versions()  # read before the objects: a later change is a later sync
        want = self.desired()
        changed = None if full else state.changed(self.applied, want)
        if changed is not None and not changed and not self.backend.pending:
            if versions != self.reported:  # e.g. a Service that changes nothing on this node
                self._status(versions, 0.0, False, 0)
            return True
        t0 = time.monotonic()
        try:
            lines = self.backend.sync(want, changed, self.applied)
        except backends.SyncError as e:
            self.counts["failures"] += 1
            self.last_error = str(e)
            log(f"{'full' if changed is None else 'partial'} sync failed: {e}")
            self.applied = None  # unknown: the next sync is a full one
            self._status(None, 0.0, changed is None, 0)
            return False
        took = time.monotonic() - t0
        self.applied, self.last_error = want, ""
        self.counts["syncs"] += 1
        self.counts["fullSyncs"] += changed is None
        if changed is None or changed:
            what = "all services" if changed is None else ", ".join(f"{ns}/{n}" for ns, n in sorted(changed))
            log(f"{self.mode} {'full' if changed is None else 'partial'} sync: {len(want.ports)} service ports, "
                f"{sum(len(p.endpoints) for p in want.ports)} endpoints, {lines} lines in {took * 1000:.1f} ms "
                f"({what})")
        self._status(versions, took, changed is None, lines)
        return True

    def _status(self, versions: tuple[int, int] | None, took: float, full: bool, lines: int) -> None:
        prev = read_json(status_path(self.paths, self.node)) or {}
        st = {"node": self.node, "mode": self.mode, "pid": os.getpid(), "clusterCIDR": self.cluster_cidr,
              "versions": list(versions) if versions else prev.get("versions"), "time": time.time(),
              "lastSyncMs": round(took * 1000, 2) if lines else prev.get("lastSyncMs"), "full": full,
              "servicePorts": len(self.applied.ports) if self.applied else 0, "error": self.last_error, **self.counts}
        write_json(status_path(self.paths, self.node), st)
        self.reported = versions

    def run(self) -> None:
        if os.stat("/proc/self/ns/net").st_ino != netns.inode(names.node_ns(self.paths.lab, self.node)):
            raise PodlabError(f"kube-proxy of {self.node} must run inside its node's namespace "
                              f"({names.node_ns(self.paths.lab, self.node)}); refusing to program any other",
                              obj=self.node)
        status_path(self.paths, self.node).parent.mkdir(parents=True, exist_ok=True)
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        for key in ("net.bridge.bridge-nf-call-iptables",):
            try:
                netns.write_sysctl(key, "1")
            except OSError as e:
                log(f"warning: cannot set {key}=1 ({e}); same-node Service replies will not be un-NATed")
        log(f"kube-proxy ({self.mode} mode) on node {self.node} starting; cluster CIDR {self.cluster_cidr}")
        watch = KindsWatcher([self.store.root / "services", self.store.root / "endpoints"])
        ok = self.sync(full=True)
        last_health = last_full = time.monotonic()
        while not self.stopping:
            watch.wait(max(POLL, HEALTH_PERIOD - (time.monotonic() - last_health)))
            if self.stopping:
                break
            now = time.monotonic()
            if self.versions() != self.covered or not ok:  # a change since the last sync began
                ok = self.sync(full=self.applied is None)
                if not ok:
                    time.sleep(HEALTH_PERIOD)
                continue
            if now - last_full >= FULL_SYNC_PERIOD:
                last_full = now
                ok = self.sync(full=True)
            elif now - last_health >= HEALTH_PERIOD:
                last_health = now
                try:
                    healthy = self.backend.healthy()
                except backends.SyncError as e:
                    log(f"health check failed: {e}")
                    healthy = False
                if not healthy:
                    log("kube-proxy's tables or chains were removed by hand; full resync")
                ok = self.sync(full=not healthy)
                if not healthy:
                    last_full = now
        watch.close()
        log("kube-proxy stopping (rules stay in place, as a real kube-proxy leaves them)")

    def _stop(self, *_: object) -> None:
        self.stopping = True


def serve(lab: str, node: str, mode: str) -> None:
    """Run as ``node``'s kube-proxy (the caller is already inside the node's namespace)."""
    paths = LabPaths(lab)
    rec = read_json(paths.record) or {}
    cidr = (rec.get("cluster") or {}).get("podCIDR", "10.244.0.0/16")
    KubeProxy(lab, node, mode, cidr).run()


def main(argv: list[str] | None = None) -> int:
    import argparse
    ap = argparse.ArgumentParser(prog="kube-proxy", description="podlab's kube-proxy for one node")
    ap.add_argument("--lab", required=True)
    ap.add_argument("--node", required=True)
    ap.add_argument("--mode", default="iptables", choices=["iptables", "nftables"])
    a = ap.parse_args(argv)
    netns.setns(netns.open_fd(names.node_ns(a.lab, a.node)))
    serve(a.lab, a.node, a.mode)
    return 0
