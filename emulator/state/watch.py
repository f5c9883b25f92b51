"""Waking the agent when its inputs change: inotify on the directories it watches, with a timeout.

An agent sleeps until its node's pod index directory or its CNI configuration directory changes (or the
timeout for its periodic resync expires) instead of polling, so a new pod is picked up within a millisecond
and an idle lab costs no CPU. inotify is reached through libc with ctypes (the standard library has no binding);
if it is unavailable the watcher degrades to sleeping for a short poll interval.

``wait_changes`` is the same wait reporting *which* entries changed ({directory: {file names}}), for a
watcher that keeps a copy of a large directory (the NetworkPolicy enforcer reads a thousand pods once, then
only the files named here); None means "cannot tell" (no inotify, or the kernel's event queue overflowed) and
the caller reads everything again.

``KindsWatcher`` is the same wake-up for a process that follows whole store kinds in every namespace
(kube-proxy: services and endpoints; the controller-manager: pods, their statuses, services, ...).
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
import struct
from pathlib import Path

IN_MODIFY, IN_ATTRIB, IN_MOVED_FROM, IN_MOVED_TO = 0x2, 0x4, 0x40, 0x80
IN_CREATE, IN_DELETE, IN_DELETE_SELF, IN_MOVE_SELF = 0x100, 0x200, 0x400, 0x800
IN_Q_OVERFLOW = 0x4000
IN_NONBLOCK, IN_CLOEXEC = 0o4000, 0o2000000
MASK = IN_MODIFY | IN_ATTRIB | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF


class Watcher:
    def __init__(self, dirs: list[Path], poll: float = 0.02, wake_fd: int = -1) -> None:
        self.poll = poll
        self.fd = -1
        self.dirs = dirs
        self.wds: dict[int, Path] = {}
        self.wake_fd = wake_fd  # e.g. the read end of signal.set_wakeup_fd's pipe: a signal wakes the wait
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            self._add = libc.inotify_add_watch
            self._add.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
            fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
            self.fd = fd if fd >= 0 else -1
        except (OSError, AttributeError):
            self.fd = -1
        self.rearm()

    def rearm(self) -> None:
        """(Re)add watches (a directory created after the watcher, e.g. the CNI dir, is picked up here)."""
        if self.fd < 0:
            return
        for d in self.dirs:
            d.mkdir(parents=True, exist_ok=True)
            wd = self._add(self.fd, str(d).encode(), MASK)
            if wd >= 0:
                self.wds[wd] = d

    def wait(self, timeout: float) -> bool:
        """Block until a change or ``timeout`` seconds; True if something changed (or if we cannot tell)."""
        changes = self.wait_changes(timeout)
        return changes is None or bool(changes)

    def wait_changes(self, timeout: float) -> dict[Path, set[str]] | None:
        """Block until a change or ``timeout`` seconds; {directory: names changed in it} ({} if nothing did),
        or None when it cannot tell."""
        if self.fd < 0:
            import time
            time.sleep(min(self.poll, timeout))
            return None
        r, _, _ = select.select([self.fd] + ([self.wake_fd] if self.wake_fd >= 0 else []), [], [], max(timeout, 0))
        if not r:
            return {}
        if self.wake_fd in r:
            try:
                os.read(self.wake_fd, 4096)
            except BlockingIOError:
                pass  # another reader drained the wake-up first: the wake-up itself was seen
        if self.fd not in r:
            return {}
        out: dict[Path, set[str]] | None = {}
        while True:
            try:
                buf = os.read(self.fd, 65536)
            except BlockingIOError:
                break
            off = 0
            while off + 16 <= len(buf):
                wd, mask, _cookie, ln = struct.unpack_from("iIII", buf, off)
                name = buf[off + 16:off + 16 + ln].rstrip(b"\0").decode(errors="replace")
                off += 16 + ln
                if mask & (IN_DELETE_SELF | IN_MOVE_SELF):
                    self.rearm()
                if mask & IN_Q_OVERFLOW or mask & (IN_DELETE_SELF | IN_MOVE_SELF):
                    out = None
                elif out is not None:
                    out.setdefault(self.wds.get(wd, Path("?")), set()).add(name)
        return out

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class KindsWatcher:
    """Wait until objects of some store kinds may have changed: inotify on each kind's directory and on every
    namespace directory under it (a namespace made later is added when its creation wakes the wait). A process
    that polled ``Store.version`` every 10 ms (kube-proxy, the controller-manager) sleeps here instead; it still
    compares versions after waking, so a spurious wake-up (a temporary file) costs one comparison, and a change
    made before a directory was watched is caught by that comparison too. SIGTERM/SIGINT/SIGCHLD wake the wait
    (``signal.set_wakeup_fd``), so a stopping process never sleeps out its timeout."""

    def __init__(self, kind_dirs: list[Path]) -> None:
        self.kind_dirs = kind_dirs
        self.rfd, wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._wfd = wfd
        try:
            signal.set_wakeup_fd(wfd, warn_on_full_buffer=False)
        except ValueError:  # not the main thread: signals then wake nothing, the timeout still does
            pass
        self.watcher = Watcher(kind_dirs, wake_fd=self.rfd)  # the kinds' directories (made if missing)
        self._refresh()

    def _refresh(self) -> None:
        """Watch every namespace directory there is now (adding a watched one again is a no-op; one that was
        removed and made again is watched anew). Never made here: a namespace's directory that went stays gone."""
        w = self.watcher
        if w.fd < 0:
            return
        for d in self.kind_dirs:
            try:
                subdirs = [e.path for e in os.scandir(d) if e.name[0] != "." and e.is_dir(follow_symlinks=False)]
            except FileNotFoundError:
                continue  # the kind's directory was removed (the store is going): nothing to watch in it
            for sd in subdirs:
                wd = w._add(w.fd, sd.encode(), MASK)
                if wd >= 0:
                    w.wds[wd] = Path(sd)

    def wait(self, timeout: float) -> None:
        """Block until something under the kinds changes (or a signal, or ``timeout`` seconds)."""
        try:
            self.watcher.wait(timeout)
        except InterruptedError:
            pass  # a signal: the caller looks at its flags and the store's versions
        self._refresh()

    def close(self) -> None:
        self.watcher.close()
        with contextlib.suppress(ValueError):
            signal.set_wakeup_fd(-1)
        os.close(self.rfd)
        os.close(self._wfd)
