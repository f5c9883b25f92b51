"""Decoding the few headers podlab's lessons are about: Ethernet, ARP, IPv4, ICMP, UDP, TCP and VXLAN.

Pure functions over bytes, used by tests (to assert what a capture holds) and by ``capture --decode`` when tshark
is missing. A VXLAN frame (UDP to port 8472 as flannel uses, or 4789, the IANA port) is decoded into its outer
addresses, its VNI and the inner frame, decoded the same way.
"""
from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

ETH_P_IP, ETH_P_ARP, ETH_P_8021Q = 0x0800, 0x0806, 0x8100
VXLAN_PORTS = (8472, 4789)
PROTO_NAMES = {1: "ICMP", 6: "TCP", 17: "UDP"}


@dataclass(frozen=True)
class Frame:
    src_mac: str = ""
    dst_mac: str = ""
    ethertype: int = 0
    src: str = ""  # IPv4 addresses, empty if not IPv4
    dst: str = ""
    proto: str = ""  # ICMP, TCP, UDP, ARP, or a number
    sport: int | None = None
    dport: int | None = None
    icmp_type: int | None = None
    vni: int | None = None  # set on a VXLAN frame, which then carries ``inner``
    inner: "Frame | None" = None

    def summary(self) -> str:
        if self.inner is not None:
            return (f"VXLAN VNI {self.vni} {self.src}:{self.sport} > {self.dst}:{self.dport} "
                    f"[{self.inner.summary()}]")
        if self.proto == "ARP":
            return f"ARP {self.src} > {self.dst}"
        if not self.src:
            return f"ethertype 0x{self.ethertype:04x} {self.src_mac} > {self.dst_mac}"
        ports = f":{self.sport} > {self.dst}:{self.dport}" if self.sport is not None else f" > {self.dst}"
        extra = {0: " echo reply", 8: " echo request"}.get(self.icmp_type, "") if self.proto == "ICMP" else ""
        return f"{self.proto} {self.src}{ports}{extra}"


def _mac(b: bytes) -> str:
    return ":".join(f"{x:02x}" for x in b)


def _ip(b: bytes) -> str:
    return str(ipaddress.IPv4Address(b))


def decode_ethernet(data: bytes) -> Frame:
    if len(data) < 14:
        return Frame()
    dst, src = _mac(data[0:6]), _mac(data[6:12])
    etype = struct.unpack_from("!H", data, 12)[0]
    off = 14
    if etype == ETH_P_8021Q and len(data) >= 18:
        etype = struct.unpack_from("!H", data, 16)[0]
        off = 18
    if etype == ETH_P_ARP and len(data) >= off + 28:
        return Frame(src, dst, etype, _ip(data[off + 14:off + 18]), _ip(data[off + 24:off + 28]), "ARP")
    if etype != ETH_P_IP:
        return Frame(src, dst, etype)
    return _ipv4(data[off:], Frame(src, dst, etype))


def _ipv4(data: bytes, eth: Frame) -> Frame:
    if len(data) < 20 or data[0] >> 4 != 4:
        return eth
    ihl = (data[0] & 0x0F) * 4
    proto = data[9]
    src, dst = _ip(data[12:16]), _ip(data[16:20])
    l4 = data[ihl:]
    name = PROTO_NAMES.get(proto, str(proto))
    base = dict(src_mac=eth.src_mac, dst_mac=eth.dst_mac, ethertype=eth.ethertype, src=src, dst=dst, proto=name)
    if proto == 1 and len(l4) >= 1:
        return Frame(**base, icmp_type=l4[0])
    if proto in (6, 17) and len(l4) >= 4:
        sport, dport = struct.unpack_from("!HH", l4)
        if proto == 17 and dport in VXLAN_PORTS and len(l4) >= 16 and l4[8] & 0x08:
            vni = int.from_bytes(l4[12:15], "big")
            return Frame(**base, sport=sport, dport=dport, vni=vni, inner=decode_ethernet(l4[16:]))
        return Frame(**base, sport=sport, dport=dport)
    return Frame(**base)
