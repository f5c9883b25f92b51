"""The check's prober: every listening, connecting and ping socket of a check, in one thread of ``podlab check``.

A socket belongs to the network namespace of the thread that created it, for its whole life. So this thread
enters a namespace (``setns``, ~0.01 ms), creates the socket, and returns home; one epoll loop then drives all
of them. No process is started in any pod or node, nothing outlives the check (a socket dies with its process),
and memory is bounded by ``max_inflight`` connections whatever the size of the lab.

- ``Tcp(..., listener=ns)``: a listening socket in ``ns`` (the target pod) answers each connection with one line,
  the peer address as *its* kernel saw it, then ``BULK`` bytes; the client reads to the end. One connection thus
  proves reachability, shows NAT (the source the receiver observed) and crosses the path MTU with full-size
  segments (a pod MTU too large for an overlay stalls exactly there). A listener is opened when the first probe
  to it starts and closed after the last one ends.
- ``Tcp(..., listener=None, bulk=False)``: only open a connection (to a Service, a NodePort).
- ``Ping``: one ICMP echo of exactly the source's ``eth0`` MTU with DF set (a raw socket), as ``ping -M do``.

Results are dicts: ``{target, port, connected, seen, bulk, error, ms}`` for TCP (``seen``/``bulk`` only with a
listener) and ``{target, mtu, ok, error, ms}`` for pings; the same shapes the per-pod programs used to print.
``pacer`` (``neighbours.Pacer``) may hold probes back to keep the kernel's neighbour table from overflowing.
"""
from __future__ import annotations

import errno
import heapq
import itertools
import os
import resource
import selectors
import socket
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence, Union

from emulator.check import icmp
from emulator.netlink import netns

BULK = 48 * 1024
TIMEOUT = 3.0
PING_TIMEOUT = 1.0
_PAYLOAD = b"x" * BULK
_VIEW = memoryview(_PAYLOAD)


@dataclass(frozen=True)
class Tcp:
    src_ns: str
    ip: str
    port: int
    listener: str | None = None  # the target's namespace: listen there and expect the answer (line + BULK)
    keys: frozenset = field(default=frozenset(), compare=False)


@dataclass(frozen=True)
class Ping:
    src_ns: str
    ip: str
    dev: str = "eth0"  # the packet is as large as this device's MTU
    keys: frozenset = field(default=frozenset(), compare=False)


Job = Union[Tcp, Ping]


class _Namespaces:
    """Creates sockets in named namespaces from this thread: ``setns`` there, make the socket, ``setns`` home.
    The home fd and the fds of the last ``size`` namespaces stay open (an ``open`` of /run/netns/X costs more than
    the ``setns`` itself)."""

    def __init__(self, size: int = 256) -> None:
        self.home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        self.size = size
        self.fds: dict[str, int] = {}

    def socket(self, ns: str, make: Callable[[], socket.socket]) -> socket.socket:
        fd = self.fds.pop(ns, None)
        if fd is None:
            fd = netns.open_fd(ns)
            if len(self.fds) >= self.size:
                os.close(self.fds.pop(next(iter(self.fds))))
        self.fds[ns] = fd  # most recently used last
        netns.setns(fd)
        try:
            return make()
        finally:
            netns.setns(self.home)

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()
        os.close(self.home)


class _Conn:
    """One client connection: connecting → reading (the answer) → done."""

    def __init__(self, job: Tcp, sock: socket.socket, t0: float) -> None:
        self.job, self.sock, self.t0 = job, sock, t0
        self.connected = False
        self.head = b""
        self.bulk = 0
        self.got_line = False
        self.deadline = t0 + TIMEOUT


class _Serve:
    """One accepted connection in a target: send the peer's address and the payload, then close."""

    def __init__(self, sock: socket.socket, peer: str, t0: float) -> None:
        self.sock = sock
        self.head = f"{peer}\n".encode()
        self.off = 0  # bytes of head + payload sent
        self.deadline = t0 + TIMEOUT

    @property
    def total(self) -> int:
        return len(self.head) + BULK

    def send(self) -> int:
        """Send what is left of the line and the (shared, never copied) payload."""
        h = len(self.head)
        if self.off < h:
            return self.sock.sendmsg([self.head[self.off:], _VIEW])
        return self.sock.send(_VIEW[self.off - h:])


class _Echo:
    def __init__(self, job: Ping, sock: socket.socket, ident: int, mtu: int, t0: float) -> None:
        self.job, self.sock, self.ident, self.mtu, self.t0 = job, sock, ident, mtu, t0
        self.deadline = t0 + PING_TIMEOUT


class Prober:
    def __init__(self, max_inflight: int = 128, pacer=None, evict: Callable | None = None,
                 clock: Callable[[], float] = time.monotonic, wrap: Callable[[dict], object] = lambda d: d) -> None:
        """``pacer``: a ``neighbours.Pacer``; ``evict(keys) -> set`` deletes the neighbour entries it names;
        ``wrap`` turns each result dict into what is kept (a compact record, for 250,000 results)."""
        self.max_inflight, self.pacer, self.evict, self.clock, self.wrap = max_inflight, pacer, evict, clock, wrap
        self.sel = selectors.DefaultSelector()
        self._deadlines: list[tuple[float, int, object]] = []
        self._seq = itertools.count()
        self._listeners: dict[tuple[str, int], socket.socket | str] = {}
        self._refs: dict[tuple[str, int], int] = {}
        self._ns: _Namespaces | None = None
        self.started = 0
        self.peak_inflight = 0
        self.paced = 0.0  # seconds during which the pacer held the next probe back

    # -- running ---------------------------------------------------------------------------------------------
    def run(self, jobs: Sequence[Job]) -> list[dict]:
        """Run every job; one result per job, in order. ``jobs`` may be a lazy sequence (built on indexing):
        each job is read when it starts and when it ends."""
        for j in jobs:
            if isinstance(j, Tcp) and j.listener:
                k = (j.listener, j.port)
                self._refs[k] = self._refs.get(k, 0) + 1
        _fds_for(len(self._refs) + 2 * self.max_inflight + 256 + 64)
        self._ns = _Namespaces(256)
        results: list[dict | None] = [None] * len(jobs)
        inflight: dict[object, int] = {}
        nxt = 0
        held: float | None = None
        try:
            while nxt < len(jobs) or inflight:
                now = self.clock()
                wait = 0.0
                while nxt < len(jobs) and len(inflight) < self.max_inflight:
                    job = jobs[nxt]
                    if self.pacer is not None and job.keys:
                        wait, victims = self.pacer.admit(job.keys, now)
                        if victims:
                            self.pacer.evicted(victims, self.evict(victims) if self.evict else set())
                            now = self.clock()
                            continue
                        if wait:
                            held = now if held is None else held
                            break
                        if held is not None:
                            self.paced, held = self.paced + now - held, None
                    h = self._start(job, now)
                    nxt += 1
                    if isinstance(h, dict):
                        results[nxt - 1] = self.wrap(h)
                        self._release(job, now)
                    else:
                        inflight[h] = nxt - 1
                self.peak_inflight = max(self.peak_inflight, len(inflight))
                timeout = self._next_timeout(now)
                if wait:
                    timeout = wait if timeout is None else min(timeout, wait)
                for key, mask in self.sel.select(timeout):
                    self._event(key.data, mask, inflight, results, jobs)
                self._expire(self.clock(), inflight, results, jobs)
        finally:
            self._close_all(inflight)
        for i, r in enumerate(results):
            if r is None:
                results[i] = self.wrap({"target": jobs[i].ip, "error": "not run"})
        return results

    def _next_timeout(self, now: float) -> float | None:
        while self._deadlines and getattr(self._deadlines[0][2], "deadline", None) != self._deadlines[0][0]:
            heapq.heappop(self._deadlines)
        if not self._deadlines:
            return None
        return max(0.0, self._deadlines[0][0] - now)

    def _arm(self, h, deadline: float) -> None:
        h.deadline = deadline
        heapq.heappush(self._deadlines, (deadline, next(self._seq), h))

    def _rearm(self, h, now: float) -> None:
        """Push an idle connection's deadline back (only when it is near: one heap entry per ~1.5 s)."""
        if h.deadline - now < TIMEOUT / 2:
            self._arm(h, now + TIMEOUT)

    # -- starting --------------------------------------------------------------------------------------------
    def _start(self, job: Job, now: float):
        self.started += 1
        if isinstance(job, Ping):
            return self._start_ping(job, now)
        if job.listener:
            lst = self._listener(job.listener, job.port)
            if isinstance(lst, str):
                return _tcp_result(job, now, self.clock(), error=lst)
        try:
            s = self._ns.socket(job.src_ns, lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        except Exception as e:  # the namespace is gone, or no fd left
            return _tcp_result(job, now, self.clock(), error=f"cannot open a socket in {job.src_ns}: {e}")
        s.setblocking(False)
        h = _Conn(job, s, now)
        err = s.connect_ex((job.ip, job.port))
        if err not in (0, errno.EINPROGRESS):
            s.close()
            return _tcp_result(job, now, self.clock(), error=os.strerror(err))
        self.sel.register(s, selectors.EVENT_WRITE, h)
        self._arm(h, now + TIMEOUT)
        return h

    def _listener(self, ns: str, port: int) -> socket.socket | str:
        k = (ns, port)
        if k in self._listeners:
            return self._listeners[k]
        try:
            s = self._ns.socket(ns, lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("0.0.0.0", port))
            s.listen(1024)
            s.setblocking(False)
        except Exception as e:
            self._listeners[k] = f"the check's listener could not open in {ns}: {e}"
            return self._listeners[k]
        self._listeners[k] = s
        self.sel.register(s, selectors.EVENT_READ, ("listen", k))
        return s

    def _release(self, job: Job, now: float) -> None:
        if self.pacer is not None and job.keys:
            self.pacer.finished(job.keys, now)
        if isinstance(job, Tcp) and job.listener:
            k = (job.listener, job.port)
            self._refs[k] -= 1
            if self._refs[k] == 0:
                s = self._listeners.pop(k, None)
                if isinstance(s, socket.socket):
                    self.sel.unregister(s)
                    s.close()

    def _start_ping(self, job: Ping, now: float):
        try:
            s = self._ns.socket(job.src_ns,
                                lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP))
            mtu = icmp.mtu_of(s, job.dev)
            icmp.dont_fragment(s)
            s.setblocking(False)
        except Exception as e:
            return {"target": job.ip, "mtu": 0, "ok": False, "error": f"cannot ping from {job.src_ns}: {e}", "ms": 0}
        ident = (self.started * 7919 + os.getpid()) & 0xFFFF
        try:
            s.sendto(icmp.echo_request(ident, 1, mtu - 28), (job.ip, 0))
        except OSError as e:
            s.close()
            return {"target": job.ip, "mtu": mtu, "ok": False, "error": e.strerror or str(e), "ms": 0}
        h = _Echo(job, s, ident, mtu, now)
        self.sel.register(s, selectors.EVENT_READ, h)
        self._arm(h, now + PING_TIMEOUT)
        return h

    # -- events ----------------------------------------------------------------------------------------------
    def _event(self, h, mask: int, inflight: dict, results: list, jobs: Sequence[Job]) -> None:
        now = self.clock()
        if isinstance(h, tuple):
            self._accept(h[1], now)
        elif isinstance(h, _Serve):
            self._send(h, now)
        elif isinstance(h, _Conn):
            self._client(h, now, inflight, results, jobs)
        elif isinstance(h, _Echo):
            try:
                while True:
                    pkt = h.sock.recv(65535)
                    if icmp.is_echo_reply(pkt, h.ident, 1):
                        self._finish(h, {"target": h.job.ip, "mtu": h.mtu, "ok": True, "error": "",
                                         "ms": round((now - h.t0) * 1000, 1)}, inflight, results, jobs)
                        return
            except BlockingIOError:  # no more replies queued: the socket stays registered for the next one
                pass
            except OSError as e:
                self._finish(h, {"target": h.job.ip, "mtu": h.mtu, "ok": False, "error": e.strerror or str(e),
                                 "ms": round((now - h.t0) * 1000, 1)}, inflight, results, jobs)

    def _accept(self, k: tuple[str, int], now: float) -> None:
        lst = self._listeners.get(k)
        if not isinstance(lst, socket.socket):
            return
        while True:
            try:
                c, addr = lst.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            c.setblocking(False)
            h = _Serve(c, addr[0], now)
            self.sel.register(c, selectors.EVENT_WRITE, h)
            self._arm(h, now + TIMEOUT)
            self._send(h, now)

    def _send(self, h: _Serve, now: float) -> None:
        try:
            while h.off < h.total:
                h.off += h.send()
        except BlockingIOError:
            self._rearm(h, now)
            return
        except OSError:  # the prober hung up mid-transfer: its side records the result; ours just closes
            pass
        self._drop(h)

    def _client(self, h: _Conn, now: float, inflight: dict, results: list, jobs: Sequence[Job]) -> None:
        if not h.connected:
            err = h.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self._finish(h, _tcp_result(h.job, h.t0, now, error=os.strerror(err)), inflight, results, jobs)
                return
            h.connected = True
            if not h.job.listener:
                self._finish(h, _tcp_result(h.job, h.t0, now, connected=True), inflight, results, jobs)
                return
            self.sel.modify(h.sock, selectors.EVENT_READ, h)
            self._arm(h, now + TIMEOUT)
            return
        try:
            while True:
                chunk = h.sock.recv(65536)
                if not chunk:
                    break
                if h.got_line:
                    h.bulk += len(chunk)
                else:
                    h.head += chunk
                    if b"\n" in h.head:
                        line, _, rest = h.head.partition(b"\n")
                        h.head, h.got_line, h.bulk = line, True, len(rest)
        except BlockingIOError:
            self._rearm(h, now)
            return
        except OSError as e:
            self._finish(h, self._answer(h, now, e.strerror or str(e)), inflight, results, jobs)
            return
        self._finish(h, self._answer(h, now), inflight, results, jobs)

    @staticmethod
    def _answer(h: _Conn, now: float, error: str = "") -> dict:
        seen = h.head.decode(errors="replace") if h.got_line else None
        return _tcp_result(h.job, h.t0, now, connected=True, seen=seen or None, bulk=h.bulk, error=error)

    def _expire(self, now: float, inflight: dict, results: list, jobs: Sequence[Job]) -> None:
        while self._deadlines and self._deadlines[0][0] <= now:
            deadline, _, h = heapq.heappop(self._deadlines)
            if getattr(h, "deadline", None) != deadline:
                continue
            if isinstance(h, _Serve):
                self._drop(h)
            elif isinstance(h, _Conn):
                r = self._answer(h, now, "timed out") if h.connected else _tcp_result(h.job, h.t0, now,
                                                                                        error="timed out")
                self._finish(h, r, inflight, results, jobs)
            elif isinstance(h, _Echo):
                self._finish(h, {"target": h.job.ip, "mtu": h.mtu, "ok": False, "error": "lost",
                                 "ms": round((now - h.t0) * 1000, 1)}, inflight, results, jobs)

    def _drop(self, h) -> None:
        h.deadline = None
        try:
            self.sel.unregister(h.sock)
        except (KeyError, ValueError):  # already unregistered (a finished handle dropped twice): nothing to undo
            pass
        h.sock.close()

    def _finish(self, h, result: dict, inflight: dict, results: list, jobs: Sequence[Job]) -> None:
        self._drop(h)
        i = inflight.pop(h)
        results[i] = self.wrap(result)
        self._release(jobs[i], self.clock())

    def _close_all(self, inflight: dict) -> None:
        for _, _, h in self._deadlines:
            if getattr(h, "deadline", None) is not None and hasattr(h, "sock"):
                self._drop(h)
        for h in list(inflight):
            if h.sock.fileno() >= 0:
                self._drop(h)
        for s in self._listeners.values():
            if isinstance(s, socket.socket):
                s.close()
        self._listeners.clear()
        self.sel.close()
        if self._ns is not None:
            self._ns.close()
            self._ns = None


def _tcp_result(job: Tcp, t0: float, now: float, connected: bool = False, seen: str | None = None, bulk: int = 0,
                error: str = "") -> dict:
    out = {"target": job.ip, "port": job.port, "connected": connected, "error": error,
           "ms": round((now - t0) * 1000, 1)}
    if job.listener:
        out.update(seen=seen, bulk=bulk)
    return out


def _fds_for(n: int) -> None:
    """Raise this process's soft limit of open files to fit ``n`` more (up to the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n + len(os.listdir("/proc/self/fd"))
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want if hard == resource.RLIM_INFINITY else min(hard, want), hard))
