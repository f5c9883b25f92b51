"""The NetworkPolicy enforcer of one node: a process in the node's namespace keeping its nftables table equal to
the policies, pods and namespaces in the store (the role kube-network-policies' DaemonSet pod plays).

Loop: sleep until a watched store directory changes (pods, pod statuses, policies, namespaces: inotify through
``state.watch``, which names the files) or the next health check is due; on a change, re-read the files named
(``reader.ClusterReader``), update the node's desired state incrementally (``nodestate.NodeBuilder``) and apply the difference as one
transaction (``render.diff``) through libnftables in-process (``services.proxy.libnft``, kube-proxy's); the
first sync, and any sync after a failure, is a full one (``render.full``). A change is given ``DEBOUNCE`` (10 ms)
for the writes that follow it (a new pod is a manifest and two status writes) to be applied in one transaction. Every ``HEALTH_PERIOD`` seconds the
kernel's chains are listed and compared with what was applied (the rules' count and comments, chain by
chain): a table, chain or rule removed or added by hand makes the next sync a full one, which puts everything
back. Every ``FULL_SYNC_PERIOD`` seconds a full sync runs anyway. After each sync a status file
(``var/lib/kube-network-policies/status.json`` under the node's root) records the store versions applied, so a
caller can wait until a change is live on every node (``component.wait_synced``). It also sets
``net.bridge.bridge-nf-call-iptables=1`` in its namespace: same-node pod traffic crosses ``cni0`` as a bridge,
and only with it does that traffic reach the ``postrouting`` hook and conntrack.
"""
from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

from emulator.errors import PodlabError
from emulator.netlink import netns
from emulator.netpol import names, render
from emulator.netpol.reader import ClusterReader
from emulator.netpol.nodestate import BASE_RULES, NodeBuilder, NodeState
from emulator.proc.daemon import log
from emulator.proc.lifecycle import start_time
from emulator.services.proxy.libnft import Nft, NftError
from emulator.state.paths import LabPaths
from emulator.state.store import Store, read_json, write_json
from emulator.state.watch import Watcher
from emulator.topology import names as topo_names

HEALTH_PERIOD = 10.0
FULL_SYNC_PERIOD = 60.0
RETRY_PERIOD = 1.0
DEBOUNCE = 0.01  # after a change, gather what follows it for this long (a new pod: manifest, then two statuses)
_COMMENT = re.compile(r'comment "(.*)"$')


def status_path(paths: LabPaths, node: str) -> Path:
    return paths.node_root(node) / "var/lib/kube-network-policies/status.json"


def log_path(paths: LabPaths, node: str) -> Path:
    return paths.node_root(node) / "var/log/kube-network-policies.log"


def list_rules(nft: Nft) -> dict[str, list[str]]:
    """{chain: [comment of each rule, '' for none]} as the kernel holds them (NftError if the table is missing).
    One ``list table`` through a terse context (no set elements); nft 1.0 refuses several ``list chain`` in one
    buffer."""
    text = nft.run(f"list table {names.T}\n")
    out: dict[str, list[str]] = {}
    chain = None
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("chain ") and s.endswith("{"):
            chain = s[len("chain "):-1].strip()
            out[chain] = []
        elif s == "}" or s.startswith("table ") or not s or chain is None:
            if s == "}":
                chain = None
        elif not s.startswith(("type ", "comment ")):
            m = _COMMENT.search(s)
            out[chain].append(m.group(1) if m else "")
    return out


def expected_rules(state: NodeState) -> dict[str, list[str]]:
    out = {names.BASE_CHAIN: [r.comment for r in BASE_RULES]}
    out.update({c: [r.comment for r in rules] for c, rules in state.chains.items()})
    return out


def differences(have: dict[str, list[str]], want: dict[str, list[str]]) -> list[str]:
    """What the kernel's chains lack or hold extra, in words (empty when they match)."""
    out = []
    for chain, rules in want.items():
        got = have.get(chain)
        if got is None:
            out.append(f"chain {chain} is missing")
            continue
        before = len(out)
        out += [f"chain {chain}: rule {c!r} is missing" for c in rules if c and c not in got]
        out += [f"chain {chain}: rule {c!r} was not put there by the enforcer" for c in got if c and c not in rules]
        if len(out) == before and got != rules:
            out.append(f"chain {chain}: holds {len(got)} rules in another order or number than the {len(rules)} "
                       "applied")
    out += [f"chain {c} was not put there by the enforcer" for c in have if c not in want]
    return out


class Enforcer:
    def __init__(self, lab: str, node: str) -> None:
        self.paths = LabPaths(lab)
        self.node = node
        self.reader = ClusterReader(Store(self.paths.store))
        self.builder = NodeBuilder(node)
        self.applied: NodeState | None = None
        self._nft: Nft | None = None
        self._lister: Nft | None = None
        self.stopping = False
        self.counts = {"syncs": 0, "fullSyncs": 0, "failures": 0, "repairs": 0}
        self.last_error = ""
        self.last_health = 0.0

    @property
    def nft(self) -> Nft:
        if self._nft is None:  # made inside the node's namespace (its netlink socket belongs there)
            self._nft = Nft()
        return self._nft

    @property
    def lister(self) -> Nft:
        if self._lister is None:
            self._lister = Nft(terse=True)
        return self._lister

    def desired(self, changes: dict[Path, set[str]] | None) -> NodeState:
        self.reader.refresh(changes)
        return self.builder.update(self.reader.pods(), self.reader.namespaces(), self.reader.policies(),
                                   self.reader.changed_pods)

    def sync(self, full: bool = False, changes: dict[Path, set[str]] | None = None, watcher: Watcher | None = None) -> bool:
        """Apply the store's state: the difference from what was applied (``changes``: the files inotify named;
        None reads everything), or everything (``full``). The versions reported are read first, then any event
        queued meanwhile is drained from ``watcher`` too: a status never covers a write whose file was not read."""
        versions = self.reader.versions()
        if watcher is not None and changes is not None:
            changes = _drain(watcher, changes)
        t0 = time.monotonic()
        try:
            want = self.desired(None if full else changes)
            text = render.full(want) if full or self.applied is None else render.diff(want, self.applied)
            if text:
                self.nft.run(text)
        except (NftError, PodlabError, ValueError, KeyError) as e:
            self.counts["failures"] += 1
            self.last_error = str(e)
            log(f"{'full' if full else 'partial'} sync failed: {e}")
            self.applied = None
            self.builder = NodeBuilder(self.node)  # start over: the next sync is a full one
            self._status(None, 0.0, full, 0)
            return False
        took = time.monotonic() - t0
        # a snapshot (the builder's sets keep changing)
        self.applied = NodeState(want.node, dict(want.sets), dict(want.elements), dict(want.chains))
        self.last_error = ""
        if text:
            self.counts["syncs"] += 1
            self.counts["fullSyncs"] += full
            log(f"{'full' if full else 'partial'} sync: {len(self.builder.policies)} policies, "
                f"{len(want.chains) - 2} policy chains, {want.rule_count()} rules, "
                f"{sum(len(e) for e in want.elements.values())} set elements; {text.count(chr(10))} lines "
                f"in {took * 1000:.1f} ms")
        self._status(versions, took, full, text.count("\n"))
        return True

    def check_health(self) -> list[str]:
        """Differences between the kernel's chains and the applied state ([] when they match)."""
        self.last_health = time.time()
        if self.applied is None:
            return ["nothing applied yet"]
        want = expected_rules(self.applied)
        try:
            have = list_rules(self.lister)
        except NftError as e:
            return [f"listing the table failed: {str(e).splitlines()[0][:200]}"]
        return differences(have, want)

    def _status(self, versions: tuple[int, ...] | None, took: float, full: bool, lines: int) -> None:
        prev = read_json(status_path(self.paths, self.node)) or {}
        a = self.applied
        st = {"node": self.node, "pid": os.getpid(), "start": start_time(os.getpid()), "table": names.T,
              "versions": list(versions) if versions else prev.get("versions"), "time": time.time(),
              "lastSyncMs": round(took * 1000, 2) if lines else prev.get("lastSyncMs"), "full": full,
              "policies": len(self.builder.policies), "chains": len(a.chains) if a else 0,
              "rules": a.rule_count() if a else 0, "lastHealth": self.last_health, "error": self.last_error,
              **self.counts}
        write_json(status_path(self.paths, self.node), st)

    def run(self) -> None:
        if os.stat("/proc/self/ns/net").st_ino != netns.inode(topo_names.node_ns(self.paths.lab, self.node)):
            raise PodlabError(f"the NetworkPolicy enforcer of {self.node} must run inside its node's namespace; "
                              "refusing to program any other", obj=self.node)
        status_path(self.paths, self.node).parent.mkdir(parents=True, exist_ok=True)
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        rfd, wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wfd, warn_on_full_buffer=False)
        try:
            netns.write_sysctl("net.bridge.bridge-nf-call-iptables", "1")
        except OSError as e:
            log(f"warning: cannot set net.bridge.bridge-nf-call-iptables=1 ({e}); same-node pod traffic will "
                "bypass the policy chains")
        log(f"kube-network-policies (podlab) on node {self.node} starting: table {names.T}")
        watcher = Watcher(self.reader.watch_dirs(), wake_fd=rfd)
        ok = self.sync(full=True)
        next_health = time.monotonic() + HEALTH_PERIOD
        next_full = time.monotonic() + FULL_SYNC_PERIOD
        try:
            while not self.stopping:
                now = time.monotonic()
                changes = watcher.wait_changes(max(0.0, min(next_health, next_full) - now) if ok else RETRY_PERIOD)
                if self.stopping:
                    break
                if changes:
                    time.sleep(DEBOUNCE)
                    changes = _drain(watcher, changes)
                now = time.monotonic()
                if now >= next_full:
                    next_full = now + FULL_SYNC_PERIOD
                    ok = self.sync(full=True)
                elif changes != {} or not ok:
                    ok = self.sync(full=self.applied is None, changes=changes if ok else None, watcher=watcher)
                dirs = self.reader.watch_dirs()
                if dirs != watcher.dirs:  # a namespace directory appeared: watch it, then read what it holds
                    new = [d for d in dirs if d not in watcher.dirs]  # (a file made before the watch is listed)
                    watcher.dirs = dirs
                    watcher.rearm()
                    ok = self.sync(changes={d: set(_listdir(d)) for d in new}, watcher=watcher) and ok
                if now >= next_health:
                    next_health = now + HEALTH_PERIOD
                    problems = self.check_health()
                    if problems:
                        self.counts["repairs"] += 1
                        log("the table differs from what was applied (changed by hand?): " + "; ".join(problems[:5])
                            + "; full resync")
                        ok = self.sync(full=True)
                    else:
                        self._status(None, 0.0, False, 0)
        finally:
            watcher.close()
        log("stopping (the rules stay in place, as kube-network-policies leaves them when failing open)")

    def _stop(self, *_: object) -> None:
        self.stopping = True


def _listdir(d: Path) -> list[str]:
    try:
        return os.listdir(d)
    except FileNotFoundError:
        return []  # the namespace directory went again (its namespace was deleted)


def _drain(watcher: Watcher, changes: dict[Path, set[str]]) -> dict[Path, set[str]] | None:
    """``changes`` with every event already queued in ``watcher`` added (None: it overflowed, read everything)."""
    more = watcher.wait_changes(0)
    if more is None:
        return None
    for d, n in more.items():
        changes.setdefault(d, set()).update(n)
    return changes
