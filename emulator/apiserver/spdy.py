"""SPDY/3.1 framing, the subset port-forward uses (kubectl's port-forward tunnels it inside a WebSocket).

A SPDY connection is a byte stream of frames. Control frames: a 1 bit, version 3, a 16-bit type, 8 bits of
flags, a 24-bit length; data frames: a 0 bit, a 31-bit stream id, flags (FIN 0x01), a 24-bit length. The types
used here: SYN_STREAM (1: the client opens a stream; stream id, associated id, priority, then a header block),
SYN_REPLY (2: the server's answer, which the client waits for before it uses the stream), RST_STREAM (3),
SETTINGS (4, ignored), PING (6, echoed), GOAWAY (7), HEADERS (8, ignored), WINDOW_UPDATE (9: ignored — the
Go implementation kubectl links, moby/spdystream, neither sends nor honours flow-control windows, so neither
does this side). A header block is a count and length-prefixed names and values (32-bit big-endian), compressed
with zlib using the fixed dictionary of the SPDY/3 draft (section 2.6.10.1), one compression context per
direction for the whole connection, each block ending in a sync flush — so ``Framer`` keeps one compressor and
one decompressor for its life. ``Framer.feed`` accepts bytes as they come (a WebSocket message holds any part
of a frame) and returns whole frames.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = 1, 2, 3, 4, 6, 7, 8, 9
FLAG_FIN = 0x01
RST_PROTOCOL_ERROR, RST_INVALID_STREAM, RST_REFUSED, RST_CANCEL = 1, 2, 3, 5
MAX_FRAME = (1 << 24) - 1

# The SPDY/3 header dictionary (a protocol constant): these names, each preceded by its length as 4 bytes,
# then the common values in one run.
_DICT_WORDS = (
    "options head post put delete trace accept accept-charset accept-encoding accept-language accept-ranges age "
    "allow authorization cache-control connection content-base content-encoding content-language content-length "
    "content-location content-md5 content-range content-type date etag expect expires from host if-match "
    "if-modified-since if-none-match if-range if-unmodified-since last-modified location max-forwards pragma "
    "proxy-authenticate proxy-authorization range referer retry-after server te trailer transfer-encoding upgrade "
    "user-agent vary via warning www-authenticate method get status").split() + [
    "200 OK", "version", "HTTP/1.1", "url", "public", "set-cookie", "keep-alive", "origin"]
_DICT_TAIL = (
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized"
    "403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable"
    "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT"
    "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,"
    "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.")
DICTIONARY = b"".join(struct.pack("!I", len(w)) + w.encode() for w in _DICT_WORDS) + _DICT_TAIL.encode()


class ProtocolError(Exception):
    pass


@dataclass
class Frame:
    type: int               # 0 for a data frame
    stream: int = 0
    flags: int = 0
    data: bytes = b""       # a data frame's payload
    headers: dict[str, str] = field(default_factory=dict)
    value: int = 0          # PING id, RST_STREAM / GOAWAY status, WINDOW_UPDATE delta

    @property
    def fin(self) -> bool:
        return bool(self.flags & FLAG_FIN)


def encode_headers(headers: dict[str, str]) -> bytes:
    out = [struct.pack("!I", len(headers))]
    for k, v in headers.items():
        kb, vb = k.lower().encode(), v.encode()
        out += [struct.pack("!I", len(kb)), kb, struct.pack("!I", len(vb)), vb]
    return b"".join(out)


def decode_headers(block: bytes) -> dict[str, str]:
    try:
        (n,), off = struct.unpack_from("!I", block), 4
        out: dict[str, str] = {}
        for _ in range(n):
            (kl,) = struct.unpack_from("!I", block, off)
            k = block[off + 4:off + 4 + kl].decode()
            off += 4 + kl
            (vl,) = struct.unpack_from("!I", block, off)
            v = block[off + 4:off + 4 + vl].decode()
            off += 4 + vl
            out[k] = v.split("\x00")[0]
        return out
    except (struct.error, UnicodeDecodeError) as e:
        raise ProtocolError(f"bad header block: {e}") from None


class Framer:
    def __init__(self) -> None:
        self._z = zlib.compressobj(9, zlib.DEFLATED, 15, 9, zlib.Z_DEFAULT_STRATEGY, DICTIONARY)
        self._unz = zlib.decompressobj(15, DICTIONARY)
        self.buf = bytearray()

    # -- reading
    def feed(self, data: bytes) -> list[Frame]:
        self.buf += data
        out = []
        buf = self.buf
        while len(buf) >= 8:
            length = int.from_bytes(buf[5:8], "big")
            if len(buf) < 8 + length:
                break
            head, body = bytes(buf[:8]), bytes(buf[8:8 + length])
            del buf[:8 + length]
            out.append(self._frame(head, body))
        return out

    def _frame(self, head: bytes, body: bytes) -> Frame:
        flags = head[4]
        if not head[0] & 0x80:
            return Frame(0, int.from_bytes(head[:4], "big") & 0x7FFFFFFF, flags, body)
        version = int.from_bytes(head[:2], "big") & 0x7FFF
        kind = int.from_bytes(head[2:4], "big")
        if version != 3:
            raise ProtocolError(f"SPDY version {version}")
        try:
            if kind == SYN_STREAM:
                sid = int.from_bytes(body[:4], "big") & 0x7FFFFFFF
                return Frame(kind, sid, flags, headers=decode_headers(self._unz.decompress(body[10:])))
            if kind in (SYN_REPLY, HEADERS):
                sid = int.from_bytes(body[:4], "big") & 0x7FFFFFFF
                return Frame(kind, sid, flags, headers=decode_headers(self._unz.decompress(body[4:])))
            if kind in (RST_STREAM, WINDOW_UPDATE):
                sid, value = struct.unpack("!II", body[:8])
                return Frame(kind, sid & 0x7FFFFFFF, flags, value=value)
            if kind == PING:
                return Frame(kind, 0, flags, value=struct.unpack("!I", body[:4])[0])
            if kind == GOAWAY:
                last, status = struct.unpack("!II", body[:8])
                return Frame(kind, last & 0x7FFFFFFF, flags, value=status)
        except (struct.error, zlib.error) as e:
            raise ProtocolError(f"bad control frame {kind}: {e}") from None
        return Frame(kind, 0, flags)  # SETTINGS and anything newer: nothing to do

    # -- writing
    @staticmethod
    def _control(kind: int, flags: int, body: bytes) -> bytes:
        return struct.pack("!HHI", 0x8000 | 3, kind, (flags << 24) | len(body)) + body

    def _block(self, headers: dict[str, str]) -> bytes:
        return self._z.compress(encode_headers(headers)) + self._z.flush(zlib.Z_SYNC_FLUSH)

    def syn_reply(self, sid: int, headers: dict[str, str] | None = None, fin: bool = False) -> bytes:
        return self._control(SYN_REPLY, FLAG_FIN if fin else 0, struct.pack("!I", sid) + self._block(headers or {}))

    def syn_stream(self, sid: int, headers: dict[str, str], fin: bool = False) -> bytes:
        """(Clients open streams; this is for tests that play kubectl's part.)"""
        return self._control(SYN_STREAM, FLAG_FIN if fin else 0,
                             struct.pack("!IIH", sid, 0, 0) + self._block(headers))

    @staticmethod
    def data(sid: int, payload: bytes = b"", fin: bool = False) -> bytes:
        if len(payload) > MAX_FRAME:
            raise ValueError("data frame too large")
        return struct.pack("!II", sid & 0x7FFFFFFF, ((FLAG_FIN if fin else 0) << 24) | len(payload)) + payload

    def rst(self, sid: int, status: int = RST_CANCEL) -> bytes:
        return self._control(RST_STREAM, 0, struct.pack("!II", sid, status))

    def ping(self, pid: int) -> bytes:
        return self._control(PING, 0, struct.pack("!I", pid))

    def goaway(self, last: int, status: int = 0) -> bytes:
        return self._control(GOAWAY, 0, struct.pack("!II", last, status))
