"""One pod's sandbox lifecycle on its node: create the namespace, CNI ADD, start containers; and the reverse.

The pod's namespace name is derived from the lab, pod and Kubernetes namespace names (``<lab>-<pod>``, or
``<lab>-<pod>.<namespace>`` outside ``default``: ``names.pod_ns``) and every IPAM file names its
sandbox ID, so a crash at any point leaves nothing that cannot be found again without writing a status first
(one file write less per pod on the hot path): recovery looks for the namespace by name and releases IPAM
entries whose sandbox no status knows. A failed ADD undoes its partial work (CNI DEL, namespace removed) and
leaves the pod Pending with the reason, as a kubelet reports ``ContainerCreating`` with the CNI error.
"""
from __future__ import annotations

import json
import os
import secrets
from typing import Callable

from emulator.agent import images
from emulator.agent.podenv import attach_socket, container_env  # noqa: F401  (re-exported)
from emulator.proc import lifecycle
from emulator.proc.spawn import spawn
from emulator.cni.runtime import Runtime
from emulator.errors import CniError
from emulator.state import events
from emulator.state.manifests import now
from emulator.state.paths import LabPaths
from emulator.state.resolv import shared_dir
from emulator.netlink import netns
from emulator.topology import names


def waiting_status(pod: dict, node: str, host_ip: str, reason: str, message: str = "") -> dict:
    cs = [{"name": c["name"], "image": c.get("image", ""), "ready": False, "restartCount": 0,
           "state": {"waiting": {"reason": reason, **({"message": message} if message else {})}}}
          for c in pod["spec"].get("containers", [])]
    return {"name": pod["metadata"]["name"], "namespace": pod["metadata"].get("namespace") or "default",
            "phase": "Pending", "nodeName": node, "uid": pod["metadata"].get("uid"),
            "hostIP": host_ip, "reason": reason, "message": message, "containerStatuses": cs,
            "conditions": [{"type": "Ready", "status": "False"}]}


#: the pod annotation that carries a pod's link shape (written from the topology's ``pods[].link``)
LINK_ANNOTATION = "podlab.io/link"


def capability_args(pod: dict) -> dict:
    """What the kubelet hands to plugins with matching ``capabilities`` (libcni's CapabilityArgs): the pod's
    ``hostPort`` s as ``portMappings`` for ``portmap``, and its link shape for ``podlab-link`` (the annotation's
    JSON), as a kubelet hands its bandwidth annotations to ``bandwidth``."""
    out: dict = {}
    ports = [{"hostPort": p["hostPort"], "containerPort": p["containerPort"],
              "protocol": str(p.get("protocol", "TCP")).lower()}
             for c in pod["spec"].get("containers", []) for p in c.get("ports", []) if p.get("hostPort")]
    if ports:  # the kubelet's (and containerd's) portMappings, for the ``portmap`` plugin
        out["portMappings"] = ports
    raw = (pod["metadata"].get("annotations") or {}).get(LINK_ANNOTATION)
    if not raw:
        return out
    try:
        out["podlabLink"] = json.loads(raw)
    except ValueError:
        out["podlabLink"] = {"invalid": raw}  # refused by the plugin with its own message
    return out


def journal(paths: LabPaths, node: str, sandbox: str, pid: int, started: int | None) -> None:
    """Record a container process the moment it exists (one O_APPEND write), before any status names it, so a
    crash between its start and the pod's status leaves it findable by its recorded PID."""
    fd = os.open(paths.container_journal(node), os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, f"{sandbox} {pid} {started}\n".encode())
    finally:
        os.close(fd)


def read_journal(paths: LabPaths, node: str) -> list[tuple[str, int, int | None]]:
    try:
        with open(paths.container_journal(node)) as f:
            rows = [line.split() for line in f if line.strip()]
    except FileNotFoundError:
        return []
    return [(r[0], int(r[1]), None if r[2] == "None" else int(r[2])) for r in rows if len(r) == 3]


def run_container(paths: LabPaths, pod: dict, c: dict, fd: int, ns_name: str, env: dict[str, str],
                  node: str = "", sandbox: str = "") -> dict:
    """Start one container; return its containerStatus entry. A command that cannot be started (not on $PATH,
    not executable) is the container's failure, not the sandbox's: the entry is waiting with reason
    ``RunContainerError`` and the runtime's message, and the pod keeps its sandbox and IP, as with a kubelet."""
    argv = images.resolve(c.get("image", "pause"), c.get("command", []), c.get("args", []), c.get("ports"))
    meta = pod["metadata"]
    try:
        exe, argv = images.executable(argv)
        if c.get("stdin") or c.get("tty"):
            exe, argv = images.attachable(exe, argv, attach_socket(paths, pod, c["name"]), bool(c.get("tty")),
                                          bool(c.get("stdinOnce")))
        k8s_ns = meta.get("namespace") or "default"
        pid, started = spawn(fd, exe, argv, paths.container_log(meta["name"], c["name"], k8s_ns), env, ns_name,
                             etc_fallback=str(shared_dir(paths.lab, k8s_ns)))
    except OSError as e:
        reason = "executable file not found in $PATH" if isinstance(e, FileNotFoundError) else \
            (e.strerror or str(e)).lower()
        return {"name": c["name"], "image": c.get("image", ""), "ready": False, "restartCount": 0,
                "state": {"waiting": {"reason": "RunContainerError", "message": f'exec: "{argv[0]}": {reason}'}},
                "pid": None, "pidStart": None, "command": argv}
    if node:
        journal(paths, node, sandbox, pid, started)
    return {"name": c["name"], "image": c.get("image", ""), "ready": True, "restartCount": 0,
            "state": {"running": {"startedAt": now()}}, "pid": pid, "pidStart": started, "command": argv}


def start(paths: LabPaths, runtime: Runtime, pod: dict, node: str, host_ip: str,
          write_status: Callable[[dict], None]) -> dict:
    """Run the pod; return its Running status (raise CniError/PodlabError with the pod left clean)."""
    name, k8s_ns = pod["metadata"]["name"], pod["metadata"].get("namespace") or "default"
    if pod["spec"].get("hostNetwork"):
        return start_host_network(paths, pod, node, host_ip, write_status)
    ns_name = names.pod_ns(paths.lab, name, k8s_ns)
    sandbox = {"id": secrets.token_hex(32), "netns": ns_name}
    if netns.exists(ns_name):
        netns.delete(ns_name)  # left by a crash of ours between creating it and recording it
    netns.create(ns_name)
    fd = -1
    cstats: list[dict] = []
    caps = capability_args(pod)
    if "portMappings" in caps:  # DEL gets them again, as libcni's runtimes pass them on DEL (portmap needs them)
        sandbox["portMappings"] = caps["portMappings"]
    try:
        result = runtime.add(sandbox["id"], netns.path(ns_name), names.POD_IFNAME, capability_args=caps)
        sandbox["cniResult"] = result.to_dict()
        ip = result.pod_ip() or ""
        fd = netns.open_fd(ns_name)
        for c in pod["spec"].get("containers", []):
            cstats.append(run_container(paths, pod, c, fd, ns_name, container_env(pod, node, host_ip, ip, c),
                                        node, sandbox["id"]))
    except BaseException:
        stop_processes(cstats)
        teardown(runtime, sandbox, name)
        raise
    finally:
        if fd >= 0:
            os.close(fd)
    st = {"name": name, "namespace": k8s_ns, "phase": pod_phase(cstats), "sandboxReady": True, "nodeName": node,
          "uid": pod["metadata"].get("uid"), "hostIP": host_ip,
          "podIP": ip, "podIPs": [{"ip": ip}], "startTime": now(), "containerStatuses": cstats,
          "conditions": [{"type": "Ready", "status": "True" if all(c["ready"] for c in cstats) else "False"}],
          "sandbox": sandbox}
    write_status(st)
    prefix = (sandbox["cniResult"].get("ips") or [{}])[0].get("address", ip)
    events.emit_many(paths.store, "pod", name,
                     [("AddedInterface", f"Add eth0 [{prefix}] from {names.CNI_NETWORK}", "Normal")]
                     + [("Started", f"Started container {c['name']} (pid {c['pid']})", "Normal") for c in cstats],
                     f"kubelet, {node}", k8s_ns)
    return st


def start_host_network(paths: LabPaths, pod: dict, node: str, host_ip: str,
                       write_status: Callable[[dict], None]) -> dict:
    """A ``hostNetwork: true`` pod: no sandbox namespace and no CNI call; its containers run in the node's own
    namespace and the pod's IP is the node's (as with kube-proxy or a CNI agent's DaemonSet pod)."""
    name, k8s_ns = pod["metadata"]["name"], pod["metadata"].get("namespace") or "default"
    ns_name = names.node_ns(paths.lab, node)
    sandbox = {"id": secrets.token_hex(32), "netns": ns_name, "hostNetwork": True}
    cstats: list[dict] = []
    fd = netns.open_fd(ns_name)
    try:
        for c in pod["spec"].get("containers", []):
            env = {**container_env(pod, node, host_ip, host_ip, c), "HOSTNAME": node}  # the node's hostname
            cstats.append(run_container(paths, pod, c, fd, ns_name, env, node, sandbox["id"]))
    except BaseException:
        stop_processes(cstats)
        raise
    finally:
        os.close(fd)
    st = {"name": name, "namespace": k8s_ns, "phase": pod_phase(cstats), "sandboxReady": True, "nodeName": node,
          "uid": pod["metadata"].get("uid"), "hostIP": host_ip, "podIP": host_ip, "podIPs": [{"ip": host_ip}],
          "startTime": now(), "containerStatuses": cstats, "sandbox": sandbox,
          "conditions": [{"type": "Ready", "status": "True" if all(c["ready"] for c in cstats) else "False"}]}
    write_status(st)
    events.emit_many(paths.store, "pod", name, [("Started", f"Started container {c['name']} (pid {c['pid']})",
                                                 "Normal") for c in cstats], f"kubelet, {node}", k8s_ns)
    return st


def pod_phase(cstats: list[dict]) -> str:
    """The pod's phase from its containers, as the kubelet computes it: Pending while a container waits that never
    ran (RunContainerError on the first try); once every container has terminated for good (restartPolicy Never,
    or OnFailure after a success) Succeeded if all exited 0, else Failed; else Running."""
    for c in cstats:
        if "waiting" in c.get("state", {}) and not c.get("lastState"):
            return "Pending"
    done = [c["state"]["terminated"] for c in cstats if "terminated" in c.get("state", {})]
    if cstats and len(done) == len(cstats):
        return "Succeeded" if all(t.get("exitCode") == 0 for t in done) else "Failed"
    return "Running"


def stop_processes(cstats: list[dict]) -> None:
    for c in cstats:
        if c.get("pid"):
            lifecycle.stop(c["pid"], c.get("pidStart"), group=True)  # with what it started (a shell's sleep)


def teardown(runtime: Runtime, sandbox: dict, pod: str) -> None:
    """CNI DEL and namespace removal for a sandbox record (idempotent); a hostNetwork pod's is its node's: kept."""
    ns_name = sandbox.get("netns")
    if not ns_name or sandbox.get("hostNetwork"):
        return
    try:
        runtime.delete(sandbox["id"], netns.path(ns_name), names.POD_IFNAME, sandbox.get("cniResult"),
                       capability_args={"portMappings": sandbox.get("portMappings", [])})
    except CniError:
        pass  # not configured (any more): removing the namespace still removes the veth; IPAM GC frees the IP
    netns.delete(ns_name)


def stop(runtime: Runtime, status: dict, pod: str) -> None:
    stop_processes(status.get("containerStatuses", []))
    teardown(runtime, status.get("sandbox") or {}, pod)
