"""The names of a namespace's nftables chains, asked of the kernel directly (one nfnetlink dump, no library).

kube-proxy's health check in iptables mode only needs to know whether its ``KUBE-PROXY-CANARY`` chains still exist
in the ``ip mangle``/``ip nat``/``ip filter`` tables (iptables-nft keeps them as nftables tables of family
``ip``). Asking libnftables (``libnft``) costs each kube-proxy ~4 MB of private memory: the library and its
dependencies loaded and relocated in the process (~2 MB) and the cache its first listing builds (~2 MB); at 50
nodes that was 200 MB, 40 kB per pod of a 5,000-pod lab. The same answer is one ``NFT_MSG_GETCHAIN`` dump on a
``NETLINK_NETFILTER`` socket, each reply naming a chain's table and name, read here in a few lines.

``chains(family)`` returns ``{"ip nat": {"KUBE-SERVICES", ...}, ...}`` like ``backends.list_chains`` (which
parses ``nft list chains ip``); it raises ``OSError`` when the kernel has no nfnetlink for nftables (the caller
then falls back to libnftables). The socket is opened in the calling thread's network namespace.
"""
from __future__ import annotations

import os
import socket
import struct

NETLINK_NETFILTER = 12
NFNL_SUBSYS_NFTABLES = 10
NFT_MSG_GETCHAIN = 4
NFT_MSG_NEWCHAIN = 3
NFTA_CHAIN_TABLE = 1
NFTA_CHAIN_NAME = 3
NFPROTO_IPV4 = 2
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
_HDR = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
_GEN = struct.Struct("=BBH")  # nfgenmsg: family, version, res_id (big endian, 0 here)
_ATTR = struct.Struct("=HH")
FAMILY_NAMES = {NFPROTO_IPV4: "ip"}


def _attrs(data: bytes, off: int) -> dict[int, bytes]:
    out = {}
    while off + _ATTR.size <= len(data):
        length, kind = _ATTR.unpack_from(data, off)
        if length < _ATTR.size:
            break
        out[kind & 0x3FFF] = data[off + _ATTR.size:off + length]
        off += (length + 3) & ~3
    return out


def _name(value: bytes) -> str:
    return value.split(b"\0", 1)[0].decode(errors="replace")


def parse(data: bytes, prefix: str, out: dict[str, set[str]]) -> bool:
    """Add the chains of the nfnetlink messages in ``data`` to ``out`` (``"<prefix> <table>"`` -> names); True
    once the dump's end is in it (``OSError`` for an error the kernel reports)."""
    off = 0
    while off + _HDR.size <= len(data):
        length, kind, _flags, _seq, _pid = _HDR.unpack_from(data, off)
        if length < _HDR.size:
            raise OSError("malformed nfnetlink reply")
        if kind == NLMSG_DONE:
            return True
        if kind == NLMSG_ERROR:
            err = -struct.unpack_from("=i", data, off + _HDR.size)[0]
            if err:
                raise OSError(err, f"nfnetlink chain dump: {os.strerror(err)}")
            return True
        if kind & 0xFF == NFT_MSG_NEWCHAIN:
            a = _attrs(data[:off + length], off + _HDR.size + _GEN.size)
            if NFTA_CHAIN_TABLE in a and NFTA_CHAIN_NAME in a:
                out.setdefault(f"{prefix} {_name(a[NFTA_CHAIN_TABLE])}", set()).add(_name(a[NFTA_CHAIN_NAME]))
        off += (length + 3) & ~3
    return False


def chains(family: int = NFPROTO_IPV4) -> dict[str, set[str]]:
    """{"<family> <table>": {chain, ...}} of every nftables chain of ``family`` in this namespace."""
    prefix = FAMILY_NAMES.get(family, str(family))
    out: dict[str, set[str]] = {}
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_NETFILTER) as s:
        s.bind((0, 0))
        body = _GEN.pack(family, 0, 0)
        s.send(_HDR.pack(_HDR.size + len(body), (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETCHAIN,
                         NLM_F_REQUEST | NLM_F_DUMP, 1, 0) + body)
        while not parse(s.recv(1 << 16), prefix, out):
            pass
    return out
