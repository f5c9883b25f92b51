"""A namespace's own /etc files (``/etc/netns/<name>/resolv.conf``, ...) for the programs started in it, as
``ip netns exec`` shows them, without a mount namespace per program.

``ip netns exec NAME`` unshares a mount namespace for every program it starts (the kernel copies the machine's
whole mount table into it, and a lab adds one mount per namespace under /run/netns, so the copy grows with the
lab), bind-mounts each file of ``/etc/netns/NAME/`` over its namesake in /etc and remounts /sys. A pod's
containers need only the first two of those, and the files' content varies only with the pod's Kubernetes
namespace (its resolv.conf), so ``EtcNamespaces`` makes one mount namespace per distinct set of files and starts
every program that needs that set inside it:

* ``namespace_for(name)`` reads the files of ``/etc/netns/<name>/`` (None when there is no such directory: the
  program needs no mount namespace) and returns the fd of the mount namespace that shows exactly those files over
  /etc, made the first time that content is asked for: the calling thread unshares a mount namespace, makes every
  mount in it a slave (so nothing mounted there can propagate back to the machine, while later mounts of the
  machine still reach it), covers /run/netns with an empty tmpfs (else every namespace mounted on the machine
  would be mounted here too: ``_hide_netns_mounts``), bind-mounts each file over /etc (checking that it still holds the content hashed), keeps an fd of the namespace and returns to its own mount namespace.
* ``entered(fd)`` puts the calling thread in that mount namespace for the duration of a ``posix_spawn``, so the
  child is born in it: ``setns`` into an existing mount namespace copies nothing. The kernel refuses
  ``setns(CLONE_NEWNS)`` to a thread that shares its filesystem context (cwd, root) with other threads, so the
  thread first unshares that (``CLONE_FS``; its cwd is then its own, and is ``/`` after each visit).

No process holds these namespaces: the process that made them holds one fd each, and every program started in
one holds it too, so a namespace lives exactly as long as someone uses it, and an agent that dies leaves nothing
to clean up (the next one makes its own). ``/etc/netns/<name>/`` stays the source of truth: ``ip netns exec
<name>`` still shows the same files, and a file whose content changes gets a new namespace for programs started
after the change (those already running keep what they started with, as with ``ip netns exec``). /sys is the
machine's, as for a program started in a namespace without /etc files.
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import os
import stat
import threading
from typing import Iterator

from emulator.errors import PodlabError
from emulator.netlink import netns

CLONE_FS = 0x200
CLONE_NEWNS = 0x20000
MS_BIND = 4096
MS_REC = 16384
MS_SLAVE = 1 << 19
MS_NOSUID, MS_NODEV, MS_NOEXEC = 2, 4, 8
MNT_DETACH = 2

_libc = ctypes.CDLL(None, use_errno=True)


def _fail(what: str, obj: str) -> PodlabError:
    return PodlabError(f"{what} {obj}: {os.strerror(ctypes.get_errno())}", obj=obj)


def _own_fs() -> None:
    """Give the calling thread its own filesystem context (cwd, root, umask): ``setns(CLONE_NEWNS)`` needs it.
    Done before every use (a no-op when it is already the thread's own): a thread created later by this one
    shares it again."""
    if _libc.unshare(CLONE_FS) != 0:
        raise _fail("cannot unshare the filesystem context of thread", str(threading.get_ident()))


def _setns(fd: int, what: str) -> None:
    if _libc.setns(fd, CLONE_NEWNS) != 0:
        raise _fail("cannot enter mount namespace", what)


@contextlib.contextmanager
def entered(fd: int) -> Iterator[None]:
    """Run the block with the calling thread in mount namespace ``fd``, then return it to its own."""
    _own_fs()
    home = os.open("/proc/thread-self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(fd, f"fd {fd}")
        try:
            yield
        finally:
            _setns(home, "of this thread (returning)")
    finally:
        os.close(home)


def read_files(name: str, fallback: str = "") -> list[tuple[str, int]] | None:
    """The files of ``/etc/netns/<name>/`` as (file name, open fd), sorted; None if there is no such directory.
    ``fallback``: the directory to read instead while ``/etc/netns/<name>`` does not exist yet (the one its link
    will point to: a pod's files are made before the pod starts, its link by the controller-manager beside).
    The caller closes the fds."""
    for d in (netns.etc_dir(name), fallback):
        if not d:
            return None
        try:
            entries = sorted(os.listdir(d))
            break
        except (FileNotFoundError, NotADirectoryError):
            continue  # no such directory: the fallback, if any
    else:
        return None
    out: list[tuple[str, int]] = []
    try:
        for e in entries:
            try:
                fd = os.open(os.path.join(d, e), os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
            except OSError:
                continue  # removed meanwhile, or a symlink: not one of the namespace's own files
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)  # a directory or a device: only plain files are bound over /etc
                continue
            out.append((e, fd))
    except BaseException:
        for _, fd in out:
            os.close(fd)
        raise
    return out


def _digest(files: list[tuple[str, int]]) -> str:
    h = hashlib.sha256()
    for e, fd in files:
        data = os.pread(fd, 1 << 20, 0)
        h.update(f"{e}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()


class EtcNamespaces:
    """The mount namespaces one process has made, by the content of the /etc files they show."""

    def __init__(self) -> None:
        self._by_digest: dict[str, int] = {}
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def namespace_for(self, name: str, fallback: str = "") -> int | None:
        """The fd of the mount namespace showing ``/etc/netns/<name>/``'s files (or, while that does not exist,
        ``fallback``'s) over /etc (made on first use), or None if there is no such directory."""
        files = read_files(name, fallback)
        if files is None:
            return None
        try:
            key = _digest(files)
            with self._lock:
                if self._pid != os.getpid():  # a forked child: the fds were the parent's (and may be closed)
                    self._by_digest, self._pid = {}, os.getpid()
                fd = self._by_digest.get(key)
                if fd is None:
                    fd = self._by_digest[key] = _make(files, name)
            return fd
        finally:
            for _, f in files:
                os.close(f)

    def close(self) -> None:
        with self._lock:
            for fd in self._by_digest.values():
                os.close(fd)
            self._by_digest.clear()

    def __len__(self) -> int:
        return len(self._by_digest)


def _hide_netns_mounts(name: str) -> None:
    """Cover /run/netns in the new mount namespace with an empty tmpfs, the copy of the machine's /run/netns
    (one bind mount per namespace) detached first.

    /run/netns is a shared mount (``netns.ensure_rundir``), so a slave copy of it would receive every namespace
    mounted on the machine afterwards, and every unmount: with one such mount namespace per agent, each
    namespace of a lab became one mount per agent (at 50 nodes × 100 pods, 250,000 mounts: ~19 kB of kernel
    slab per pod, and a teardown that unmounted each namespace 51 times). A program in a pod has no business
    with the machine's namespaces (a container sees none), so it sees an empty /run/netns instead."""
    run = netns.NETNS_RUN_DIR.encode()
    if _libc.umount2(run, MNT_DETACH) != 0:
        if ctypes.get_errno() in (errno.EINVAL, errno.ENOENT):
            return  # not a mount point (no namespace made yet): nothing propagates here
        raise _fail(f"cannot detach {netns.NETNS_RUN_DIR} in the mount namespace for", name)
    if _libc.mount(b"none", run, b"tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, b"size=4k,mode=0755") != 0:
        raise _fail(f"cannot mount an empty {netns.NETNS_RUN_DIR} in the mount namespace for", name)


def _make(files: list[tuple[str, int]], name: str) -> int:
    """A new mount namespace with ``files`` bound over /etc; its fd. The calling thread ends where it began.

    A bind's source must be a mount of the caller's namespace, so each file is opened again inside the new one
    and bound from that fd only if it still holds what was read (and hashed) before."""
    _own_fs()
    home = os.open("/proc/thread-self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.unshare(CLONE_NEWNS) != 0:
            raise _fail("cannot unshare a mount namespace for the /etc files of", name)
        try:
            # Every mount a slave first: a bind made over /etc below must never propagate to the machine.
            if _libc.mount(b"none", b"/", None, MS_REC | MS_SLAVE, None) != 0:
                raise _fail("cannot make the mounts slaves in the mount namespace for", name)
            _hide_netns_mounts(name)
            for e, fd in files:
                target = f"/etc/{e}"
                if not os.path.exists(target):
                    continue  # as ip netns exec: only files /etc has are covered
                src = os.path.join(netns.etc_dir(name), e)
                here = os.open(src, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
                try:
                    if os.pread(here, 1 << 20, 0) != os.pread(fd, 1 << 20, 0):
                        raise PodlabError(f"{src} changed while its mount namespace was made", obj=src)
                    if _libc.mount(f"/proc/thread-self/fd/{here}".encode(), target.encode(), None, MS_BIND,
                                   None) != 0:
                        raise _fail(f"cannot bind {src} over", target)
                finally:
                    os.close(here)
            return os.open("/proc/thread-self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
        finally:
            _setns(home, "of this thread (returning)")
    finally:
        os.close(home)
