"""The Python API the CLI, the tests and the pytest plugin share.

    from emulator import Lab
    with Lab.up("topologies/demo.yaml", routing="host-gw") as lab:
        ip = lab.pod("web-3").ip
        lab.pod("web-1").exec(["ping", "-c1", ip])

Pods are named by ``name`` in the Kubernetes namespace ``default``, or by ``namespace/name`` (``lab.pod("x/a")``,
or ``lab.pod("a", namespace="x")``), as ``kubectl -n x`` would scope them.

A ``Lab`` is a handle on a lab by name; it reads the store and the lab record each time (the agents change pod
status behind its back), and runs commands inside namespaces with ``nsenter`` (it enters only the network
namespace, so it costs the same with 10 or 10,000 namespaces, unlike ``ip netns exec``), each recorded in the
lab's process journal before it runs (``emulator.lab.nsrun``). Places are named in podlab's one target grammar
(``lab.exec("node-1", ...)``, ``lab.target("web-1:eth0")``: ``emulator.lab.targets``); an object that does not
exist is ``NotFoundError`` naming its kind, its name and the lab (``get_object``, ``pod``, ``node``).
"""
from __future__ import annotations

import ipaddress
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ClassVar, Sequence

from emulator.agent.agent import read_pidfile
from emulator.proc.lifecycle import alive
from emulator.errors import LabNotFoundError, LabTimeoutError, NotFoundError, PodNotFoundError, ProcessError
from emulator.lab import builder, targets, teardown
from emulator.lab.nsrun import ns_argv, popen_in, run_in  # noqa: F401 (re-exported: the API's way into a namespace)
from emulator.lab.targets import Place, split_ref, where as _where  # noqa: F401 (split_ref: the API's too)
from emulator.netlink import netns
from emulator.state import nodes as node_state
from emulator.state import record
from emulator.state.paths import LabPaths
from emulator.state.resolv import preparing_pod
from emulator.state.store import Store
from emulator.topology import names
from emulator.topology.loader import load
from emulator.topology.model import Topology


def _listdir(d: Path) -> list[str]:
    try:
        return os.listdir(d)
    except FileNotFoundError:
        return []


#: the store's resource names and the kind each holds (for messages: ``service "web" not found``)
KINDS = {"pods": "pod", "nodes": "node", "services": "service", "endpoints": "endpoints",
         "deployments": "deployment", "replicasets": "replicaset", "namespaces": "namespace",
         "networkpolicies": "networkpolicy"}


@dataclass(frozen=True)
class _View:
    """A named object of a lab with a network namespace: its stored object, its namespace, exec in it."""

    lab: "Lab"
    name: str
    resource: ClassVar[str]
    with_status: ClassVar[bool] = False

    @property
    def obj(self) -> dict:
        return self.lab.get_object(self.resource, self.name, status=self.with_status)

    @property
    def netns(self) -> str:
        return names.node_ns(self.lab.name, self.name)

    def exec(self, argv: Sequence[str], **kw) -> subprocess.CompletedProcess:
        return run_in(self.netns, argv, **kw)


@dataclass(frozen=True)
class PodView(_View):
    """A pod, named by ``name`` and its Kubernetes ``namespace``."""

    namespace: str = names.DEFAULT_NAMESPACE
    resource: ClassVar[str] = "pods"
    with_status: ClassVar[bool] = True

    @property
    def ref(self) -> str:
        """How podlab names the pod: ``name`` in ``default``, ``namespace/name`` elsewhere."""
        return self.name if self.namespace == names.DEFAULT_NAMESPACE else f"{self.namespace}/{self.name}"

    @property
    def obj(self) -> dict:
        return self.lab.get_object("pods", self.name, status=True, namespace=self.namespace)

    @property
    def netns(self) -> str:
        return names.pod_ns(self.lab.name, self.name, self.namespace)

    @property
    def status(self) -> dict:
        return self.obj["status"]

    @property
    def ip(self) -> str | None:
        return self.status.get("podIP")

    @property
    def node(self) -> str:
        return self.obj["spec"]["nodeName"]


SYSTEM_NAMESPACES = ("kube-system", "kube-flannel")


@dataclass(frozen=True)
class NodeView(_View):
    resource: ClassVar[str] = "nodes"

    @property
    def ip(self) -> str:
        return self.obj["status"]["addresses"][0]["address"]

    @property
    def pod_cidr(self) -> str:
        return self.obj["spec"]["podCIDR"]

    @property
    def runtime(self) -> str:
        """``kubelet`` (podlab's node agent runs there) or ``docker`` (a Docker host: no agent, no pods)."""
        return self.obj["metadata"].get("annotations", {}).get("podlab.io/runtime", "kubelet")

    @property
    def ready(self) -> bool:
        """The node's agent runs and its CNI directory holds a configuration, as a kubelet reports Ready only
        once the network plugin is (``state.nodes``); a Docker host has no agent: ready when its namespace
        exists."""
        if self.runtime == "docker":
            return netns.exists(self.netns)
        pf = read_pidfile(self.lab.paths, self.name)
        return bool(pf) and alive(pf[0], pf[1]) and node_state.network_ready(self.lab.paths, self.name)


class Lab:
    def __init__(self, name: str) -> None:
        self.name = name
        self.paths = LabPaths(name)
        self.store = Store(self.paths.store)

    # -- lifecycle
    @classmethod
    def up(cls, source: str | Path | Topology, *, name: str | None = None, routing: str | None = None,
           progress: Callable[[str], None] = lambda s: None, timeout: float | None = None) -> "Lab":
        topo = source if isinstance(source, Topology) else load(source, name=name, routing=routing)
        builder.up(topo, progress=progress, timeout=timeout)
        return cls(topo.name)

    @classmethod
    def get(cls, name: str | None = None) -> "Lab":
        labs = record.all_labs()
        if name is None:
            if len(labs) == 1:
                return cls(labs[0])
            if not labs:
                raise LabNotFoundError(message="no lab is up; start one with `podlab up FILE`")
            raise LabNotFoundError(message=f"several labs are up ({', '.join(labs)}); choose one with --lab NAME")
        if name not in labs:
            raise LabNotFoundError(name, known=labs)
        return cls(name)

    def down(self, progress: Callable[[str], None] = lambda s: None) -> bool:
        return teardown.destroy(self.name, progress=progress)

    def __enter__(self) -> "Lab":
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    # -- views
    @property
    def record(self) -> dict:
        rec = record.load(self.name)
        if rec is None:
            raise LabNotFoundError(self.name)
        return rec

    def get_object(self, resource: str, name: str, *, status: bool = False,
                   namespace: str = names.DEFAULT_NAMESPACE) -> dict:
        """The stored object ``resource/name`` of ``namespace`` (``status``: with the status its controller
        wrote), or ``NotFoundError`` naming its kind, the name and this lab (exit 4 in the CLI)."""
        obj = self.store.with_status(resource, name, namespace) if status else self.store.get(resource, name,
                                                                                               namespace)
        if obj is None:
            raise NotFoundError(KINDS.get(resource, resource), name, _where(self.name, namespace))
        return obj

    @property
    def pods(self) -> list[PodView]:
        """Every pod of the pod network, in every namespace (``default`` first): not the hostNetwork pods of
        the system namespaces (the mirror pods of kube-proxy, calico-node, flannel: they are their nodes)."""
        keys = sorted(self.store.keys("pods"), key=lambda k: (k[0] != names.DEFAULT_NAMESPACE, k))
        return [PodView(self, n, ns) for ns, n in keys if ns not in SYSTEM_NAMESPACES
                or not ((self.store.get("pods", n, ns) or {}).get("spec") or {}).get("hostNetwork")]

    def pod(self, name: str, namespace: str | None = None) -> PodView:
        """The pod ``name`` (``NAMESPACE/NAME`` or ``namespace=``: outside ``default``), or PodNotFoundError."""
        ns, name = split_ref(name, namespace)
        if self.store.get("pods", name, ns) is None:
            raise PodNotFoundError(name, _where(self.name, ns))
        return PodView(self, name, ns)

    @property
    def namespaces(self) -> list[str]:
        return self.store.names("namespaces")

    def create_namespace(self, name: str, labels: dict[str, str] | None = None) -> str:
        """Create a Kubernetes namespace; kubectl's line ("namespace/x created" or "unchanged")."""
        from emulator.errors import PodlabError
        from emulator.state import namespaces
        from emulator.topology.names import check_name
        problem = check_name(name, "namespace")
        if problem:
            raise PodlabError(f"namespace name {name!r} {problem}", obj=name)
        if self.store.get("namespaces", name) is not None:
            return f"namespace/{name} unchanged"
        self.store.put("namespaces", name, namespaces.manifest(name, labels))
        return f"namespace/{name} created"

    def delete_namespace(self, name: str, wait: bool = True, timeout: float = 60) -> None:
        """Delete a namespace and everything in it (its pods stopped by their agents, as the namespace
        controller does); with ``wait``, until the Namespace object is gone."""
        from emulator.state import namespaces
        if namespaces.mark_terminating(self.store, name) is None:
            raise NotFoundError("namespace", name, f"lab {self.name}", known=self.namespaces)
        deadline = time.monotonic() + timeout
        while namespaces.purge(self.store, name):
            if not wait:
                return
            if time.monotonic() > deadline:
                raise LabTimeoutError(f"namespace {name} still has pods after {timeout:.0f}s (are the node agents "
                                      "running?)", obj=name)
            time.sleep(0.01)

    @property
    def nodes(self) -> list[NodeView]:
        return [NodeView(self, n) for n in self.record.get("nodes", [])]

    def node(self, name: str) -> NodeView:
        known = self.record.get("nodes", [])
        if name not in known:
            raise NotFoundError("node", name, f"lab {self.name}", known=known)
        return NodeView(self, name)

    def target(self, target: str, *, iface: bool = True) -> Place:
        """Where ``target`` is, in podlab's target grammar (``emulator.lab.targets``): ``web-1``, ``pod/web-1``,
        ``node-1``, ``node/node-1``, ``underlay``, ``external``, with ``:IFACE`` if ``iface``."""
        return targets.resolve(self, target, iface=iface)

    def target_ns(self, target: str) -> str:
        """The network namespace of ``target`` (the grammar without ``:IFACE``)."""
        return targets.resolve(self, target, iface=False).ns

    def exec(self, target: str, argv: Sequence[str], **kw) -> subprocess.CompletedProcess:
        return run_in(self.target_ns(target), argv, **kw)

    # -- pods (desired state goes to the store; the node's agent does the rest)
    def apply_pod(self, obj: dict, source: str = "<api>") -> str:
        """Create a pod from a podlab or Kubernetes manifest; returns kubectl's line ("pod/x created")."""
        from emulator.errors import ManifestError
        from emulator.state import events
        from emulator.lab import podspec
        docker = frozenset(n.name for n in self.nodes
                           if n.obj["metadata"].get("annotations", {}).get("podlab.io/runtime") == "docker")
        nodes = {n.name: max(ipaddress.ip_network(n.pod_cidr).num_addresses - 3, 0) for n in self.nodes
                 if n.name not in docker}
        counts = {n: sum(1 for e in _listdir(self.store.index_dir("pods", n)) if e.endswith(".json")) for n in nodes}
        req = podspec.parse(obj, source, nodes, counts, docker=docker)
        req = podspec.host_ports(req, self.store, nodes, counts)
        name, ns = req.pod.name, req.pod.namespace
        from emulator.state import namespaces
        if not namespaces.active(self.store, ns):
            gone = self.store.get("namespaces", ns) is None
            raise ManifestError(source, "metadata.namespace", f"namespace '{ns}' " + (
                "does not exist" if gone else "is being deleted"), f"create it first (`podlab create namespace "
                f"{ns}`), or choose one of: {', '.join(self.namespaces)}")
        existing = self.store.get("pods", name, ns)
        if existing is not None:
            if podspec.same_spec(existing, req.manifest):
                return f"pod/{name} unchanged"
            raise ManifestError(source, "metadata.name", f"pod '{name}' already exists with another spec (pod "
                                "specs are immutable)", f"run `podlab delete pod {name}` first, or use another name")
        with preparing_pod(self.name, req.manifest):  # with cluster DNS: its resolv.conf before its agent starts it
            self.store.put("pods", name, req.manifest)
        if req.pod.unschedulable:  # the NodePorts filter left no node: Pending, as the scheduler leaves it
            from emulator.state.manifests import unschedulable_status
            self.store.put_status("pods", name, unschedulable_status(req.pod), ns)
            events.emit(self.store.root, "pod", name, "FailedScheduling", req.pod.unschedulable, "default-scheduler",
                        "Warning", ns=ns)
            return f"pod/{name} created"
        events.emit(self.store.root, "pod", name, "Scheduled",
                    f"Successfully assigned {req.pod.namespace}/{name} to {req.pod.node}", "default-scheduler", ns=ns)
        return f"pod/{name} created"

    def wait_pod(self, name: str, timeout: float = 30, running: bool = True, namespace: str | None = None) -> dict:
        """Wait until the pod is Running (or, with running=False, until its agent reported anything)."""
        ns, name = split_ref(name, namespace)
        deadline = time.monotonic() + timeout
        while True:
            st = self.store.get_status("pods", name, ns) or {}
            if (st.get("phase") == "Running") if running else bool(st):
                return st
            if time.monotonic() > deadline:
                raise LabTimeoutError(f"pod {name} is not Running after {timeout:.0f}s: "
                                    f"{st.get('reason', 'no status')} {st.get('message', '')}".strip(), obj=name)
            time.sleep(0.005)

    def delete_pod(self, name: str, wait: bool = True, timeout: float = 30, namespace: str | None = None) -> None:
        """Delete a pod: its agent stops the containers, runs CNI DEL (the IP is released), removes the netns."""
        from emulator.state import events
        ns, name = split_ref(name, namespace)
        scheduled = bool(self.pod(name, ns).obj["spec"].get("nodeName"))
        self.store.delete("pods", name, ns)
        if not scheduled:  # never scheduled: no agent owns it, nothing was made for it
            self.store.delete("pods", name, ns, status=True)
        if not wait:
            return
        deadline = time.monotonic() + timeout
        while self.store.get_status("pods", name, ns) is not None:
            if time.monotonic() > deadline:
                raise LabTimeoutError(f"pod {name} was not removed within {timeout:.0f}s (is node agent running?)",
                                    obj=name)
            time.sleep(0.005)
        events.delete(self.store.root, "pod", name, ns)

    # -- agents
    def agent_pid(self, node: str) -> int | None:
        pf = read_pidfile(self.paths, node)
        return pf[0] if pf and alive(pf[0], pf[1]) else None

    def agent_stop(self, node: str, kill: bool = False) -> bool:
        """Stop a node's agent (the kubelet goes away; its pods keep running). Returns False if it was not running."""
        from emulator.proc import lifecycle
        self.node(node)
        pf = read_pidfile(self.paths, node)
        if not pf or not alive(pf[0], pf[1]):
            return False
        lifecycle.stop(pf[0], pf[1], grace=0 if kill else 3.0)
        return True

    def agent_start(self, node: str) -> int:
        """Start a node's agent (it reconciles with what exists: no pod is restarted without need)."""
        from emulator.agent.agent import spawn_forked
        self.node(node)
        pid = self.agent_pid(node)
        if pid:
            return pid
        try:
            spawn_forked(self.name, node)
        except OSError as e:  # the fork, its pipe or the log file
            raise ProcessError(f"cannot start the agent of {node}: {e.strerror or e}; see "
                               f"{self.paths.agent_log(node)}", obj=node) from None
        deadline = time.monotonic() + 10
        while (pid := self.agent_pid(node)) is None:  # its pid file is written once it has entered the node
            if time.monotonic() > deadline:
                raise ProcessError(f"the agent of {node} did not start; see {self.paths.agent_log(node)}", obj=node)
            time.sleep(0.01)
        return pid
