"""The server side of a WebSocket (RFC 6455) on an already-accepted TLS connection, for the streaming
subresources (``pods/exec``, ``pods/attach``, ``pods/portforward``).

Design. A streaming request is served by the connection's own thread with one ``poll`` loop over every file
descriptor it moves bytes between (the client's socket, the process's pipes or pty, the pod's sockets): no
thread per direction, because one TLS connection must never be read and written by two threads at once
(OpenSSL objects are not thread-safe). The socket is therefore non-blocking: ``Conn.fill`` reads whatever TLS
records have arrived into a buffer (also the bytes OpenSSL holds decrypted, ``pending``), and ``Conn.sendall``
waits for the socket to be writable while still draining what the client sends meanwhile, so a client that
writes while it is not reading cannot deadlock the server. ``WebSocket`` parses client frames from that buffer
(masked, possibly fragmented), answers pings itself (kubectl pings every 5 s and gives up after 61 s without an
answer) and writes unmasked binary frames. Unmasking XORs the payload as one big integer (C speed), which is
what makes a port-forward upload fast in Python.
"""
from __future__ import annotations

import base64
import hashlib
import select
import socket
import ssl
import struct
from typing import Iterator

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10
READ_SIZE = 256 * 1024
MAX_MESSAGE = 64 * 1024 * 1024


class Closed(Exception):
    """The client's connection is gone (EOF, reset, or a protocol error)."""


def is_websocket(headers: dict[str, str]) -> bool:
    return "websocket" in headers.get("upgrade", "").lower() and "upgrade" in headers.get("connection", "").lower()


def offered_protocols(headers: dict[str, str]) -> list[str]:
    return [p.strip() for p in headers.get("sec-websocket-protocol", "").split(",") if p.strip()]


def choose(headers: dict[str, str], supported: tuple[str, ...]) -> str | None:
    """The first protocol of the client's list that the server supports (the client's order decides)."""
    for p in offered_protocols(headers):
        if p in supported:
            return p
    return None


def handshake(headers: dict[str, str], protocol: str) -> bytes:
    key = headers.get("sec-websocket-key", "").strip()
    accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
    return (f"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: {protocol}\r\n\r\n").encode()


def unmask(data: bytes | bytearray | memoryview, key: bytes) -> bytes:
    n = len(data)
    if not n:
        return b""
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(k, "little")).to_bytes(n, "little")


def frame(op: int, payload: bytes = b"") -> bytes:
    """One unmasked, final frame (the server never masks)."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | op, n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x80 | op, 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | op, 127, n)
    return head + payload


class Conn:
    """A non-blocking socket with an input buffer (see the module docstring)."""

    def __init__(self, sock: socket.socket, initial: bytes = b"") -> None:
        self.sock = sock
        sock.setblocking(False)
        self.buf = bytearray(initial)
        self.eof = False

    def fileno(self) -> int:
        return self.sock.fileno()

    def fill(self) -> None:
        """Read everything that has arrived (raise Closed at EOF or on an error)."""
        while True:
            try:
                data = self.sock.recv(READ_SIZE)
            except (ssl.SSLWantReadError, BlockingIOError, InterruptedError):
                return
            except ssl.SSLWantWriteError:
                return
            except (OSError, ssl.SSLError) as e:
                self.eof = True
                raise Closed(str(e)) from None
            if not data:
                self.eof = True
                raise Closed("EOF")
            self.buf += data
            if len(self.buf) > MAX_MESSAGE * 2:
                return

    def readable_now(self) -> bool:
        """Decrypted bytes are waiting inside OpenSSL (poll cannot see them)."""
        pending = getattr(self.sock, "pending", None)
        return bool(pending and pending())

    def sendall(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        p = select.poll()
        while view:
            try:
                n = self.sock.send(view[:READ_SIZE])
                view = view[n:]
                continue
            except (ssl.SSLWantWriteError, BlockingIOError, InterruptedError):
                mask = select.POLLOUT | select.POLLIN
            except ssl.SSLWantReadError:
                mask = select.POLLIN
            except (OSError, ssl.SSLError) as e:
                raise Closed(str(e)) from None
            p.register(self.sock.fileno(), mask)
            ev = p.poll(60_000)
            p.unregister(self.sock.fileno())
            if not ev:
                raise Closed("write timeout (the client reads nothing for 60 s)")
            if ev[0][1] & (select.POLLERR | select.POLLHUP | select.POLLNVAL):
                raise Closed("connection reset")
            if ev[0][1] & select.POLLIN:
                self.fill()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass  # closing what is already broken


class WebSocket(Conn):
    """Frames over ``Conn``: ``messages`` yields whole data messages (opcode, payload)."""

    def __init__(self, sock: socket.socket, initial: bytes = b"") -> None:
        super().__init__(sock, initial)
        self._parts: list[bytes] = []
        self._op = OP_BINARY
        self.closed = False

    def messages(self) -> Iterator[tuple[int, bytes]]:
        buf = self.buf
        while True:
            if len(buf) < 2:
                return
            b0, b1 = buf[0], buf[1]
            n, off = b1 & 0x7F, 2
            if n == 126:
                if len(buf) < 4:
                    return
                n, off = struct.unpack_from("!H", buf, 2)[0], 4
            elif n == 127:
                if len(buf) < 10:
                    return
                n, off = struct.unpack_from("!Q", buf, 2)[0], 10
            if n > MAX_MESSAGE:
                raise Closed(f"frame of {n} bytes")
            masked = b1 & 0x80
            end = off + (4 if masked else 0) + n
            if len(buf) < end:
                return
            if masked:
                payload = unmask(memoryview(buf)[off + 4:end], bytes(buf[off:off + 4]))
            else:
                payload = bytes(buf[off:end])
            del buf[:end]
            op, fin = b0 & 0x0F, b0 & 0x80
            if op == OP_PING:
                self.sendall(frame(OP_PONG, payload))
                continue
            if op == OP_PONG:
                continue
            if op == OP_CLOSE:
                if not self.closed:
                    self.closed = True
                    try:
                        self.sendall(frame(OP_CLOSE, payload[:2]))
                    except Closed:
                        pass  # the client is gone: no one to answer
                yield OP_CLOSE, payload
                return
            if op != OP_CONT:
                self._op, self._parts = op, []
            self._parts.append(payload)
            if fin:
                data = self._parts[0] if len(self._parts) == 1 else b"".join(self._parts)
                self._parts = []
                yield self._op, data

    def send_binary(self, payload: bytes) -> None:
        n = len(payload)
        if n < 65536:
            self.sendall(frame(OP_BINARY, payload))
        else:  # the payload is not copied again
            self.sendall(frame(OP_BINARY, b"")[:1] + struct.pack("!BQ", 127, n))
            self.sendall(payload)

    def send_close(self, code: int = 1000, reason: str = "") -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.sendall(frame(OP_CLOSE, struct.pack("!H", code) + reason.encode()[:120]))
        except Closed:
            pass  # the client is gone: no one to tell

    def finish(self, wait: float = 1.0) -> None:
        """Close the WebSocket (our close frame, then the client's answer or ``wait`` seconds) and the socket."""
        self.send_close()
        p = select.poll()
        p.register(self.fileno(), select.POLLIN)
        try:
            deadline = wait
            while deadline > 0 and not self.eof:
                if not p.poll(int(deadline * 1000)):
                    break
                self.fill()
                for op, _ in self.messages():
                    if op == OP_CLOSE:
                        deadline = 0
                deadline = min(deadline, 0.2)
        except Closed:
            pass  # the client hung up first: the close is done
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already disconnected
        self.close()
