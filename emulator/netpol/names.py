"""Names in a node's nftables ruleset, after sig-network's kube-network-policies (and kube-proxy's naming style).

From kube-network-policies (``pkg/dataplane/controller.go``): the table ``inet kube-network-policies``, its base
chain ``postrouting`` (filter hook postrouting, priority ``srcnat - 5``: after Service DNAT, before SNAT) and the
set ``podips-v4`` of this node's pods that some policy selects. kube-network-policies sends the first packet of
such a connection to userspace (NFQUEUE 100) where its engine runs "egress, then ingress"; podlab renders that
engine into chains instead (this kernel has no nft ``queue``, and no userspace belongs on the packet path):
``egress`` and ``ingress`` (the two pipelines), with the sets ``egress-isolated-v4`` and ``ingress-isolated-v4``,
and per policy the chains ``egress-<H>-<ns>/<name>`` and ``ingress-<H>-<ns>/<name>``, the set
``pods-<H>-<ns>/<name>`` (this node's pods it selects), ``peers-<H>-<ns>/<name>/<direction>/<i>`` (the pods its
rule *i* admits) and ``ports-<H>-<ns>/<name>/<direction>/<i>`` (its named ports resolved: pod IP . protocol .
port). ``<H>`` is 8 characters of base32(sha256(``<ns>/<name>``)), as kube-proxy's nftables names prefix a hash.
"""
from __future__ import annotations

import base64
import functools
import hashlib

TABLE = "kube-network-policies"
FAMILY = "inet"
T = f"{FAMILY} {TABLE}"
BASE_CHAIN = "postrouting"
BASE_PRIORITY = "srcnat - 5"
EGRESS_CHAIN, INGRESS_CHAIN = "egress", "ingress"
PODIPS = "podips-v4"
ISOLATED = {"Ingress": "ingress-isolated-v4", "Egress": "egress-isolated-v4"}
NAME_MAX = 256  # NFT_NAME_MAXLEN (and knftables' limit)
_BASE_MAX = NAME_MAX - 40  # room for a prefix and a "/egress/NN" suffix
COMMENT_MAX = 128


@functools.lru_cache(maxsize=65536)
def base(namespace: str, name: str) -> str:
    ref = f"{namespace}/{name}"
    h = base64.b32encode(hashlib.sha256(ref.encode()).digest()).decode()[:8]
    full = f"{h}-{ref}"
    return full if len(full) <= _BASE_MAX else full[:_BASE_MAX - 3] + "..."


def policy_chain(direction: str, namespace: str, name: str) -> str:
    return f"{direction.lower()}-{base(namespace, name)}"


def selected_set(namespace: str, name: str) -> str:
    return f"pods-{base(namespace, name)}"


def peers_set(direction: str, namespace: str, name: str, rule: int) -> str:
    return f"peers-{base(namespace, name)}/{direction.lower()}/{rule}"


def ports_set(direction: str, namespace: str, name: str, rule: int) -> str:
    return f"ports-{base(namespace, name)}/{direction.lower()}/{rule}"


def comment(text: str) -> str:
    """An nft comment: at most 128 bytes, no double quotes."""
    text = text.replace('"', "'")
    return text if len(text.encode()) <= COMMENT_MAX else text.encode()[:COMMENT_MAX - 3].decode(errors="ignore") + "..."
