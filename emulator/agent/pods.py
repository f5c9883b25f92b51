"""One pod's sandbox lifecycle on its node: create the namespace, CNI ADD, start containers; and the reverse.

The pod's namespace name is derived from the lab and pod names (``<lab>-<pod>``) and every IPAM file names its
sandbox ID, so a crash at any point leaves nothing that cannot be found again without writing a status first
(one file write less per pod on the hot path): recovery looks for the namespace by name and releases IPAM
entries whose sandbox no status knows.
A failed ADD undoes its partial work (CNI DEL, namespace removed) and leaves the pod Pending with the reason, as
a kubelet reports ``ContainerCreating`` with the CNI error.
"""
from __future__ import annotations

import os
import secrets

from emulator.agent import containers
from emulator.cni.runtime import Runtime
from emulator.errors import CniError, PodlabError
from emulator.lab.manifests import now
from emulator.lab.paths import LabPaths
from emulator.netlink import netns
from emulator.topology import names


def waiting_status(pod: dict, node: str, host_ip: str, reason: str, message: str = "",
                   sandbox: dict | None = None) -> dict:
    cs = [{"name": c["name"], "image": c.get("image", ""), "ready": False, "restartCount": 0,
           "state": {"waiting": {"reason": reason, **({"message": message} if message else {})}}}
          for c in pod["spec"].get("containers", [])]
    st = {"name": pod["metadata"]["name"], "phase": "Pending", "nodeName": node, "uid": pod["metadata"].get("uid"), "hostIP": host_ip,
          "reason": reason, "message": message, "containerStatuses": cs,
          "conditions": [{"type": "Ready", "status": "False"}]}
    if sandbox:
        st["sandbox"] = sandbox
    return st


def start(paths: LabPaths, runtime: Runtime, pod: dict, node: str, host_ip: str,
          write_status: "callable") -> dict:
    """Run the pod; return its Running status (raise CniError/PodlabError with the pod left clean)."""
    name = pod["metadata"]["name"]
    ns_name = names.pod_ns(paths.lab, name)
    sandbox = {"id": secrets.token_hex(32), "netns": ns_name}
    if netns.exists(ns_name):
        netns.delete(ns_name)  # left by a crash of ours: the status above names it
    netns.create(ns_name)
    ns_path = netns.path(ns_name)
    fd = -1
    cstats: list[dict] = []
    try:
        result = runtime.add(sandbox["id"], ns_path, names.POD_IFNAME)
        sandbox["cniResult"] = result.to_dict()
        ip = result.pod_ip()
        fd = netns.open_fd(ns_name)
        env = {"PATH": os.environ.get("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
               "HOSTNAME": name, "POD_NAME": name, "POD_NAMESPACE": pod["metadata"].get("namespace", "default"),
               "POD_IP": ip or "", "NODE_NAME": node, "HOST_IP": host_ip}
        for c in pod["spec"].get("containers", []):
            argv = containers.resolve(c.get("image", "pause"), c.get("command", []), c.get("args", []))
            cenv = {**env, **{e["name"]: str(e.get("value", "")) for e in c.get("env", [])}}
            pid, started = containers.spawn(fd, argv, paths.container_log(name, c["name"]), cenv)
            cstats.append({"name": c["name"], "image": c.get("image", ""), "ready": True, "restartCount": 0,
                           "state": {"running": {"startedAt": now()}}, "pid": pid, "pidStart": started,
                           "command": argv})
    except BaseException:
        stop_processes(cstats)
        teardown(runtime, sandbox, name)
        raise
    finally:
        if fd >= 0:
            os.close(fd)
    st = {"name": name, "phase": "Running", "nodeName": node, "uid": pod["metadata"].get("uid"), "hostIP": host_ip,
          "podIP": ip, "podIPs": [{"ip": ip}], "startTime": now(), "containerStatuses": cstats,
          "conditions": [{"type": "Ready", "status": "True"}], "sandbox": sandbox}
    write_status(st)
    return st


def stop_processes(cstats: list[dict]) -> None:
    for c in cstats:
        if c.get("pid"):
            containers.stop(c["pid"], c.get("pidStart"))


def teardown(runtime: Runtime, sandbox: dict, pod: str) -> None:
    """CNI DEL and namespace removal for a sandbox record (idempotent)."""
    ns_name = sandbox.get("netns")
    if not ns_name:
        return
    try:
        runtime.delete(sandbox["id"], netns.path(ns_name), names.POD_IFNAME, sandbox.get("cniResult"))
    except CniError:
        pass  # not configured (yet/any more): removing the namespace below still removes the veth pair
    netns.delete(ns_name)


def stop(runtime: Runtime, status: dict, pod: str) -> None:
    stop_processes(status.get("containerStatuses", []))
    teardown(runtime, status.get("sandbox") or {}, pod)


__all__ = ["start", "stop", "teardown", "waiting_status", "PodlabError"]
