"""Reading classic pcap streams (what ``tcpdump -w -`` writes) and writing/reading pcapng with named interfaces.

Why our own: a multi-point capture merges one pcap stream per capture point into one pcapng file in which each
point is an Interface Description Block whose ``if_name`` is the point (``node-1:flannel.1``) and whose
``if_description`` says where it is (namespace, device) — Wireshark shows it per packet as
``frame.interface_name``. pcapng is a simple block format (SHB, IDBs, EPBs; every block is type, length, body,
length, padded to 4 bytes), so writing it takes a page of code and no extra tool; the reader exists so tests and
``--decode`` without tshark can check what was written. Timestamps stay in microseconds (``if_tsresol`` 6, the
pcapng default) as tcpdump writes them. Only little-endian output is written; both byte orders are read.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO, Iterator

PCAP_MAGIC_US = 0xA1B2C3D4
PCAP_MAGIC_NS = 0xA1B23C4D
SHB_TYPE = 0x0A0D0D0A
IDB_TYPE = 0x00000001
EPB_TYPE = 0x00000006
BYTE_ORDER_MAGIC = 0x1A2B3C4D
OPT_END, OPT_COMMENT = 0, 1
IF_NAME, IF_DESCRIPTION, IF_TSRESOL = 2, 3, 9
SHB_USERAPPL = 4
LINKTYPE_ETHERNET = 1


class PcapError(ValueError):
    """A stream or file is not the pcap/pcapng it should be."""


@dataclass(frozen=True)
class Packet:
    ts_us: int  # microseconds since the epoch
    data: bytes
    orig_len: int
    iface: int = 0  # index of the interface (capture point) in the file


@dataclass(frozen=True)
class Interface:
    name: str
    description: str = ""
    linktype: int = LINKTYPE_ETHERNET
    snaplen: int = 262144


# -- classic pcap (a tcpdump stream) ---------------------------------------------------------------------------
class PcapStream:
    """Incremental reader of one classic pcap byte stream: feed bytes, take whole packets."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.linktype: int | None = None
        self.snaplen = 262144
        self._endian = "<"
        self._nano = False

    def feed(self, data: bytes) -> list[Packet]:
        self.buf += data
        out: list[Packet] = []
        if self.linktype is None:
            if len(self.buf) < 24:
                return out
            self._header(bytes(self.buf[:24]))
            del self.buf[:24]
        rec = struct.Struct(self._endian + "IIII")
        while len(self.buf) >= 16:
            sec, frac, incl, orig = rec.unpack_from(self.buf, 0)
            if len(self.buf) < 16 + incl:
                break
            data_ = bytes(self.buf[16:16 + incl])
            del self.buf[:16 + incl]
            us = sec * 1_000_000 + (frac // 1000 if self._nano else frac)
            out.append(Packet(us, data_, orig))
        return out

    def _header(self, hdr: bytes) -> None:
        for endian in ("<", ">"):
            magic = struct.unpack_from(endian + "I", hdr)[0]
            if magic in (PCAP_MAGIC_US, PCAP_MAGIC_NS):
                self._endian, self._nano = endian, magic == PCAP_MAGIC_NS
                _, _, _, _, snaplen, linktype = struct.unpack_from(endian + "HHiIII", hdr, 4)
                self.snaplen, self.linktype = snaplen, linktype & 0x0FFFFFFF
                return
        raise PcapError(f"not a pcap stream (magic {hdr[:4].hex()})")


# -- pcapng writing --------------------------------------------------------------------------------------------
def _pad(b: bytes) -> bytes:
    return b + b"\0" * (-len(b) % 4)


def _options(opts: list[tuple[int, bytes]]) -> bytes:
    if not opts:
        return b""
    body = b"".join(struct.pack("<HH", code, len(val)) + _pad(val) for code, val in opts)
    return body + struct.pack("<HH", OPT_END, 0)


def _block(btype: int, body: bytes) -> bytes:
    body = _pad(body)
    length = 12 + len(body)
    return struct.pack("<II", btype, length) + body + struct.pack("<I", length)


def section_header(app: str = "podlab capture") -> bytes:
    body = struct.pack("<IHHq", BYTE_ORDER_MAGIC, 1, 0, -1) + _options([(SHB_USERAPPL, app.encode())])
    return _block(SHB_TYPE, body)


def interface_block(iface: Interface) -> bytes:
    opts = [(IF_NAME, iface.name.encode())]
    if iface.description:
        opts.append((IF_DESCRIPTION, iface.description.encode()))
    opts.append((IF_TSRESOL, bytes([6])))
    return _block(IDB_TYPE, struct.pack("<HHI", iface.linktype, 0, iface.snaplen) + _options(opts))


def packet_block(pkt: Packet) -> bytes:
    body = struct.pack("<IIIII", pkt.iface, pkt.ts_us >> 32, pkt.ts_us & 0xFFFFFFFF, len(pkt.data), pkt.orig_len)
    return _block(EPB_TYPE, body + _pad(pkt.data))


class PcapngWriter:
    """Writes a section header, then interfaces and packets in any order (an IDB before its first packet)."""

    def __init__(self, out: BinaryIO, interfaces: list[Interface], app: str = "podlab capture") -> None:
        self.out = out
        out.write(section_header(app))
        for iface in interfaces:
            out.write(interface_block(iface))

    def write(self, pkt: Packet) -> None:
        self.out.write(packet_block(pkt))


def write_file(out: BinaryIO, interfaces: list[Interface], packets: list[Packet]) -> None:
    w = PcapngWriter(out, interfaces)
    for p in sorted(packets, key=lambda p: p.ts_us):
        w.write(p)


# -- pcapng reading --------------------------------------------------------------------------------------------
def _parse_options(data: bytes, endian: str) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    off = 0
    while off + 4 <= len(data):
        code, length = struct.unpack_from(endian + "HH", data, off)
        if code == OPT_END:
            break
        out.setdefault(code, data[off + 4:off + 4 + length])
        off += 4 + length + (-length % 4)
    return out


def read(data: bytes) -> tuple[list[Interface], list[Packet]]:
    """All interfaces and packets of a pcapng file (one or more sections; resolutions other than µs honoured)."""
    ifaces: list[Interface] = []
    resol: list[int] = []
    packets: list[Packet] = []
    off, endian, base = 0, "<", 0
    while off + 12 <= len(data):
        btype = struct.unpack_from("<I", data, off)[0]
        if btype == SHB_TYPE:
            bom = data[off + 8:off + 12]
            endian = "<" if struct.unpack("<I", bom)[0] == BYTE_ORDER_MAGIC else ">"
            base = len(ifaces)
        length = struct.unpack_from(endian + "I", data, off + 4)[0]
        if length < 12 or off + length > len(data):
            raise PcapError(f"truncated pcapng block at offset {off}")
        body = data[off + 8:off + length - 4]
        if btype == IDB_TYPE:
            linktype, _, snaplen = struct.unpack_from(endian + "HHI", body)
            opts = _parse_options(body[8:], endian)
            ifaces.append(Interface(opts.get(IF_NAME, b"").decode(errors="replace"),
                                    opts.get(IF_DESCRIPTION, b"").decode(errors="replace"), linktype, snaplen))
            r = opts.get(IF_TSRESOL, b"\x06")[0]
            resol.append(10 ** (r & 0x7F) if not r & 0x80 else 2 ** (r & 0x7F))
        elif btype == EPB_TYPE:
            ifid, hi, lo, cap, orig = struct.unpack_from(endian + "IIIII", body)
            ticks = (hi << 32) | lo
            per_s = resol[base + ifid] if base + ifid < len(resol) else 1_000_000
            packets.append(Packet(ticks * 1_000_000 // per_s, bytes(body[20:20 + cap]), orig, base + ifid))
        elif btype != SHB_TYPE and off == 0:
            raise PcapError("not a pcapng file (no section header block)")
        off += length
    return ifaces, packets


def iter_file(path: str) -> Iterator[tuple[Interface, Packet]]:
    with open(path, "rb") as f:
        ifaces, packets = read(f.read())
    for p in packets:
        yield ifaces[p.iface], p
