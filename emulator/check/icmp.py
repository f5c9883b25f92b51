"""ICMP echo for the check's path-MTU probe: packets built and parsed here, sent from a raw socket.

``ping -M do -s SIZE`` as a socket: a raw ``IPPROTO_ICMP`` socket opened in the source pod's namespace, path MTU
discovery set to "do" (the kernel sets DF and refuses to fragment), one echo request whose IP packet is exactly
the device's MTU. The reply is matched by identifier and sequence (a raw socket sees every ICMP packet of its
namespace, its own requests included).
"""
from __future__ import annotations

import fcntl
import socket
import struct

SIOCGIFMTU = 0x8921
IP_MTU_DISCOVER, IP_PMTUDISC_DO = 10, 2


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def echo_request(ident: int, seq: int, size: int) -> bytes:
    """An ICMP echo request with ``size`` bytes of payload (the IP packet is size + 28 bytes)."""
    payload = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    head = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    return struct.pack("!BBHHH", 8, 0, _checksum(head + payload), ident, seq) + payload


def is_echo_reply(packet: bytes, ident: int, seq: int) -> bool:
    """Whether a raw IPv4 packet is the echo reply to (ident, seq)."""
    if len(packet) < 28:
        return False
    ihl = (packet[0] & 0x0F) * 4
    typ, _, _, rid, rseq = struct.unpack("!BBHHH", packet[ihl:ihl + 8])
    return typ == 0 and rid == ident and rseq == seq


def mtu_of(sock: socket.socket, dev: str) -> int:
    """The MTU of ``dev`` in the namespace ``sock`` belongs to (``SIOCGIFMTU``)."""
    return struct.unpack("16si12x", fcntl.ioctl(sock.fileno(), SIOCGIFMTU, struct.pack("16si12x", dev.encode(), 0)))[1]


def dont_fragment(sock: socket.socket) -> None:
    sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO)
