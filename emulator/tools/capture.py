"""Multi-point packet capture: one tcpdump per point, merged into one pcapng whose interfaces are the points.

Each point (``web-1:eth0``, ``node-1:flannel.1``, ``underlay:lan0``) gets its own ``tcpdump -w -`` started with
``nsenter --net`` in the point's namespace (recorded first in the lab's process journal, so ``down`` ends a
tcpdump whose ``capture`` was killed); its pcap stream is read by a thread, split into packets
(``pcapng.PcapStream``) and tagged with the point. The result is written by our own pcapng writer: one Interface
Description Block per point (``if_name`` = the point, ``if_description`` = namespace and device), packets in
timestamp order — so Wireshark/tshark show per packet where it was seen (``frame.interface_name``). Live mode
writes the same pcapng incrementally to a stream (``| wireshark -k -i -``).

Readiness: tcpdump prints "listening on ..." on stderr once its socket is open; ``start`` waits for that line
from every point, so traffic sent after ``start`` returns is captured. Stopping: ``-c N`` makes each tcpdump
exit after N packets; ``stop`` sends SIGINT (tcpdump flushes and exits). tcpdump runs with ``-Z root``: it
writes to our pipe, never to a file, so dropping privileges buys nothing and the output file is written by us,
then given to the invoking user (``SUDO_UID``/``SUDO_GID``, or the owner of the directory).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import BinaryIO, Callable, Sequence

from emulator.netlink import netns
from emulator.proc import journal
from emulator.state.paths import LabPaths
from emulator.tools import pcapng
from emulator.errors import MissingDependencyError, ToolError
from emulator.tools.targets import Point

SNAPLEN = 262144


def tcpdump_argv(point: Point, bpf: str | None = None, count: int | None = None,
                 snaplen: int = SNAPLEN) -> list[str]:
    """The command run for one point (pure)."""
    argv = ["nsenter", f"--net={netns.path(point.ns)}", "--", "tcpdump", "-i", point.iface, "-n", "-U",
            "--immediate-mode", "-Z", "root", "-s", str(snaplen), "-w", "-"]
    if count:
        argv += ["-c", str(count)]
    if bpf:
        argv.append(bpf)
    return argv


@dataclass
class _Runner:
    point: Point
    index: int
    proc: subprocess.Popen
    stream: pcapng.PcapStream = field(default_factory=pcapng.PcapStream)
    ready: threading.Event = field(default_factory=threading.Event)
    stderr: list[str] = field(default_factory=list)
    count: int = 0
    threads: list[threading.Thread] = field(default_factory=list)


class Capture:
    """Capture at several points at once; use as a context manager (always stops its tcpdumps)."""

    def __init__(self, points: Sequence[Point], bpf: str | None = None, count: int | None = None,
                 snaplen: int = SNAPLEN, live: BinaryIO | None = None) -> None:
        if not points:
            raise ToolError("capture needs at least one point, e.g. web-1 or node/node-1:flannel.1")
        if shutil.which("tcpdump") is None:
            raise MissingDependencyError("tcpdump is not installed; install it with `apt-get install tcpdump`",
                                         obj="tcpdump")
        self.points, self.bpf, self.count, self.snaplen = list(points), bpf, count, snaplen
        self.packets: list[pcapng.Packet] = []
        self._lock = threading.Lock()
        self._runners: list[_Runner] = []
        self._live = live
        self._writer: pcapng.PcapngWriter | None = None
        self.started = 0.0

    @property
    def interfaces(self) -> list[pcapng.Interface]:
        out = []
        for r in self._runners or []:
            out.append(pcapng.Interface(r.point.label, r.point.description, r.stream.linktype or 1, self.snaplen))
        return out

    def start(self, timeout: float = 5.0) -> "Capture":
        for i, point in enumerate(self.points):
            argv = tcpdump_argv(point, self.bpf, self.count, self.snaplen)
            if point.lab:  # recorded in the lab's process journal by itself, before it execs tcpdump
                argv = journal.wrap(LabPaths(point.lab).proc_journal, f"tcpdump {point.label}", argv)
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
            r = _Runner(point, i, proc)
            self._runners.append(r)
            for fn in (self._read_packets, self._read_stderr):
                t = threading.Thread(target=fn, args=(r,), daemon=True)
                t.start()
                r.threads.append(t)
        deadline = time.monotonic() + timeout
        for r in self._runners:
            while not r.ready.wait(0.05):
                if r.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    why = " ".join(r.stderr).strip() or "no output"
                    raise ToolError(f"tcpdump on {r.point.label} did not start: {why}", obj=r.point.label)
        self.started = time.monotonic()
        return self

    def _read_stderr(self, r: _Runner) -> None:
        assert r.proc.stderr is not None
        for raw in r.proc.stderr:
            line = raw.decode(errors="replace").strip()
            if line.startswith("listening on") or "listening on" in line:
                r.ready.set()
            elif line:
                r.stderr.append(line)

    def _read_packets(self, r: _Runner) -> None:
        assert r.proc.stdout is not None
        fd = r.proc.stdout.fileno()
        while True:
            data = os.read(fd, 65536)
            if not data:
                break
            for p in r.stream.feed(data):
                pkt = pcapng.Packet(p.ts_us, p.data, p.orig_len, r.index)
                with self._lock:
                    r.count += 1
                    self.packets.append(pkt)
                    if self._live is not None:
                        self._live_write(pkt)

    def _live_write(self, pkt: pcapng.Packet) -> None:
        assert self._live is not None
        if self._writer is None:
            # Link types are known once every stream's header arrived; they are Ethernet for every podlab point.
            self._writer = pcapng.PcapngWriter(self._live, self.interfaces)
        try:
            self._writer.write(pkt)
            self._live.flush()
        except BrokenPipeError:  # the reader (wireshark) went away: stop capturing
            self._live = None
            threading.Thread(target=self.stop, daemon=True).start()

    def running(self) -> bool:
        return any(r.proc.poll() is None for r in self._runners)

    def wait(self, duration: float | None = None, until: Callable[[], bool] | None = None) -> bool:
        """Wait until every tcpdump ended (``count`` reached), ``duration`` passed or ``until()`` is true;
        returns True if the tcpdumps ended by themselves."""
        deadline = None if duration is None else time.monotonic() + duration
        while self.running():
            if deadline is not None and time.monotonic() >= deadline:
                return False
            if until is not None and until():
                return False
            time.sleep(0.02)
        return True

    def stop(self) -> None:
        for r in self._runners:
            if r.proc.poll() is None:
                try:
                    r.proc.send_signal(signal.SIGINT)
                except ProcessLookupError:
                    pass  # tcpdump ended on its own (-c reached): it is reaped below
        for r in self._runners:
            try:
                r.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                r.proc.kill()
                r.proc.wait()
            for t in r.threads:
                t.join(timeout=5)
            for pipe in (r.proc.stdout, r.proc.stderr):
                if pipe is not None:
                    pipe.close()

    def __enter__(self) -> "Capture":
        return self.start() if not self._runners else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def per_point(self) -> dict[str, int]:
        return {r.point.label: r.count for r in self._runners}

    def write(self, path: str) -> int:
        """Write the merged pcapng to ``path`` (given to the invoking user); returns the number of packets."""
        with self._lock:
            packets = list(self.packets)
        with open(path, "wb") as f:
            pcapng.write_file(f, self.interfaces, packets)
        give_to_user(path)
        return len(packets)


def output_owner(path: str) -> tuple[int, int] | None:
    """Who should own a file the (root) user asked for: the sudo caller, else a non-root owner of the directory."""
    uid, gid = os.environ.get("SUDO_UID"), os.environ.get("SUDO_GID")
    if uid and uid.isdigit():
        return int(uid), int(gid) if gid and gid.isdigit() else -1
    st = os.stat(os.path.dirname(os.path.abspath(path)))
    return (st.st_uid, st.st_gid) if st.st_uid != 0 else None


def give_to_user(path: str) -> None:
    owner = output_owner(path)
    if owner and os.geteuid() == 0:
        os.chown(path, owner[0], owner[1])
