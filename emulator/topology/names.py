"""Names of the kernel objects a lab owns, and the rules that keep them legal.

Namespaces live in ``/run/netns`` and carry the lab name so that two labs never collide: ``<lab>-<node>``,
``<lab>-<pod>``, ``<lab>-underlay``, ``<lab>-external``. Interface names only need to be unique
inside one namespace, so inside a node they are the real ones (``eth0``, ``cni0``, ``flannel.1``,
``veth<8 hex>``) and in the underlay namespace each node's port is named after the node (hence node names must
fit in an interface name: at most 15 characters). Ownership is never inferred from these names: the lab's state
record lists what it created.
"""
from __future__ import annotations

import hashlib
import re

IFNAMSIZ = 15  # usable characters of an interface name
MAX_LAB_NAME = 24
MAX_OBJECT_NAME = 63
#: DNS-1123 label, as Kubernetes requires for node and pod names.
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
RESERVED = ("underlay", "external", "dns", "gw")

UNDERLAY_BRIDGE = "lan0"
NODE_UPLINK = "eth0"
CNI_BRIDGE = "cni0"
POD_IFNAME = "eth0"
VXLAN_DEVICE = "flannel.1"
CNI_NETWORK = "cbr0"


def node_ns(lab: str, node: str) -> str:
    return f"{lab}-{node}"


def pod_ns(lab: str, pod: str) -> str:
    return f"{lab}-{pod}"


def underlay_ns(lab: str) -> str:
    return f"{lab}-underlay"


def external_ns(lab: str) -> str:
    """The "internet" host of a lab with an external network (``emulator.external``)."""
    return f"{lab}-external"


def host_veth(container_id: str, ifname: str = POD_IFNAME) -> str:
    """Host-side veth name derived from the sandbox, like the CNI bridge plugin's ``veth<8 hex>``."""
    return "veth" + hashlib.sha256(f"{container_id}/{ifname}".encode()).hexdigest()[:8]


def check_name(name: object, kind: str, max_len: int = MAX_OBJECT_NAME) -> str | None:
    """Return why ``name`` cannot be a ``kind`` name (node, pod, lab), or None if it can."""
    if not isinstance(name, str) or not name:
        return "must be a non-empty string"
    if len(name) > max_len:
        return f"is {len(name)} characters long; a {kind} name may have at most {max_len}"
    if not DNS_LABEL.match(name):
        return "must be lower-case letters, digits and '-', starting and ending with a letter or digit"
    return None


DOCKER_BRIDGE = "docker0"


def container_ns(lab: str, node: str, container: str) -> str:
    """A Docker container's namespace, ``<lab>-<node>.<name>``: container names are unique per node only, and the
    dot (never in a DNS label) keeps it apart from every pod's and node's ``<lab>-<name>``."""
    return f"{lab}-{node}.{container}"


def container_key(node: str, container: str) -> str:
    """A container's name in the lab's store and in targets: ``<node>.<name>``."""
    return f"{node}.{container}"


def docker_veth(node: str, container: str) -> str:
    """The host end of a container's cable on docker0: ``veth`` + 7 hex digits, as Docker names them."""
    return "veth" + hashlib.sha256(f"docker/{node}/{container}".encode()).hexdigest()[:7]
