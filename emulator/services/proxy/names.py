"""kube-proxy's chain names, computed as kube-proxy computes them (so they match a real node's).

iptables mode: ``KUBE-SVC-``/``KUBE-EXT-``/``KUBE-SVL-``/``KUBE-FW-`` + the first 16 characters of
base32(sha256(servicePortName + protocol)), and ``KUBE-SEP-`` + 16 characters of base32(sha256(servicePortName +
protocol + "ip:port")), where servicePortName is ``namespace/name:portname`` (``namespace/name`` for an unnamed
port) and protocol is lower case. The well-known results are a check: ``kube-system/kube-dns:dns`` over udp is
``KUBE-SVC-TCOU7JCQXEZGVUNU`` and ``default/kubernetes:https`` over tcp ``KUBE-SVC-NPX46M4PTMTKRN6Y``.

nftables mode (table ``kube-proxy``): readable names prefixed by 8 characters of the hash of the name itself:
``service-<H>-<ns>/<name>/<proto>/<port>``, ``external-...``, ``endpoint-<H>-<ns>/<name>/<proto>/<port>__<ip>/
<port>`` and ``affinity-...`` sets.
"""
from __future__ import annotations

import base64
import functools
import hashlib

from emulator.services.proxy.state import Endpoint, SvcPort

NFT_NAME_MAX = 256  # knftables' NameLengthMax
NFT_BASE_MAX = NFT_NAME_MAX - 16


@functools.lru_cache(maxsize=65536)
def _b32(text: str) -> str:
    return base64.b32encode(hashlib.sha256(text.encode()).digest()).decode()


def port_proto_hash(spn: str, protocol: str) -> str:
    return _b32(spn + protocol)[:16]


def svc_chain(p: SvcPort) -> str:
    return "KUBE-SVC-" + port_proto_hash(p.spn, p.protocol)


def svl_chain(p: SvcPort) -> str:
    return "KUBE-SVL-" + port_proto_hash(p.spn, p.protocol)


def ext_chain(p: SvcPort) -> str:
    return "KUBE-EXT-" + port_proto_hash(p.spn, p.protocol)


def sep_chain(p: SvcPort, ep: Endpoint) -> str:
    return "KUBE-SEP-" + _b32(p.spn + p.protocol + ep.addr)[:16]


SERVICE_CHAIN_PREFIXES = ("KUBE-SVC-", "KUBE-SVL-", "KUBE-EXT-", "KUBE-FW-", "KUBE-SEP-")


def is_service_chain(name: str) -> bool:
    return name.startswith(SERVICE_CHAIN_PREFIXES)


def _hash_and_truncate(name: str) -> str:
    full = _b32(name)[:8] + "-" + name
    return full if len(full) <= NFT_BASE_MAX else full[:NFT_BASE_MAX - 3] + "..."


def nft_base(p: SvcPort) -> str:
    return _hash_and_truncate(f"{p.namespace}/{p.name}/{p.protocol}/{p.port_name}")


def nft_endpoint_base(p: SvcPort, ep: Endpoint) -> str:
    return _hash_and_truncate(f"{p.namespace}/{p.name}/{p.protocol}/{p.port_name}__{ep.ip}/{ep.port}")


def nft_service(p: SvcPort) -> str:
    return "service-" + nft_base(p)


def nft_local(p: SvcPort) -> str:
    return "local-" + nft_base(p)


def nft_external(p: SvcPort) -> str:
    return "external-" + nft_base(p)


def nft_endpoint(p: SvcPort, ep: Endpoint) -> str:
    return "endpoint-" + nft_endpoint_base(p, ep)


def nft_affinity(p: SvcPort, ep: Endpoint) -> str:
    return "affinity-" + nft_endpoint_base(p, ep)
