"""One line per packet of a podlab capture: where it was seen, and what it is — VXLAN decoded.

With tshark: ``tshark -r FILE -d udp.port==8472,vxlan`` (flannel's port is not VXLAN's IANA port 4789, so
tshark must be told) and ``-T fields`` for the capture point (``frame.interface_name``), the outer and inner
addresses and the VNI. Without tshark (or with ``use_tshark=False``) our own decoder (``packets``) gives the same
columns, so the summary never depends on an optional program.
"""
from __future__ import annotations

import shutil
import subprocess
from dataclasses import asdict, dataclass

from emulator.tools import packets, pcapng
from emulator.errors import ToolError

VXLAN_PORT = 8472
FIELDS = ("frame.number", "frame.interface_name", "frame.time_relative", "ip.src", "ip.dst", "vxlan.vni",
          "_ws.col.Protocol", "_ws.col.Info")


@dataclass(frozen=True)
class Line:
    number: int
    point: str
    time: float
    src: str  # innermost IPv4 source
    dst: str
    outer_src: str  # the outer (underlay) addresses of a VXLAN packet, else empty
    outer_dst: str
    vni: int | None
    protocol: str
    info: str

    def text(self) -> str:
        tunnel = f"  [VXLAN VNI {self.vni}: {self.outer_src} → {self.outer_dst}:{VXLAN_PORT}]" if self.vni else ""
        return (f"{self.number:>4}  {self.time:9.6f}  {self.point:<22} {self.src or '-':>15} → {self.dst or '-':<15} "
                f"{self.protocol:<6} {self.info}{tunnel}")

    def as_dict(self) -> dict:
        return asdict(self)


def tshark_argv(path: str) -> list[str]:
    argv = ["tshark", "-n", "-r", path, "-d", f"udp.port=={VXLAN_PORT},vxlan", "-T", "fields", "-E", "separator=\t",
            "-E", "occurrence=a", "-E", "aggregator=,"]
    for f in FIELDS:
        argv += ["-e", f]
    return argv


def parse_tshark(out: str) -> list[Line]:
    lines = []
    for raw in out.splitlines():
        cols = raw.split("\t")
        if len(cols) < len(FIELDS) or not cols[0].isdigit():
            continue
        num, point, t, srcs, dsts, vni, proto, info = cols[:8]
        s, d = srcs.split(",") if srcs else [], dsts.split(",") if dsts else []
        tunneled = bool(vni) and len(s) > 1
        lines.append(Line(int(num), point, float(t or 0), s[-1] if s else "", d[-1] if d else "",
                          s[0] if tunneled else "", d[0] if tunneled else "", int(vni.split(",")[0]) if vni else None,
                          proto, info))
    return lines


def with_tshark(path: str) -> list[Line]:
    r = subprocess.run(tshark_argv(path), capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise ToolError(f"tshark could not read {path}: {r.stderr.strip()}", obj=path)
    return parse_tshark(r.stdout)


def with_own_decoder(path: str) -> list[Line]:
    with open(path, "rb") as f:
        ifaces, pkts = pcapng.read(f.read())
    t0 = pkts[0].ts_us if pkts else 0
    out = []
    for i, p in enumerate(pkts, 1):
        fr = packets.decode_ethernet(p.data)
        inner = fr.inner or fr
        out.append(Line(i, ifaces[p.iface].name, (p.ts_us - t0) / 1e6, inner.src, inner.dst,
                        fr.src if fr.inner else "", fr.dst if fr.inner else "", fr.vni,
                        inner.proto or f"0x{inner.ethertype:04x}", inner.summary()))
    return out


def decode(path: str, use_tshark: bool | None = None) -> tuple[list[Line], str]:
    """The lines and the decoder used ("tshark" or "podlab")."""
    if use_tshark is None:
        use_tshark = shutil.which("tshark") is not None
    if use_tshark:
        return with_tshark(path), "tshark"
    return with_own_decoder(path), "podlab"
