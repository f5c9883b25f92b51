"""A store that shares its on-disk layout with the CNI reference ``host-local`` IPAM plugin.

Layout (what containernetworking-plugins' ``host-local`` writes, checked against v1.1.1 on this machine)::

    <dataDir>/<network>/                 e.g. /var/lib/cni/networks/cbr0/
        10.244.1.2                       "<containerID>\\r\\n<ifname>"  (no trailing newline, mode 0644)
        last_reserved_ip.0               "10.244.1.2"  last IP handed out from range set 0 (no newline)
        lock                             empty; flock(LOCK_EX) on it around every operation (mode 0750)

An address is reserved by creating its file with ``O_CREAT|O_EXCL``; releasing deletes it. Both programs take
an exclusive ``flock`` on ``lock`` for every operation, so ours and the real binary can work on one directory
at the same time. Files holding only a container ID (written by old plugin versions) are understood: they
match that container for any interface, as the real plugin does.

Allocation order is the real plugin's round-robin: start just after ``last_reserved_ip.0`` when it lies in
the range (otherwise at the range start), wrap around once, skip the gateway (and the network and broadcast
addresses). A released address is therefore not handed out again until the range has been walked through.
The exhaustion message is the real one, e.g. ``failed to allocate for range 0: no IP addresses available in
range set: 10.244.1.1-10.244.1.254``. One difference on purpose: ``allocate`` for a container+interface that
already holds an address in the subnet returns that address (the real plugin refuses a duplicate ADD).

Speed: ``allocate`` is on a pod's start-up path and the directory holds up to ~250 files; reading them all
on each call (as the Go plugin does) costs about a millisecond. So each store keeps an index (file name ->
inode, owner) and re-lists the directory only when it may have changed, judged from the directory's (inode,
mtime, ctime) noted under the lock after our own last change. Any create or unlink changes them provided the
kernel gives the next change a new timestamp: filesystems with multigrain timestamps (Linux >= 6.13) do after
a ``stat``, which a one-off probe per filesystem detects; elsewhere the note is trusted only once it is older
than ``_SETTLE_NS`` (timestamps are as coarse as a tick). A re-list reads only files whose (name, inode) pair
is new. Owners found in the index are re-read before being acted on (returned or deleted), so a stale index
can at worst miss a file a foreign writer deleted and re-created under the same inode number in between;
``allocations()`` always reads every file. ``last_reserved_ip.0`` is rewritten in place rather than with
O_TRUNC (same bytes): freeing its data block costs ~0.2 ms on ext4.
"""
from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from ipaddress import IPv4Address, IPv4Network, IPv6Address, ip_address
from itertools import chain
from pathlib import Path

from emulator.errors import CniError, IpamExhaustedError

LINE_BREAK = "\r\n"
LAST_IP_FILE = "last_reserved_ip.0"  # range set index 0: podlab uses one range set per network
LOCK_FILE = "lock"
DEFAULT_DATA_DIR = Path("/var/lib/cni/networks")
CNI_ERR_INVALID_CONFIG = 7
_SETTLE_NS = 50_000_000  # a coarse timestamp is at most one tick (<= 10 ms) behind the clock
_FINE_TIMESTAMPS: dict[int, bool] = {}  # st_dev -> does the filesystem give each change a new timestamp?

IPAddress = IPv4Address | IPv6Address
_Entry = tuple[int, str, str, IPAddress]  # inode, container ID, ifname ("" for a legacy file), address


@dataclass(frozen=True)
class _Range:
    """One range of range set 0, as integers (start and end inclusive)."""

    subnet: IPv4Network
    start: int
    end: int
    gateway: int
    network: int
    broadcast: int

    @property
    def label(self) -> str:
        return f"{IPv4Address(self.start)}-{IPv4Address(self.end)}"

    def candidates(self, last: int | None) -> Iterator[int]:
        """Round-robin order: after ``last`` if it is in the range, else from the start; each address once."""
        first = last + 1 if last is not None and self.start <= last <= self.end else self.start
        skip = (self.gateway, self.network, self.broadcast)
        return (n for n in chain(range(first, self.end + 1), range(self.start, first)) if n not in skip)


def _ntoa(n: int) -> str:
    return f"{n >> 24}.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"


def _parse_ip(name: str) -> IPAddress | None:
    """The address a file name stands for; None for ``lock``, ``last_reserved_ip.N`` and anything else."""
    try:
        return ip_address(name) if name[:1].isdigit() or ":" in name else None
    except ValueError:
        return None


def _parse_owner(data: bytes) -> tuple[str, str]:
    """``b"<id>\\r\\n<ifname>"`` -> (id, ifname); a legacy file holding only the ID gives (id, "")."""
    text = data.decode("utf-8", "replace").strip()
    cid, sep, ifname = text.partition(LINE_BREAK)
    return (cid, ifname) if sep else (text, "")


def _config_error(message: str, network: str) -> CniError:
    return CniError(message, obj=network, code=CNI_ERR_INVALID_CONFIG)


@lru_cache(maxsize=64)
def _canonical_range(network: str, subnet: IPv4Network | str, gateway: IPv4Address | str | None,
                     range_start: IPv4Address | str | None, range_end: IPv4Address | str | None) -> _Range:
    """Fill in a range as host-local does: gateway and start default to .1, end to the broadcast - 1."""
    try:
        sub = IPv4Network(subnet, strict=False)
        gw, lo, hi = (None if a is None else IPv4Address(a) for a in (gateway, range_start, range_end))
    except ValueError as exc:
        raise _config_error(f"invalid IPAM range of network {network}: {exc}", network) from None
    if sub.prefixlen > 30:
        raise _config_error(f"Network {sub} too small to allocate from", network)
    for what, addr in (("gateway", gw), ("rangeStart", lo), ("rangeEnd", hi)):
        if addr is not None and addr not in sub:
            raise _config_error(f"{what} {addr} not in network {sub}", network)
    first, bcast = int(sub.network_address), int(sub.broadcast_address)
    start = first + 1 if lo is None else int(lo)
    end = bcast - 1 if hi is None else int(hi)
    if start > end:
        raise _config_error(f"rangeStart {lo} is after rangeEnd {hi} in network {sub}", network)
    return _Range(sub, start, end, first + 1 if gw is None else int(gw), first, bcast)


def _read(path: str, limit: int = 4096) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, IsADirectoryError):
        return None
    try:
        return os.read(fd, limit)
    finally:
        os.close(fd)


class HostLocalStore:
    """The allocations of one network on one node, in ``<data_dir>/<network>/`` (see the module docstring).

    Safe to share between threads; each process (a forked child too) opens its own lock file descriptor.
    """

    def __init__(self, data_dir: Path | str, network: str) -> None:
        if not network or "/" in network or network in (".", ".."):
            raise _config_error(f"invalid network name {network!r}: it names a directory", network)
        self.network = network
        self.directory = Path(data_dir) / network
        self._dir = str(self.directory)
        self._lock_path = os.path.join(self._dir, LOCK_FILE)
        self._last_path = os.path.join(self._dir, LAST_IP_FILE)
        os.makedirs(self._dir, mode=0o755, exist_ok=True)
        self._mutex = threading.Lock()
        self._lock_fd, self._lock_pid, self._lock_id = -1, 0, (0, 0)
        self._entries: dict[str, _Entry] = {}  # the index, by file name
        self._taken_v4: set[int] = set()  # the IPv4 file names, as integers
        self._snapshot: tuple[int, int, int] | None = None  # directory (inode, mtime, ctime) the index matches
        self._snapshot_at = 0
        self._fine: bool | None = None

    def allocate(self, container_id: str, ifname: str, subnet: IPv4Network | str,
                 gateway: IPv4Address | str | None = None, range_start: IPv4Address | str | None = None,
                 range_end: IPv4Address | str | None = None) -> IPv4Address:
        """Reserve the next free address of the range for ``container_id``/``ifname`` (idempotent)."""
        cid = self._check_key(container_id, ifname)
        rng = _canonical_range(self.network, subnet, gateway, range_start, range_end)
        with self._locked():
            self._sync()
            for name in self._names_of(cid, ifname):
                addr = self._entries[name][3]
                if isinstance(addr, IPv4Address) and addr in rng.subnet and self._verify(name, cid, ifname):
                    return addr
            for n in rng.candidates(self._read_last()):
                if n not in self._taken_v4 and self._reserve(_ntoa(n), cid, ifname):
                    return IPv4Address(n)
        raise IpamExhaustedError(
            f"failed to allocate for range 0: no IP addresses available in range set: {rng.label}",
            obj=self.network)

    def release(self, container_id: str, ifname: str) -> list[IPAddress]:
        """Free every address held by ``container_id``/``ifname``; unknown containers are not an error."""
        cid = self._check_key(container_id, ifname)
        freed: list[IPAddress] = []
        with self._locked():
            self._sync()
            held = self._names_of(cid, ifname)
            # As the real plugin: files naming the interface; failing those, legacy files holding only the ID.
            names = [n for n in held if self._entries[n][2] == ifname] or held
            for name in names:
                if not self._verify(name, cid, ifname):
                    continue  # gone, or re-used by someone else since we indexed it
                try:
                    os.unlink(os.path.join(self._dir, name))
                    freed.append(self._entries[name][3])
                except FileNotFoundError:
                    pass  # released by another process meanwhile: the address is free either way
                self._forget(name)
            if names:
                self._take_snapshot()
        return sorted(freed, key=lambda a: (a.version, int(a)))

    def get(self, container_id: str, ifname: str) -> IPv4Address | None:
        """The IPv4 address held by ``container_id``/``ifname``, or None."""
        cid = self._check_key(container_id, ifname)
        with self._locked():
            self._sync()
            for name in sorted(self._names_of(cid, ifname)):
                addr = self._entries[name][3]
                if isinstance(addr, IPv4Address) and self._verify(name, cid, ifname):
                    return addr
        return None

    def allocations(self) -> dict[IPv4Address, tuple[str, str]]:
        """Every IPv4 allocation on disk -> (container ID, ifname), read afresh from every file."""
        with self._locked():
            self._entries.clear()
            self._rescan()
            return {addr: (cid, ifn) for _, cid, ifn, addr in self._entries.values()
                    if isinstance(addr, IPv4Address)}

    def last_reserved(self) -> IPv4Address | None:
        """The content of ``last_reserved_ip.0`` (the round-robin search starts after it)."""
        with self._locked():
            last = self._read_last()
        return None if last is None else IPv4Address(last)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with self._mutex:
            fd = self._acquire()
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def _acquire(self) -> int:
        """flock the directory's ``lock`` file, re-opening it after a fork or when it was removed/replaced."""
        while True:
            if self._lock_pid != os.getpid() or self._lock_fd < 0:
                if self._lock_fd >= 0 and self._lock_pid != os.getpid():
                    os.close(self._lock_fd)  # inherited: it shares the parent's open file, hence its flock
                os.makedirs(self._dir, mode=0o755, exist_ok=True)
                self._lock_fd = os.open(self._lock_path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o750)
                st = os.fstat(self._lock_fd)
                self._lock_id, self._lock_pid = (st.st_dev, st.st_ino), os.getpid()
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            try:
                st = os.stat(self._lock_path)
                if (st.st_dev, st.st_ino) == self._lock_id:
                    return self._lock_fd
            except FileNotFoundError:
                pass  # the lock file is gone: handled below, as a replaced one
            # The directory or its lock file went away (e.g. a lab cleanup): start over on the new one.
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd, self._snapshot = -1, None

    def _sync(self) -> None:
        """Make the index match the directory (lock held): re-list only when it may have changed."""
        st = os.stat(self._dir)
        if self._fine is None:
            self._fine = self._probe_timestamps(st.st_dev)
            st = os.stat(self._dir)
        if (st.st_ino, st.st_mtime_ns, st.st_ctime_ns) == self._snapshot and (
                self._fine or st.st_mtime_ns < self._snapshot_at - _SETTLE_NS):
            return
        self._rescan()

    def _rescan(self) -> None:
        """Re-list the directory, reading only the files whose (name, inode) is not in the index yet."""
        entries: dict[str, _Entry] = {}
        with os.scandir(self._dir) as it:
            for entry in it:
                name, ino = entry.name, entry.inode()
                old = self._entries.get(name)
                if old is not None and old[0] == ino:
                    entries[name] = old
                elif (addr := _parse_ip(name)) is not None and (data := _read(entry.path)) is not None:
                    entries[name] = (ino, *_parse_owner(data), addr)
        self._entries = entries
        self._taken_v4 = {int(e[3]) for e in entries.values() if isinstance(e[3], IPv4Address)}
        self._take_snapshot()

    def _take_snapshot(self) -> None:
        st = os.stat(self._dir)
        self._snapshot = (st.st_ino, st.st_mtime_ns, st.st_ctime_ns)
        self._snapshot_at = time.time_ns()

    def _probe_timestamps(self, dev: int) -> bool:
        """Does a directory change made after a ``stat`` always get a new mtime here? (once per filesystem)"""
        if dev not in _FINE_TIMESTAMPS:
            probe, fine = os.path.join(self._dir, f".podlab-probe-{os.getpid()}"), True
            try:
                for _ in range(3):
                    before = os.stat(self._dir).st_mtime_ns
                    os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
                    fine = fine and os.stat(self._dir).st_mtime_ns != before
                    os.unlink(probe)
            except OSError:
                fine = False
            _FINE_TIMESTAMPS[dev] = fine
        return _FINE_TIMESTAMPS[dev]

    def _names_of(self, cid: str, ifname: str) -> list[str]:
        """Names indexed as held by ``cid`` on ``ifname``, or by a legacy file of ``cid``."""
        return [n for n, e in self._entries.items() if e[1] == cid and e[2] in (ifname, "")]

    def _forget(self, name: str) -> None:
        entry = self._entries.pop(name, None)
        if entry is not None and isinstance(entry[3], IPv4Address):
            self._taken_v4.discard(int(entry[3]))

    def _remember(self, name: str, entry: _Entry) -> None:
        self._entries[name] = entry
        if isinstance(entry[3], IPv4Address):
            self._taken_v4.add(int(entry[3]))

    def _verify(self, name: str, cid: str, ifname: str) -> bool:
        """Re-read one file: is it still held by ``cid`` (on ``ifname``, or legacy)? Fix the index if not."""
        data = _read(os.path.join(self._dir, name))
        owner = None if data is None else _parse_owner(data)
        if owner is not None and owner[0] == cid and owner[1] in (ifname, ""):
            return True
        entry = self._entries[name]
        self._forget(name)
        if owner is not None:
            self._remember(name, (entry[0], *owner, entry[3]))
        return False

    def _reserve(self, name: str, cid: str, ifname: str) -> bool:
        """Create ``name`` exclusively, holding the owner; then note it as the last reserved address."""
        path = os.path.join(self._dir, name)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except FileExistsError:  # made by someone who does not take the lock: index it, try the next one
            data = _read(path)
            owner = ("", "") if data is None else _parse_owner(data)
            self._remember(name, (0, *owner, IPv4Address(name)))
            return False
        try:
            os.write(fd, f"{cid}{LINE_BREAK}{ifname}".encode())
            ino = os.fstat(fd).st_ino
        except OSError:
            os.close(fd)
            os.unlink(path)
            raise
        os.close(fd)
        self._write_last(name)
        self._remember(name, (ino, cid, ifname, IPv4Address(name)))
        self._take_snapshot()
        return True

    def _read_last(self) -> int | None:
        data = _read(self._last_path, 64)
        try:
            return None if data is None else int(IPv4Address(data.decode("ascii", "replace").strip()))
        except ValueError:
            return None  # as the real plugin: round-robin is lost once, nothing else

    def _write_last(self, name: str) -> None:
        """Same bytes as the Go plugin's os.WriteFile, overwritten in place instead of truncated first."""
        fd = os.open(self._last_path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            data = name.encode()
            os.pwrite(fd, data, 0)
            os.ftruncate(fd, len(data))
        finally:
            os.close(fd)

    def _check_key(self, container_id: str, ifname: str) -> str:
        cid = container_id.strip()  # the real plugin writes strings.TrimSpace(id)
        if not cid or LINE_BREAK in cid:
            raise _config_error(f"invalid container ID {container_id!r}", self.network)
        if not ifname or any(c in ifname for c in "\r\n/"):
            raise _config_error(f"invalid interface name {ifname!r}", self.network)
        return cid

    def __del__(self) -> None:
        if getattr(self, "_lock_fd", -1) >= 0 and self._lock_pid == os.getpid():
            os.close(self._lock_fd)


__all__ = ["DEFAULT_DATA_DIR", "LAST_IP_FILE", "LINE_BREAK", "LOCK_FILE", "HostLocalStore", "IPAddress"]
