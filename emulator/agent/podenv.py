"""What a pod's containers are given (their environment) and where an attachable container's holder listens.

Apart from ``agent.pods`` so that the API server (``kubectl exec``/``attach``) can compute both without importing
the CNI plugins and the netlink stack (pyroute2: 13 MB of private memory in every process that imports it).
"""
from __future__ import annotations

import hashlib
import os

from emulator.state.paths import LabPaths


def container_env(pod: dict, node: str, host_ip: str, ip: str, c: dict) -> dict[str, str]:
    name = pod["metadata"]["name"]
    env = {"PATH": os.environ.get("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
           "HOSTNAME": name, "POD_NAME": name, "POD_NAMESPACE": pod["metadata"].get("namespace", "default"),
           "POD_IP": ip, "NODE_NAME": node, "HOST_IP": host_ip}
    return {**env, **{e["name"]: str(e.get("value", "")) for e in c.get("env", [])}}


def attach_socket(paths: LabPaths, pod: dict, container: str) -> str:
    """Where the holder of an attachable container (``stdin``/``tty``, ``emulator.images.attachable``) listens:
    named by the pod's uid, so a pod made again under the same name never meets the old one's socket."""
    key = f"{pod['metadata'].get('uid', '')}/{pod['metadata']['name']}/{container}"
    return str(paths.root / "attach" / (hashlib.sha256(key.encode()).hexdigest()[:20] + ".sock"))
