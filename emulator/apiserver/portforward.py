"""``pods/portforward``: kubectl's local port joined to a port of the pod's own localhost.

The connection to the pod's port is made *from inside the pod's network namespace*: ``connect`` creates its
socket in this thread while the thread has entered the namespace (``netns.entered``), so the socket belongs to
the pod's namespace and dials ``127.0.0.1`` (then ``::1``) there, as the kubelet's port-forward does; no packet
ever leaves the root namespace for an emulated address, and a port bound to the pod's loopback only is reached.

Two wire protocols, chosen by the WebSocket subprotocol:

* ``SPDY/3.1+portforward.k8s.io`` (kubectl >= 1.31): the WebSocket's binary messages carry a SPDY/3.1 byte
  stream (``spdy``). For each local connection kubectl opens an *error* stream and a *data* stream with the
  headers ``streamtype``, ``port`` and ``requestid``; every SYN_STREAM gets its SYN_REPLY at once (kubectl waits
  for it). The data stream's pod connection is made when it opens; a refused port is reported as text on the
  error stream (kubectl prints it and ends), then both are finished. Bytes flow as DATA frames; the client's
  FIN half-closes the pod socket for writing, the pod's EOF is our FIN on the data stream plus an empty FIN on
  the error stream (kubectl reads the error stream to its end before it lets the connection go); RST_STREAM
  closes the pod socket. PINGs are echoed.
* ``v4.channel.k8s.io`` (the Python client's ``portforward``): ``?ports=a,b``; port i gets data channel 2i and
  error channel 2i+1, both announced by a first message carrying the port (2 bytes, little-endian); one pod
  connection per port, made at the start.

One ``poll`` loop in the connection's thread serves the WebSocket and every pod socket (non-blocking, with a
bounded buffer per direction, so a slow reader on either side slows the other instead of growing memory).
"""
from __future__ import annotations

import errno
import select
import socket
from dataclasses import dataclass, field
from typing import Callable

from emulator.apiserver import spdy
from emulator.apiserver.status import ApiError, not_found
from emulator.apiserver.stream_ws import OP_BINARY, OP_CLOSE, OP_TEXT, Closed, WebSocket
from emulator.netlink import netns
from emulator.state.store import Store

SPDY_WS = "SPDY/3.1+portforward.k8s.io"
PROTOCOLS = (SPDY_WS, "v4.channel.k8s.io")
CHUNK = 256 * 1024
BUFFER = 4 << 20


@dataclass
class Target:
    name: str
    uid: str
    netns: str
    #: how a connection to the pod's port is made: here, from inside its namespace (``connect``); in a multi-host
    #: lab, by a relay inside the pod's namespace on its host (``hosts.api_streams``)
    dial: Callable[[int], socket.socket] | None = None

    def connect(self, port: int) -> socket.socket:
        return self.dial(port) if self.dial is not None else connect(self.netns, port)


def target(store: Store, ns: str, name: str) -> Target:
    pod = store.get("pods", name, ns)
    if pod is None:
        raise not_found("pods", name)
    st = store.get_status("pods", name, ns) or {}
    sandbox = (st.get("sandbox") or {}).get("netns")
    if st.get("phase") != "Running" or not sandbox or not netns.exists(sandbox):
        raise ApiError(400, "BadRequest", f"pod {name} is not running (phase {st.get('phase') or 'Pending'})")
    return Target(name, pod["metadata"].get("uid", ""), sandbox)


def connect(ns_name: str, port: int) -> socket.socket:
    """A connection to ``port`` on the pod's own localhost, made from inside its namespace (OSError: why not)."""
    errors = []
    with netns.entered(ns_name):
        for fam, addr, label in ((socket.AF_INET, "127.0.0.1", "tcp4"), (socket.AF_INET6, "::1", "tcp6")):
            s = socket.socket(fam, socket.SOCK_STREAM)
            s.settimeout(5)
            try:
                s.connect((addr, port))
                s.setblocking(False)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                return s
            except OSError as e:
                s.close()
                host = f"[{addr}]" if ":" in addr else addr
                errors.append(f"dial {label} {host}:{port}: connect: {e.strerror or e}".lower())
    raise OSError(errno.ECONNREFUSED, f"IPv4: {errors[0]} IPv6 {errors[1]}")


@dataclass
class Pipe:
    """One pod connection and what is waiting to go into it."""
    sock: socket.socket
    out: bytearray = field(default_factory=bytearray)
    shut: bool = False      # the client finished writing: shut our write side once ``out`` is empty
    eof: bool = False       # the pod finished writing
    mask: int = select.POLLIN  # what the poller waits for on this socket (0: not registered)


class Loop:
    """The poll loop shared by both protocols: ``on_client(bytes)`` and ``on_pod(key, bytes)`` (b'' at EOF)."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self.pipes: dict[object, Pipe] = {}
        self.by_fd: dict[int, object] = {}
        self.poller = select.poll()
        self.poller.register(ws.fileno(), select.POLLIN)

    def add(self, key: object, sock: socket.socket) -> None:
        self.pipes[key] = Pipe(sock)
        self.by_fd[sock.fileno()] = key
        self.poller.register(sock.fileno(), select.POLLIN)

    def drop(self, key: object) -> None:
        p = self.pipes.pop(key, None)
        if p is None:
            return
        fd = p.sock.fileno()
        self.by_fd.pop(fd, None)
        if p.mask:
            self.poller.unregister(fd)
        p.sock.close()

    def write(self, key: object, data: bytes) -> None:
        p = self.pipes.get(key)
        if p is None:
            return
        p.out += data
        self._flush(key, p)

    def shut(self, key: object) -> None:
        p = self.pipes.get(key)
        if p is not None:
            p.shut = True
            self._flush(key, p)

    def _flush(self, key: object, p: Pipe) -> None:
        while p.out:
            try:
                n = p.sock.send(p.out[:CHUNK])
            except BlockingIOError:
                break
            except OSError:
                p.out.clear()
                break
            del p.out[:n]
        if not p.out and p.shut:
            try:
                p.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass  # the pod's side already closed the connection
            p.shut = False
        mask = (0 if p.eof else select.POLLIN) | (select.POLLOUT if p.out else 0)
        fd = p.sock.fileno()
        if mask != p.mask:
            if not mask:
                self.poller.unregister(fd)
            elif not p.mask:
                self.poller.register(fd, mask)
            else:
                self.poller.modify(fd, mask)
            p.mask = mask
        self.poller.modify(self.ws.fileno(), 0 if sum(len(q.out) for q in self.pipes.values()) > BUFFER
                           else select.POLLIN)

    def run(self, on_client, on_pod) -> None:
        ws_fd = self.ws.fileno()
        try:
            while True:
                events = [(ws_fd, select.POLLIN)] if self.ws.readable_now() else self.poller.poll(30_000)
                for fd, ev in events:
                    if fd == ws_fd:
                        self.ws.fill()
                        for op, data in self.ws.messages():
                            if op == OP_CLOSE:
                                return
                            if op in (OP_BINARY, OP_TEXT) and on_client(data) is False:
                                return
                        continue
                    key = self.by_fd.get(fd)
                    p = self.pipes.get(key)
                    if p is None:
                        continue
                    if ev & select.POLLOUT:
                        self._flush(key, p)
                    if ev & (select.POLLIN | select.POLLHUP | select.POLLERR) and not p.eof:
                        try:
                            data = p.sock.recv(CHUNK)
                        except BlockingIOError:
                            continue  # spurious wake-up: nothing to read yet
                        except OSError:
                            data = b""
                        if not data:
                            p.eof = True
                            self._flush(key, p)
                        on_pod(key, data)
        except Closed:
            return
        finally:
            for key in list(self.pipes):
                self.drop(key)


def serve(ws: WebSocket, proto: str, t: Target, query: dict[str, list[str]]) -> None:
    if proto == SPDY_WS:
        SpdySession(ws, t).run()
    else:
        channel_session(ws, t, query)
    ws.finish(0.5)


class SpdySession:
    def __init__(self, ws: WebSocket, t: Target) -> None:
        self.ws, self.t = ws, t
        self.framer = spdy.Framer()
        self.loop = Loop(ws)
        self.errors: dict[str, int] = {}     # requestid -> error stream id
        self.data: dict[int, str] = {}       # data stream id -> requestid
        self.last = 0

    def send(self, *frames: bytes) -> None:
        self.ws.send_binary(b"".join(frames))

    def run(self) -> None:
        self.loop.run(self.on_client, self.on_pod)

    def _error_stream_done(self, rid: str, message: str = "") -> list[bytes]:
        sid = self.errors.pop(rid, None)
        if sid is None:
            return []
        return [self.framer.data(sid, message.encode(), fin=True)]

    def on_client(self, data: bytes) -> bool:
        try:
            frames = self.framer.feed(data)
        except spdy.ProtocolError:
            self.send(self.framer.goaway(self.last, 1))
            return False
        for f in frames:
            if f.type == spdy.SYN_STREAM:
                self.last = max(self.last, f.stream)
                self._open(f)
            elif f.type == 0:
                if f.stream in self.data:
                    if f.data:
                        self.loop.write(f.stream, f.data)
                    if f.fin:
                        self.loop.shut(f.stream)
            elif f.type == spdy.RST_STREAM:
                rid = self.data.pop(f.stream, None)
                self.loop.drop(f.stream)
                if rid is not None:
                    out = self._error_stream_done(rid)
                    if out:
                        self.send(*out)
            elif f.type == spdy.PING:
                self.send(self.framer.ping(f.value))
            elif f.type == spdy.GOAWAY:
                return False
        return True

    def _open(self, f: spdy.Frame) -> None:
        kind, rid = f.headers.get("streamtype", ""), f.headers.get("requestid", "")
        reply = self.framer.syn_reply(f.stream)
        if kind == "error":
            self.errors[rid] = f.stream
            self.send(reply)
            return
        if kind != "data":
            self.send(reply, self.framer.rst(f.stream, spdy.RST_REFUSED))
            return
        try:
            port = int(f.headers.get("port", ""))
            if not 0 < port < 65536:
                raise ValueError
        except ValueError:
            self.send(reply, self.framer.data(f.stream, fin=True),
                      *self._error_stream_done(rid, f'invalid port header: "{f.headers.get("port", "")}"'))
            return
        try:
            sock = self.t.connect(port)
        except OSError as e:
            msg = (f"error forwarding port {port} to pod {self.t.uid}, uid : failed to execute portforward in "
                   f"network namespace \"/run/netns/{self.t.netns}\": failed to connect to localhost:{port} inside "
                   f"namespace \"{self.t.name}\", {e.strerror or e} ")
            self.send(reply, self.framer.data(f.stream, fin=True), *self._error_stream_done(rid, msg))
            return
        self.data[f.stream] = rid
        self.loop.add(f.stream, sock)
        self.send(reply)

    def on_pod(self, sid: int, data: bytes) -> None:
        if data:
            self.send(self.framer.data(sid, data))
            return
        rid = self.data.get(sid, "")
        self.send(self.framer.data(sid, fin=True), *self._error_stream_done(rid))


def channel_session(ws: WebSocket, t: Target, query: dict[str, list[str]]) -> None:
    ports: list[int] = []
    for v in query.get("ports") or []:
        for p in v.split(","):
            try:
                ports.append(int(p))
            except ValueError:
                pass  # not a port: the Python client sends numbers only; ignored as the kubelet does
    loop = Loop(ws)
    for i, port in enumerate(ports):
        pb = port.to_bytes(2, "little")
        ws.send_binary(bytes([2 * i]) + pb)
        ws.send_binary(bytes([2 * i + 1]) + pb)
        try:
            loop.add(i, t.connect(port))
        except OSError as e:
            ws.send_binary(bytes([2 * i + 1]) + f"failed to connect to localhost:{port} inside namespace "
                                                f"{t.name}: {e.strerror or e}".encode())

    def on_client(data: bytes) -> bool:
        ch = data[0]
        if ch % 2 == 0 and ch // 2 < len(ports) and len(data) > 1:
            loop.write(ch // 2, data[1:])
        return True

    def on_pod(i: int, data: bytes) -> None:
        if data:
            ws.send_binary(bytes([2 * i]) + data)
        elif not any(not p.eof for p in loop.pipes.values()):
            raise Closed("every pod connection ended")

    if loop.pipes:
        loop.run(on_client, on_pod)
