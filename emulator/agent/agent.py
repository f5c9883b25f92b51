"""The kubelet-like node agent: a real process in its node's namespace that makes the node's pods match the store.

Pods are keyed by (Kubernetes namespace, name) everywhere here, since two namespaces may hold pods of one name.

Loop: sleep until the node's pod index or CNI configuration changes (inotify, see ``watch``), a child exits, or
the periodic resync is due (every second), then for every pod bound to this node start what is missing, stop
what is no longer wanted, and restart dead containers. Status is written by this agent only
(``status/pods/<namespace>/<name>.json``) and kept in memory too, as the kubelet's status manager does, so a reconcile reads
only the node's own pod index (``Store.list_index``), never the whole cluster. Pods whose network cannot be set up yet (no
CNI config, no free IP) stay Pending with the reason and are retried on the next change or resync, so installing
a config or freeing an address lets them start without being recreated.

On start the agent *recovers* instead of starting over (``recover``): a Running pod whose namespace exists and
passes CNI CHECK is kept with its processes untouched; a broken one is torn down and recreated; a namespace left
by a crash between its creation and its status is removed; IPAM entries whose sandbox no status knows are
released. So killing an agent at any instant leaves no duplicate IP, leaked IP file, orphan veth or namespace.

Started by ``podlab up`` (forked, so it costs no interpreter start) or by ``python -m emulator.agent``.
"""
from __future__ import annotations

import os
import signal
import time
import traceback

from emulator.agent import pods
from emulator.proc import lifecycle
from emulator.agent.supervise import Supervisor
from emulator.state.watch import Watcher
from emulator.cni.runtime import CniNotReady, Runtime
from emulator.errors import CniError, IpamExhaustedError, PodlabError
from emulator.ipam.hostlocal import HostLocalStore
from emulator.state import events
from emulator.state.paths import LabPaths
from emulator.netlink import netns
from emulator.state.store import Store, read_json, write_atomic, write_json
from emulator.topology import names

Key = tuple[str, str]  # (namespace, pod name)
REFERENCE_CNI_PATH = "/usr/lib/cni"
RESYNC = 1.0


class Agent:
    def __init__(self, lab: str, node: str) -> None:
        self.paths = LabPaths(lab)
        self.node = node
        self.store = Store(self.paths.store)
        nodeobj = self.store.get("nodes", node)
        if nodeobj is None:
            raise PodlabError(f"node {node} is not in lab {lab}", obj=node)
        self.host_ip = nodeobj["status"]["addresses"][0]["address"]
        cni = nodeobj["metadata"].get("annotations", {}).get("podlab.io/cni", "builtin")
        bins = [str(self.paths.cni_bin_dir(node))] + ([REFERENCE_CNI_PATH] if cni == "reference" else [])
        self.runtime = Runtime(self.paths.cni_conf_dir(node), bins, builtin=(cni != "reference"))
        self.supervisor = Supervisor(self.paths, node, self.host_ip)
        self.stopping = False
        self._pending_msg: dict[Key, str] = {}
        self._status: dict[Key, dict] | None = None  # the statuses this agent wrote (it is their only writer)

    def _write(self, key: Key):
        return lambda st: self.set_status(key, st)

    def set_status(self, key: Key, st: dict | None) -> None:
        ns, name = key
        if st is None:
            self.store.delete("pods", name, ns, status=True)
            self.statuses().pop(key, None)
        else:
            self.store.put_status("pods", name, st, ns)
            self.statuses()[key] = st

    def mine(self) -> dict[Key, dict]:
        """The pods bound to this node that it runs: not the mirror pods of the lab's own node processes
        (``podlab.io/process``: kube-proxy, BIRD; the API server writes those and their status)."""
        return {(p["metadata"].get("namespace") or "default", p["metadata"]["name"]): p
                for p in self.store.list_index("pods", self.node) if p["spec"].get("nodeName") == self.node
                and "podlab.io/process" not in (p["metadata"].get("annotations") or {})}

    def statuses(self) -> dict[Key, dict]:
        if self._status is None:  # read once, uncached: other nodes' statuses are not kept (``Store.scan``)
            self._status = {(st.get("namespace") or "default", st["name"]): st
                            for _ns, _name, st in self.store.scan("pods", status=True)
                            if st.get("nodeName") == self.node and "name" in st
                            and not (st.get("sandbox") or {}).get("mirror")}
        return self._status

    # -- recovery after a restart or crash
    def recover(self) -> None:
        want, have = self.mine(), self.statuses()
        for key, st in list(have.items()):
            name = f"{key[0]}/{key[1]}"
            sb = st.get("sandbox") or {}
            if not (st.get("phase") == "Running" or st.get("sandboxReady")) or not sb.get("netns"):
                continue
            try:
                if not netns.exists(sb["netns"]):
                    raise CniError(f"network namespace {sb['netns']} is gone")
                if sb.get("hostNetwork"):
                    continue  # the node's own namespace: no CNI result to check
                self.runtime.check(sb["id"], netns.path(sb["netns"]), names.POD_IFNAME, sb.get("cniResult") or {})
            except (CniError, PodlabError) as e:
                print(f"{time.strftime('%H:%M:%S')} pod {name}: sandbox fails CHECK ({e}); recreating", flush=True)
                pods.stop(self.runtime, st, name)
                self.set_status(key, None)
        known = {(st.get("sandbox") or {}).get("id") for st in self.statuses().values()}
        # container processes started by a crashed run before its status was written (recorded in the journal)
        kept = []
        for sandbox, pid, started in pods.read_journal(self.paths, self.node):
            if sandbox in known:
                kept.append(f"{sandbox} {pid} {started}\n")
            else:
                lifecycle.stop(pid, started)
        write_atomic(self.paths.container_journal(self.node), "".join(kept))
        have = self.statuses()
        for key in want:
            ns = names.pod_ns(self.paths.lab, key[1], key[0])
            if key not in have and netns.exists(ns):
                netns.delete(ns)  # made by a crashed run before its status was written
        # IPs (and host veths) of sandboxes no status names: the plugins' own DEL frees them (CNI GC)
        try:
            allocated = HostLocalStore(self.paths.ipam_dir(self.node), names.CNI_NETWORK).allocations()
        except OSError as e:
            print(f"{time.strftime('%H:%M:%S')} cannot read the IPAM store for leak recovery: {e}", flush=True)
            return
        by_id = {(cid, ifname): ip for ip, (cid, ifname) in allocated.items()}
        for cid, ifname, err in self.runtime.gc(list(by_id), {k for k in known if k}):
            ip = by_id[(cid, ifname)]
            if err is None:
                print(f"{time.strftime('%H:%M:%S')} released leaked IP {ip} of sandbox {cid[:12]}", flush=True)
            else:
                print(f"{time.strftime('%H:%M:%S')} could not release leaked IP {ip} of sandbox {cid[:12]}: {err}",
                      flush=True)

    # -- reconcile
    def reconcile(self, supervise: bool = True) -> None:
        want, have = self.mine(), dict(self.statuses())
        for key, st in have.items():
            pod = want.get(key)
            if pod is None or pod["metadata"].get("uid") != st.get("uid"):
                pods.stop(self.runtime, st, key[1])
                self.set_status(key, None)
                events.emit(self.store.root, "pod", key[1], "Killing", "Stopping pod sandbox", f"kubelet, {self.node}",
                            ns=key[0])
                self._pending_msg.pop(key, None)
        have = {k: s for k, s in have.items() if k in want and want[k]["metadata"].get("uid") == s.get("uid")}
        for key, pod in want.items():
            st = have.get(key)
            if st and (st.get("phase") == "Running" or st.get("sandboxReady")):
                if supervise:
                    new = self.supervisor.check(pod, st)
                    if new is not None:
                        self.set_status(key, new)
                continue
            if st and st.get("sandbox"):
                pods.stop(self.runtime, st, key[1])
            self._start(key, pod)

    def _start(self, key: Key, pod: dict) -> None:
        try:
            pods.start(self.paths, self.runtime, pod, self.node, self.host_ip, self._write(key))
            self._pending_msg.pop(key, None)
        except CniNotReady as e:
            self._pending(key, pod, str(e))
        except IpamExhaustedError as e:
            self._pending(key, pod, f'failed to set up sandbox network: plugin type="bridge" failed (add): {e}')
        except (CniError, PodlabError, OSError) as e:
            self._pending(key, pod, f"failed to set up pod sandbox: {e}")

    def _pending(self, key: Key, pod: dict, message: str) -> None:
        if self._pending_msg.get(key) == message:
            return
        self.set_status(key, pods.waiting_status(pod, self.node, self.host_ip, "ContainerCreating", message))
        events.emit(self.store.root, "pod", key[1], "FailedCreatePodSandBox", message, f"kubelet, {self.node}",
                    "Warning", ns=key[0])
        print(f"{time.strftime('%H:%M:%S')} pod {key[0]}/{key[1]}: {message}", flush=True)
        self._pending_msg[key] = message

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, self._on_term)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # a container exited: wake up (through the pipe below)
        rfd, wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wfd, warn_on_full_buffer=False)
        self.recover()
        watcher = Watcher([self.store.index_dir("pods", self.node), self.runtime.conf_dir], wake_fd=rfd)
        last_full = 0.0
        changed, reaped = True, []
        while not self.stopping:
            t = time.monotonic()
            full = t - last_full > RESYNC
            if changed or reaped or full:
                if full:
                    last_full = t
                try:
                    self.reconcile(supervise=bool(reaped) or full)
                except Exception:  # keep the node alive; the error goes to the agent log
                    traceback.print_exc()
            try:
                changed = watcher.wait(max(RESYNC - (time.monotonic() - last_full), 0.0))
            except InterruptedError:
                changed = False
            reaped = lifecycle.reap()
            self.supervisor.reaped(reaped)
        watcher.close()
        print(f"{time.strftime('%H:%M:%S')} agent of {self.node} stopping (SIGTERM); pods keep running", flush=True)

    def _on_term(self, *_: object) -> None:
        self.stopping = True


def write_pidfile(paths: LabPaths, node: str) -> None:
    pid = os.getpid()
    write_json(paths.agent_pid(node), {"pid": pid, "start": lifecycle.start_time(pid)})


def read_pidfile(paths: LabPaths, node: str) -> tuple[int, int | None] | None:
    rec = read_json(paths.agent_pid(node))
    return (rec["pid"], rec.get("start")) if rec else None


def serve(lab: str, node: str) -> None:
    """Become the agent of ``node``: enter its namespace, record the PID, run until SIGTERM."""
    paths = LabPaths(lab)
    netns.setns(netns.open_fd(names.node_ns(lab, node)))
    paths.agent_pid(node).parent.mkdir(parents=True, exist_ok=True)
    write_pidfile(paths, node)
    print(f"{time.strftime('%H:%M:%S')} agent of {node} (lab {lab}) started, pid {os.getpid()}", flush=True)
    Agent(lab, node).run()


def spawn_forked(lab: str, node: str) -> int:
    """Start the agent as a daemon forked from this process (no interpreter start); return its PID."""
    return spawn_many(lab, [node])[0]


def spawn_many(lab: str, nodes: list[str]) -> list[int]:
    """Start the agents of several nodes side by side (all forked before any is waited for)."""
    from emulator.proc import daemon
    paths = LabPaths(lab)
    specs = []
    for node in nodes:
        paths.agent_pid(node).parent.mkdir(parents=True, exist_ok=True)
        specs.append(daemon.Daemon((lambda n=node: serve(lab, n)), paths.agent_log(node), paths.proc_journal,
                                   f"agent of {node}", title="podlab-agent", kind="agent"))
    return daemon.spawn_many(specs)


def main(argv: list[str] | None = None) -> int:
    import argparse
    ap = argparse.ArgumentParser(prog="podlab-agent", description="the kubelet-like agent of one podlab node")
    ap.add_argument("--lab", required=True)
    ap.add_argument("--node", required=True)
    a = ap.parse_args(argv)
    serve(a.lab, a.node)
    return 0
