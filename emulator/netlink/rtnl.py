"""A batching rtnetlink socket built on pyroute2's message classes.

pyroute2 encodes and decodes every message; this module only adds what the hot paths need and pyroute2's
``IPRoute`` does not give cheaply: a socket opened *inside* a namespace by a thread that is there (``IPRoute(netns=)``
forks a helper per socket), and batches — many requests written in one ``send`` and their acknowledgements read
back together. A pod needs about six requests; sent as two batches they cost two round trips instead of six.
Errors come back as ``NetlinkError`` carrying the kernel's errno and the name of the object the request was for.
"""
from __future__ import annotations

import errno as errnos
import os
import socket
import struct
from dataclasses import dataclass
from typing import Iterable, Iterator

from pyroute2.netlink import (NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_ECHO, NLM_F_EXCL, NLM_F_REPLACE,
                              NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR, nlmsg)
from pyroute2.netlink.rtnl import RTM_GETLINK
from pyroute2.netlink.rtnl.marshal import MarshalRtnl

from emulator.errors import NetlinkError
from emulator.netlink import netns

NETLINK_ROUTE = 0
CREATE = NLM_F_CREATE | NLM_F_EXCL
REPLACE = NLM_F_CREATE | NLM_F_REPLACE
_HDR = struct.Struct("=IHHII")


@dataclass
class Request:
    """One request of a batch: a pyroute2 message, its type, extra flags, the object named in errors."""

    msg: nlmsg | None
    type: int
    flags: int = 0
    obj: str = ""
    ok_errnos: tuple[int, ...] = ()  # errnos that count as success (e.g. EEXIST for idempotent adds)
    raw: bytes | None = None  # already encoded (see ``templates``): only the header's flags and sequence change
    echo: bool = False  # ask the kernel to echo the object made (NLM_F_ECHO); the message lands in ``reply``
    reply: bytes | None = None


class Rtnl:
    """An rtnetlink socket bound to one namespace for its life."""

    def __init__(self, sock: socket.socket | None = None, label: str = "") -> None:
        self.sock = sock or socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
        self.sock.bind((0, 0))
        self.label = label
        self._seq = 0
        self._marshal = MarshalRtnl()

    @classmethod
    def in_ns(cls, name_or_fd: str | int) -> "Rtnl":
        label = name_or_fd if isinstance(name_or_fd, str) else f"fd {name_or_fd}"
        sock = netns.socket_in(name_or_fd, socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
        return cls(sock, label=label)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "Rtnl":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _encode(self, req: Request, extra_flags: int) -> tuple[int, bytes]:
        self._seq += 1
        if req.echo:
            extra_flags |= NLM_F_ECHO
        if req.raw is not None:
            data = bytearray(req.raw)
            struct.pack_into("=HHI", data, 4, req.type, NLM_F_REQUEST | extra_flags | req.flags, self._seq)
            return self._seq, bytes(data)
        m = req.msg
        m["header"]["type"] = req.type
        m["header"]["flags"] = NLM_F_REQUEST | extra_flags | req.flags
        m["header"]["sequence_number"] = self._seq
        m.encode()
        return self._seq, m.data

    def batch(self, requests: Iterable[Request]) -> None:
        """Send every request at once, wait for every ack; raise the first failure after reading them all."""
        reqs = list(requests)
        if not reqs:
            return
        by_seq: dict[int, Request] = {}
        chunks = []
        for r in reqs:
            seq, data = self._encode(r, NLM_F_ACK)
            by_seq[seq] = r
            chunks.append(data)
        self.sock.sendall(b"".join(chunks))
        first: NetlinkError | None = None
        pending = set(by_seq)
        for mtype, seq, msg in self._replies(pending, 1 << 20):
            r = by_seq[seq]
            if mtype == NLMSG_ERROR:
                pending.discard(seq)
                err = -struct.unpack_from("=i", msg, 16)[0]
                if err and err not in r.ok_errnos and first is None:
                    first = NetlinkError(f"{self.label}: {r.obj or 'request'}: {os.strerror(err)}",
                                         obj=r.obj or self.label, errno=err)
            elif r.echo:
                r.reply = msg
        if first is not None:
            raise first

    def _replies(self, pending: set[int], bufsize: int = 1 << 16) -> Iterator[tuple[int, int, bytes]]:
        """The kernel's messages for the sequence numbers in ``pending`` as (type, seq, message bytes), read until
        the caller has emptied ``pending`` (the one place netlink replies are split into messages)."""
        while pending:
            data = self.sock.recv(bufsize)
            off = 0
            while off + 16 <= len(data):
                length, mtype, _flags, seq, _pid = _HDR.unpack_from(data, off)
                if seq in pending:
                    yield mtype, seq, data[off:off + length]
                off += (length + 3) & ~3
                if length == 0:
                    break

    def link_index(self, name: str) -> int:
        """The index of link ``name``, read from the reply's fixed ifinfomsg header (no attribute decoding)."""
        from emulator.netlink.templates import fast
        from emulator.netlink.msgs import link_get
        seq, data = self._encode(fast("link_get", lambda name: Request(link_get(name), RTM_GETLINK), name=name), 0)
        self.sock.sendall(data)
        for mtype, _seq, msg in self._replies({seq}):
            if mtype == NLMSG_ERROR:
                err = -struct.unpack_from("=i", msg, 16)[0]
                raise NetlinkError(f"{self.label}: {name}: {os.strerror(err)}", obj=name, errno=err)
            return struct.unpack_from("=i", msg, 20)[0]
        raise NetlinkError(f"{self.label}: {name}: no reply", obj=name)

    def query(self, msg: nlmsg, mtype: int, dump: bool = False, obj: str = "") -> list[nlmsg]:
        """A GET request (or a dump) and its decoded replies."""
        seq, data = self._encode(Request(msg, mtype), NLM_F_DUMP if dump else 0)
        self.sock.sendall(data)
        out: list[nlmsg] = []
        while True:
            buf = self.sock.recv(1 << 20)
            done = False
            for m in self._marshal.parse(buf):
                if m["header"]["sequence_number"] != seq:
                    continue
                mt = m["header"]["type"]
                if mt == NLMSG_DONE:
                    done = True
                elif mt == NLMSG_ERROR:
                    err = m["header"].get("error")
                    code = abs(getattr(err, "code", 0) or 0) if err is not None else 0
                    if code:
                        raise NetlinkError(f"{self.label}: {obj or 'query'}: {os.strerror(code)}",
                                           obj=obj or self.label, errno=code)
                    done = True
                else:
                    out.append(m)
                    if not dump:
                        done = True
            if done:
                return out


def ok_exists() -> tuple[int, ...]:
    return (errnos.EEXIST,)


def ok_missing() -> tuple[int, ...]:
    return (errnos.ENOENT, errnos.ESRCH, errnos.ENODEV, errnos.EADDRNOTAVAIL)
