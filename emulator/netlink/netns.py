"""Network namespaces as ``ip netns`` makes them, without forking a process per namespace.

A named namespace is a bind mount of a namespace file onto ``/run/netns/<name>``; ``/run/netns`` itself is made a
shared mount (as iproute2 does) so that the mounts propagate into mount namespaces created later (``ip netns
exec``). ``create`` unshares the *calling thread* only (``unshare(CLONE_NEWNET)`` acts per thread), binds
``/proc/thread-self/ns/net`` to the path, optionally opens netlink sockets that are then bound to the new
namespace for their whole life, and returns the thread to where it was. ``enter`` is the per-thread ``setns``
(about 0.01 ms); the process-wide alternatives (``ip netns exec``, ``ip -n``) copy the mount table on every call
and grow slower with the number of namespaces, so nothing on a hot path uses them.
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import socket
from typing import Callable, Iterator, TypeVar

from emulator.errors import NamespaceConflictError, PodlabError

NETNS_RUN_DIR = "/run/netns"
#: Per-namespace files (resolv.conf, hosts) that ``ip netns exec`` bind-mounts over /etc; iproute2 hard-codes
#: this path, so podlab does too, in this one place.
NETNS_ETC_DIR = "/etc/netns"
CLONE_NEWNET = 0x40000000
MS_REC = 16384
MS_BIND = 4096
MS_SHARED = 1 << 20
MNT_DETACH = 2

_libc = ctypes.CDLL(None, use_errno=True)
_rundir_ready = False
T = TypeVar("T")


def _oserror(what: str, obj: str) -> PodlabError:
    err = ctypes.get_errno()
    return PodlabError(f"{what} {obj}: {os.strerror(err)}", obj=obj)


def path(name: str) -> str:
    return os.path.join(NETNS_RUN_DIR, name)


def etc_dir(name: str) -> str:
    """``/etc/netns/<name>``: where a namespace's own /etc files live (see ``NETNS_ETC_DIR``)."""
    return f"{NETNS_ETC_DIR}/{name}"


def exec_argv(name: str, argv: list[str] | tuple[str, ...]) -> list[str] | None:
    """``argv`` run through ``ip netns exec`` when the namespace has its own /etc files (which it bind-mounts
    over /etc in a private mount namespace, as for any ``ip netns exec`` user); None when it has none and a
    plain ``setns`` is enough (no mount-table copy, whose cost grows with the namespaces)."""
    if name and os.path.isdir(etc_dir(name)):
        return ["ip", "netns", "exec", name, *argv]
    return None


def ensure_rundir() -> None:
    """Make /run/netns exist and be a shared mount point (idempotent, like iproute2)."""
    global _rundir_ready
    if _rundir_ready:
        return
    os.makedirs(NETNS_RUN_DIR, mode=0o755, exist_ok=True)
    run = NETNS_RUN_DIR.encode()
    if _libc.mount(b"", run, b"none", MS_SHARED | MS_REC, None) != 0:
        if _libc.mount(run, run, b"none", MS_BIND | MS_REC, None) != 0:
            raise _oserror("cannot bind-mount", NETNS_RUN_DIR)
        if _libc.mount(b"", run, b"none", MS_SHARED | MS_REC, None) != 0:
            raise _oserror("cannot make shared", NETNS_RUN_DIR)
    _rundir_ready = True


def exists(name: str) -> bool:
    return os.path.exists(path(name))


def mounted(name: str) -> bool:
    """True if the named file holds a namespace (a mount of nsfs): ``create`` makes the file before it mounts
    the namespace on it, so a process killed in between leaves an empty file that ``exists`` but cannot be
    entered (setns: EINVAL)."""
    try:
        return os.stat(path(name)).st_dev == os.stat("/proc/self/ns/net").st_dev
    except FileNotFoundError:
        return False


def list_names() -> list[str]:
    try:
        return sorted(os.listdir(NETNS_RUN_DIR))
    except FileNotFoundError:
        return []


def setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        raise _oserror("setns failed for fd", str(fd))


def open_fd(name: str) -> int:
    """An O_RDONLY fd of the named namespace (keeps it alive while open)."""
    try:
        return os.open(path(name), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise PodlabError(f"network namespace {name} does not exist", obj=name) from None


def create(name: str, then: Callable[[], T] | None = None) -> T | None:
    """Create the named namespace; run ``then()`` inside it (e.g. to open sockets) and return its result.

    Raises NamespaceConflictError if the name is taken. On failure nothing is left behind.
    """
    ensure_rundir()
    p = path(name)
    _make_mount_point(p, name)
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.unshare(CLONE_NEWNET) != 0:
            raise _oserror("unshare failed for", name)
        try:
            if _libc.mount(b"/proc/thread-self/ns/net", p.encode(), b"none", MS_BIND, None) != 0:
                raise _oserror("cannot bind-mount namespace", name)
            return then() if then else None
        finally:
            setns(home)
    except BaseException:
        _remove_path(p)
        raise
    finally:
        os.close(home)


AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
O_PATH = 0o10000000
#: (fd, owning pid, (dev, inode)): an O_PATH fd of a mount-point file this process made, taken before anything was
#: mounted on it. Used only by the process that opened it and while the fd still is that file (a daemon closes
#: every inherited fd, and a closed number may be reused).
_anchor: tuple[int, int, tuple[int, int]] = (-1, 0, (0, 0))


def _make_mount_point(p: str, name: str) -> None:
    """Create the empty file a namespace is bind-mounted on (fails if the name is taken).

    The first one a process makes is a new file; the next ones are hard links to that same inode (``linkat`` of
    an fd kept from before the mount covered it). A file system such as ext4 spends far longer allocating an
    inode than adding a name, most of all right after many were deleted (it skips recently freed inodes), and
    removing a link frees nothing. ``ip netns`` sees ordinary entries either way.
    """
    global _anchor
    fd, owner, ident = _anchor
    if fd >= 0 and owner == os.getpid() and _identity(fd) == ident:
        if _libc.linkat(fd, b"", AT_FDCWD, p.encode(), AT_EMPTY_PATH) == 0:
            return
        if ctypes.get_errno() == errno.EEXIST:
            raise NamespaceConflictError(f"network namespace {name} already exists", obj=name)
        os.close(fd)  # another file system: start a new anchor
    _anchor = (-1, 0, (0, 0))
    try:
        os.close(os.open(p, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0))
    except FileExistsError:
        raise NamespaceConflictError(f"network namespace {name} already exists", obj=name) from None
    try:
        fd = os.open(p, O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
        _anchor = (fd, os.getpid(), _identity(fd))
    except OSError:
        pass  # no anchor: the next mount point is a new file again (slower on ext4, equally correct)


def _identity(fd: int) -> tuple[int, int]:
    try:
        st = os.fstat(fd)
    except OSError:
        return (-1, -1)
    return (st.st_dev, st.st_ino)


def _remove_path(p: str) -> None:
    _libc.umount2(p.encode(), MNT_DETACH)
    with contextlib.suppress(FileNotFoundError):  # already gone: removal is idempotent
        os.unlink(p)


def delete(name: str) -> bool:
    """Remove the named namespace (idempotent). The kernel frees it once no process or fd holds it."""
    p = path(name)
    if _libc.umount2(p.encode(), MNT_DETACH) != 0 and ctypes.get_errno() not in (errno.EINVAL, errno.ENOENT):
        raise _oserror("cannot unmount namespace", name)
    try:
        os.unlink(p)
    except FileNotFoundError:
        return False
    return True


@contextlib.contextmanager
def entered(name_or_fd: str | int) -> Iterator[None]:
    """Run the block with the calling thread inside a namespace, then return it to where it was."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    fd = open_fd(name_or_fd) if isinstance(name_or_fd, str) else name_or_fd
    try:
        setns(fd)
        try:
            yield
        finally:
            setns(home)
    finally:
        if isinstance(name_or_fd, str):
            os.close(fd)
        os.close(home)


def socket_in(name_or_fd: str | int, family: int, type_: int, proto: int = 0) -> socket.socket:
    """A socket bound to another namespace for its whole life (the namespace is chosen at creation)."""
    with entered(name_or_fd):
        return socket.socket(family, type_, proto)


def inode(name: str) -> int | None:
    try:
        return os.stat(path(name)).st_ino
    except FileNotFoundError:
        return None


def write_sysctl(key: str, value: str) -> None:
    """Write a per-namespace sysctl of the namespace the calling thread is in (e.g. net.ipv4.ip_forward)."""
    # /proc/sys/net resolves to the network namespace of the task (thread) that opens the file.
    with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
        f.write(value)
