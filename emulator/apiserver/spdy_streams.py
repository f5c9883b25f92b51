"""Raw SPDY/3.1 upgrades (kubectl <= 1.29 for exec/attach, and the fallback of newer ones for port-forward):
the same sessions as over WebSocket, through two small adapters.

``RawConn`` is the upgraded TLS connection itself as a byte stream: its "messages" are whatever bytes arrived,
which the port-forward SPDY session already parses as a stream (``portforward.SpdySession`` does not care
whether its bytes came in WebSocket messages or straight off the socket). ``SpdyChannels`` makes a SPDY
connection look like the channel WebSocket ``exec.Session`` and ``attach`` speak: the client opens one stream
per channel (header ``streamtype``: error, stdin, stdout, stderr, resize), each answered with SYN_REPLY; DATA on
the stdin or resize stream becomes a channel 0 or 4 message, a FIN on stdin the v5 close of channel 0, and what
the session sends on channels 1-3 goes out as DATA on the matching stream. ``wait_streams`` holds the session
until every stream the request asked for exists (as the kubelet does), so no output is sent before its stream.
The protocol version is the first of the client's ``X-Stream-Protocol-Version`` values that the server speaks
(``v4.channel.k8s.io``: the exit code as a JSON Status on the error stream).
"""
from __future__ import annotations

import select
import time
from typing import Iterator

from emulator.apiserver import spdy
from emulator.apiserver.stream_ws import OP_BINARY, OP_CLOSE, Closed, Conn

STREAM_TYPES = {"stdin": 0, "stdout": 1, "stderr": 2, "error": 3, "resize": 4}
EXEC_VERSIONS = ("v4.channel.k8s.io",)
PORTFORWARD_VERSIONS = ("portforward.k8s.io",)


def choose(header: str, supported: tuple[str, ...]) -> str | None:
    for v in (p.strip() for p in header.split(",")):
        if v in supported:
            return v
    return None


def handshake(version: str) -> bytes:
    return (f"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
            f"X-Stream-Protocol-Version: {version}\r\n\r\n").encode()


class RawConn(Conn):
    """The upgraded socket as a byte stream, with the WebSocket's session interface."""
    closed = False

    def messages(self) -> Iterator[tuple[int, bytes]]:
        if self.buf:
            data = bytes(self.buf)
            self.buf.clear()
            yield OP_BINARY, data
        elif self.eof:
            yield OP_CLOSE, b""

    def send_binary(self, payload: bytes) -> None:
        self.sendall(payload)

    def finish(self, wait: float = 0.5) -> None:
        self.close()


class SpdyChannels:
    """A SPDY exec/attach connection with the channel interface of ``stream_ws.WebSocket``."""

    def __init__(self, raw: RawConn) -> None:
        self.raw = raw
        self.framer = spdy.Framer()
        self.streams: dict[int, int] = {}     # channel -> stream id
        self.by_id: dict[int, int] = {}       # stream id -> channel
        self.queue: list[tuple[int, bytes]] = []
        self.closed = False
        self.last = 0

    def fileno(self) -> int:
        return self.raw.fileno()

    def readable_now(self) -> bool:
        return bool(self.queue) or self.raw.readable_now()

    def fill(self) -> None:
        self.raw.fill()

    def _pump(self) -> None:
        for op, data in self.raw.messages():
            if op == OP_CLOSE:
                self.queue.append((OP_CLOSE, b""))
                return
            try:
                frames = self.framer.feed(data)
            except spdy.ProtocolError as e:
                raise Closed(str(e)) from None
            for f in frames:
                self._frame(f)

    def _frame(self, f: spdy.Frame) -> None:
        if f.type == spdy.SYN_STREAM:
            self.last = max(self.last, f.stream)
            ch = STREAM_TYPES.get(f.headers.get("streamtype", ""))
            self.raw.sendall(self.framer.syn_reply(f.stream))
            if ch is None:
                self.raw.sendall(self.framer.rst(f.stream, spdy.RST_REFUSED))
                return
            self.streams[ch], self.by_id[f.stream] = f.stream, ch
        elif f.type == 0:
            ch = self.by_id.get(f.stream)
            if ch in (0, 4) and f.data:
                self.queue.append((OP_BINARY, bytes([ch]) + f.data))
            if ch == 0 and f.fin:
                self.queue.append((OP_BINARY, bytes([255, 0])))
        elif f.type == spdy.PING:
            self.raw.sendall(self.framer.ping(f.value))
        elif f.type in (spdy.GOAWAY,) or (f.type == spdy.RST_STREAM and self.by_id.get(f.stream) == 3):
            self.queue.append((OP_CLOSE, b""))

    def messages(self) -> Iterator[tuple[int, bytes]]:
        self._pump()
        q, self.queue = self.queue, []
        yield from q

    def wait_streams(self, wanted: set[int], timeout: float = 10.0) -> None:
        p = select.poll()
        p.register(self.fileno(), select.POLLIN)
        deadline = time.monotonic() + timeout
        while not wanted <= set(self.streams):
            left = deadline - time.monotonic()
            if left <= 0:
                raise Closed(f"the client opened streams {sorted(self.streams)}, not {sorted(wanted)}")
            if self.raw.readable_now() or p.poll(int(left * 1000)):
                self.raw.fill()
                self._pump()

    def send_binary(self, payload: bytes) -> None:
        ch, body = payload[0], payload[1:]
        sid = self.streams.get(ch)
        if sid is not None:
            self.raw.sendall(self.framer.data(sid, body, fin=ch == 3))

    def send_close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.raw.sendall(b"".join(self.framer.data(sid, fin=True) for ch, sid in self.streams.items()
                                      if ch in (1, 2)) + self.framer.goaway(self.last))
        except Closed:
            pass  # the client is gone: no one to tell

    def finish(self, wait: float = 0.5) -> None:
        self.send_close()
        self.raw.close()

    def close(self) -> None:
        self.raw.close()
