"""pcap stream splitting, our pcapng writer/reader, the packet decoder and the decode summary."""
from __future__ import annotations

import io
import shutil
import struct

import pytest

from emulator.tools import decode, packets, pcapng


def eth(src_ip: str, dst_ip: str, payload: bytes, proto: int, smac: bytes = b"\x0a\x58\x0a\xf4\x01\x02") -> bytes:
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, 0, 64, proto, 0,
                     bytes(map(int, src_ip.split("."))), bytes(map(int, dst_ip.split("."))))
    return b"\x0a\x58\x0a\xf4\x02\x03" + smac + b"\x08\x00" + ip + payload


def icmp_echo(src: str, dst: str) -> bytes:
    return eth(src, dst, b"\x08\x00\x00\x00\x00\x01\x00\x01" + b"x" * 16, 1)


def vxlan(outer_src: str, outer_dst: str, inner: bytes, vni: int = 1) -> bytes:
    vx = b"\x08\x00\x00\x00" + vni.to_bytes(3, "big") + b"\x00"
    udp = struct.pack("!HHHH", 40000, 8472, 8 + len(vx) + len(inner), 0) + vx + inner
    return eth(outer_src, outer_dst, udp, 17)


def pcap_stream(frames: list[bytes]) -> bytes:
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)
    for i, f in enumerate(frames):
        out += struct.pack("<IIII", 1700000000, 1000 * i, len(f), len(f)) + f
    return out


def test_stream_split_at_any_byte() -> None:
    frames = [icmp_echo("10.244.1.2", "10.244.2.3"), b"\x01" * 60, icmp_echo("10.244.2.3", "10.244.1.2")]
    data = pcap_stream(frames)
    s = pcapng.PcapStream()
    got = []
    for i in range(0, len(data), 7):
        got += s.feed(data[i:i + 7])
    assert [p.data for p in got] == frames
    assert s.linktype == 1
    assert got[1].ts_us == 1700000000 * 1_000_000 + 1000


def test_stream_rejects_garbage() -> None:
    with pytest.raises(pcapng.PcapError):
        pcapng.PcapStream().feed(b"\x00" * 24)


def test_pcapng_round_trip_keeps_point_names_and_order() -> None:
    ifaces = [pcapng.Interface("web-1:eth0", "eth0 of pod web-1"), pcapng.Interface("node-1:flannel.1")]
    pkts = [pcapng.Packet(2_000_001, b"b" * 61, 61, 1), pcapng.Packet(1_000_000, b"a" * 60, 60, 0)]
    buf = io.BytesIO()
    pcapng.write_file(buf, ifaces, pkts)
    data = buf.getvalue()
    assert len(data) % 4 == 0
    got_ifaces, got = pcapng.read(data)
    assert [i.name for i in got_ifaces] == ["web-1:eth0", "node-1:flannel.1"]
    assert got_ifaces[0].description == "eth0 of pod web-1"
    assert [(p.ts_us, p.iface, p.data) for p in got] == [(1_000_000, 0, b"a" * 60), (2_000_001, 1, b"b" * 61)]


def test_decode_vxlan_frame() -> None:
    inner = icmp_echo("10.244.1.2", "10.244.2.3")
    fr = packets.decode_ethernet(vxlan("192.168.56.11", "192.168.56.12", inner))
    assert (fr.src, fr.dst, fr.proto, fr.dport, fr.vni) == ("192.168.56.11", "192.168.56.12", "UDP", 8472, 1)
    assert fr.inner is not None
    assert (fr.inner.src, fr.inner.dst, fr.inner.proto, fr.inner.icmp_type) == ("10.244.1.2", "10.244.2.3", "ICMP", 8)
    assert "VXLAN VNI 1" in fr.summary() and "echo request" in fr.summary()


def test_decode_non_ip() -> None:
    fr = packets.decode_ethernet(b"\xff" * 12 + b"\x86\xdd" + b"\x00" * 40)
    assert fr.src == "" and fr.ethertype == 0x86DD


def _write(tmp_path) -> str:
    path = str(tmp_path / "x.pcapng")
    frames = [icmp_echo("10.244.1.2", "10.244.2.3"),
              vxlan("192.168.56.11", "192.168.56.12", icmp_echo("10.244.1.2", "10.244.2.3"))]
    with open(path, "wb") as f:
        pcapng.write_file(f, [pcapng.Interface("web-1:eth0"), pcapng.Interface("node-1:eth0")],
                          [pcapng.Packet(10, frames[0], len(frames[0]), 0),
                           pcapng.Packet(20, frames[1], len(frames[1]), 1)])
    return path


def test_own_decoder_summary(tmp_path) -> None:
    lines, how = decode.decode(_write(tmp_path), use_tshark=False)
    assert how == "podlab"
    assert [(l.point, l.src, l.dst, l.vni) for l in lines] == [
        ("web-1:eth0", "10.244.1.2", "10.244.2.3", None), ("node-1:eth0", "10.244.1.2", "10.244.2.3", 1)]
    assert lines[1].outer_src == "192.168.56.11" and "VXLAN VNI 1" in lines[1].text()


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
def test_tshark_reads_our_pcapng_and_decodes_vxlan_on_8472(tmp_path) -> None:
    lines, how = decode.decode(_write(tmp_path), use_tshark=True)
    assert how == "tshark"
    assert [l.point for l in lines] == ["web-1:eth0", "node-1:eth0"]
    assert (lines[1].vni, lines[1].outer_src, lines[1].outer_dst) == (1, "192.168.56.11", "192.168.56.12")
    assert (lines[1].src, lines[1].dst, lines[1].protocol) == ("10.244.1.2", "10.244.2.3", "ICMP")


def test_parse_tshark_fields() -> None:
    out = "1\tn1:eth0\t0.000100\t192.168.56.11,10.244.1.2\t192.168.56.12,10.244.2.3\t1\tICMP\tEcho (ping) request\n"
    (line,) = decode.parse_tshark(out + "garbage\n")
    assert (line.outer_src, line.src, line.vni, line.time) == ("192.168.56.11", "10.244.1.2", 1, 0.0001)
