"""kube-proxy's chain listing by nfnetlink (``services.proxy.nfchains.parse``) on messages built as the kernel sends
them: a NEWCHAIN per chain (nfgenmsg, then NFTA_CHAIN_TABLE / NFTA_CHAIN_HANDLE / NFTA_CHAIN_NAME attributes,
padded to 4 bytes), several in one datagram, the dump ended by NLMSG_DONE or an error."""
from __future__ import annotations

import errno
import struct

import pytest

from emulator.services.proxy import nfchains as nf


def _attr(kind: int, value: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(value), kind) + value
    return raw + b"\0" * (-len(raw) % 4)


def _chain(table: str, name: str) -> bytes:
    body = struct.pack("=BBH", nf.NFPROTO_IPV4, 0, 0) + _attr(nf.NFTA_CHAIN_TABLE, table.encode() + b"\0") + \
        _attr(2, struct.pack(">Q", 7)) + _attr(nf.NFTA_CHAIN_NAME, name.encode() + b"\0")
    return struct.pack("=IHHII", 16 + len(body), (nf.NFNL_SUBSYS_NFTABLES << 8) | nf.NFT_MSG_NEWCHAIN, 2, 1, 0) + body


def _done() -> bytes:
    return struct.pack("=IHHII", 20, nf.NLMSG_DONE, 2, 1, 0) + struct.pack("=i", 0)


def test_chains_of_several_tables_in_one_datagram_then_done() -> None:
    out: dict[str, set[str]] = {}
    assert nf.parse(_chain("nat", "KUBE-PROXY-CANARY") + _chain("nat", "KUBE-SERVICES"), "ip", out) is False
    assert nf.parse(_chain("mangle", "KUBE-PROXY-CANARY") + _done(), "ip", out) is True
    assert out == {"ip nat": {"KUBE-PROXY-CANARY", "KUBE-SERVICES"}, "ip mangle": {"KUBE-PROXY-CANARY"}}


def test_an_error_the_kernel_reports_is_raised() -> None:
    err = struct.pack("=IHHII", 36, nf.NLMSG_ERROR, 0, 1, 0) + struct.pack("=i", -errno.EPERM) + b"\0" * 16
    with pytest.raises(OSError) as e:
        nf.parse(err, "ip", {})
    assert e.value.errno == errno.EPERM
