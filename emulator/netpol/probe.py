"""Connection probes as the upstream suite makes them (``agnhost connect --timeout=1s``), from inside namespaces.

Every probe is a socket created by this thread inside the source's network namespace (``netns.socket_in``:
a socket keeps the namespace it was made in), so no process is started in any pod; one ``selectors`` loop drives
them all at once, at most ``max_inflight`` open at a time. TCP: a non-blocking connect; the handshake completing
means *connected*. UDP: a connected datagram socket sends ``hostname`` (to port 53, a DNS query for
``hostname.`` instead, which a DNS server answers — the coredns pods of kube-system drop anything else, as CoreDNS
does); any answer means connected. Either way
an ICMP port unreachable / TCP reset (``ECONNREFUSED``) means the packet *reached* the pod and nothing listened:
policy did not drop it, so it counts as connected for the truth table (the detail says "refused"); silence for
``timeout`` seconds means blocked, which is what a dropped SYN or datagram looks like (upstream: 1 s).

SCTP: this kernel may have no SCTP sockets (``CONFIG_IP_SCTP`` unset: ``socket()`` fails with
EPROTONOSUPPORT); ``sctp_available`` says so and SCTP probes raise ``MissingDependencyError`` (exit 5) saying so
instead of timing out.
"""
from __future__ import annotations

import errno
import functools
import os
import resource
import selectors
import socket
import time
from dataclasses import dataclass
from typing import Hashable, Sequence

from emulator.errors import MissingDependencyError
from emulator.netlink import netns

TIMEOUT = 1.0
IPPROTO_SCTP = 132


@dataclass(frozen=True)
class Target:
    src_ns: str
    ip: str
    port: int
    protocol: str = "TCP"
    key: Hashable = None


@dataclass(frozen=True)
class Result:
    target: Target
    connected: bool
    detail: str  # connected | refused | reply | timeout | an error
    ms: float


DNS_PORT = 53


@functools.lru_cache(maxsize=1)
def _dns_query() -> bytes:
    import dns.message
    return dns.message.make_query("hostname.", "A").to_wire()


def sctp_available() -> bool:
    try:
        socket.socket(socket.AF_INET, socket.SOCK_STREAM, IPPROTO_SCTP).close()
        return True
    except OSError:
        return False


def _make(t: Target) -> socket.socket:
    if t.protocol == "UDP":
        kind, proto = socket.SOCK_DGRAM, 0
    elif t.protocol == "SCTP":
        kind, proto = socket.SOCK_STREAM, IPPROTO_SCTP
    else:
        kind, proto = socket.SOCK_STREAM, 0
    try:
        s = netns.socket_in(t.src_ns, socket.AF_INET, kind, proto)
    except OSError as e:
        if t.protocol == "SCTP" and e.errno in (errno.EPROTONOSUPPORT, errno.ESOCKTNOSUPPORT, errno.EAFNOSUPPORT):
            raise MissingDependencyError("this kernel has no SCTP sockets (CONFIG_IP_SCTP is not set): SCTP cannot be "
                                  "probed; the expected table is still computed", obj="sctp") from None
        raise
    s.setblocking(False)
    return s


def _fds_for(n: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n + len(os.listdir("/proc/self/fd")) + 16
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want if hard == resource.RLIM_INFINITY else min(hard, want), hard))


def run(targets: Sequence[Target], timeout: float = TIMEOUT, max_inflight: int = 256) -> list[Result]:
    """Probe every target (in parallel); results in the targets' order."""
    _fds_for(min(max_inflight, len(targets)))
    results: list[Result | None] = [None] * len(targets)
    sel = selectors.DefaultSelector()
    pending = list(range(len(targets)))[::-1]
    open_: dict[int, tuple[socket.socket, float]] = {}

    def finish(i: int, connected: bool, detail: str) -> None:
        s, t0 = open_.pop(i)
        sel.unregister(s)
        s.close()
        results[i] = Result(targets[i], connected, detail, round((time.monotonic() - t0) * 1000, 1))

    try:
        while pending or open_:
            while pending and len(open_) < max_inflight:
                i = pending.pop()
                t = targets[i]
                s = _make(t)
                t0 = time.monotonic()
                open_[i] = (s, t0)
                if t.protocol == "UDP":
                    try:
                        s.connect((t.ip, t.port))
                        s.send(_dns_query() if t.port == DNS_PORT else b"hostname\n")
                    except OSError as e:
                        sel.register(s, selectors.EVENT_READ, i)
                        finish(i, e.errno == errno.ECONNREFUSED, "refused" if e.errno == errno.ECONNREFUSED
                               else (e.strerror or str(e)))
                        continue
                    sel.register(s, selectors.EVENT_READ, i)
                else:
                    rc = s.connect_ex((t.ip, t.port))
                    sel.register(s, selectors.EVENT_WRITE, i)
                    if rc not in (0, errno.EINPROGRESS):
                        finish(i, rc == errno.ECONNREFUSED, "refused" if rc == errno.ECONNREFUSED else os.strerror(rc))
            now = time.monotonic()
            if not open_:
                continue
            wait = max(0.0, min(t0 + timeout for _, t0 in open_.values()) - now)
            for key, _ in sel.select(wait):
                i = key.data
                s = key.fileobj
                if targets[i].protocol == "UDP":
                    try:
                        s.recv(65535)  # type: ignore[union-attr]
                        finish(i, True, "reply")
                    except OSError as e:
                        finish(i, e.errno == errno.ECONNREFUSED,
                               "refused" if e.errno == errno.ECONNREFUSED else (e.strerror or str(e)))
                else:
                    err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)  # type: ignore[union-attr]
                    finish(i, err in (0, errno.ECONNREFUSED), "connected" if err == 0 else
                           "refused" if err == errno.ECONNREFUSED else os.strerror(err))
            now = time.monotonic()
            for i in [i for i, (_, t0) in open_.items() if now - t0 >= timeout]:
                finish(i, False, "timeout")
    finally:
        for i in list(open_):
            finish(i, False, "not probed")
        sel.close()
    return [r for r in results if r is not None]
