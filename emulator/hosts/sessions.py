"""One session per host for the length of one command: opened on first use, reused, closed together.

A verb that asks a host several things (``check``: its pods, then the matrix from its pods, then the DF pings;
``exec``: where the pod is, then the command) pays the SSH handshake and the start of ``podlab host serve`` once
per host, not once per question. A host whose session could not be opened, or broke, gives the same error to
every later question of the command (nothing is retried silently: the command reports the host as it found it).
Thread-safe: the controller asks all hosts at once.

``warm``: the CLI's entry starts connecting to a multi-host lab's hosts before it imports the CLI (~0.7 s), so the
SSH handshakes and the start of ``host serve`` there run while the controller is still starting; the verb then
finds its sessions open (``for_command``). The entry closes them when the command ends.
"""
from __future__ import annotations

import contextlib
import threading
from typing import Iterable, Iterator

from emulator.errors import HostUnreachableError
from emulator.hosts.transport import HostSession
from emulator.topology.hosts_section import Host


class Sessions:
    """``with Sessions() as ss: ss.get(host).request(...)``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._open: dict[str, HostSession] = {}
        self._failed: dict[str, BaseException] = {}

    def __enter__(self) -> "Sessions":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, host: Host) -> HostSession:
        with self._lock:
            lock = self._locks.setdefault(host.name, threading.Lock())
        with lock:
            if host.name in self._failed:
                raise self._failed[host.name]
            s = self._open.get(host.name)
            if s is not None and s.channel is not None:
                return s
            if s is not None:  # a request on it failed (and closed it): the host stays failed for this command
                raise HostUnreachableError(f"host {host.name} stopped answering earlier in this command; fix: "
                                           "check that it is up, then run the command again", obj=host.name)
            s = HostSession(host)
            try:
                s.open()
            except BaseException as e:
                self._failed[host.name] = e
                raise
            self._open[host.name] = s
            return s

    def alive(self) -> bool:
        """Every session opened so far still has its connection (a long-lived user checks before reusing)."""
        with self._lock:
            return all(s.client is not None and (t := s.client.get_transport()) is not None and t.is_active()
                       for s in self._open.values()) and not self._failed

    def close(self) -> None:
        with self._lock:
            sessions, self._open = list(self._open.values()), {}
        for s in sessions:
            s.close()



_warm: Sessions | None = None


def warm(hosts: Iterable[Host]) -> None:
    """Start opening a session to every host now, in the background, for this process's command."""
    global _warm
    pool = _warm = _warm or Sessions()

    def open_one(h: Host) -> None:
        try:
            pool.get(h)
        except BaseException:  # kept in the pool: the verb's own get() raises it, naming the host
            return
    for h in hosts:
        threading.Thread(target=open_one, args=(h,), daemon=True, name=f"warm-{h.name}").start()


@contextlib.contextmanager
def for_command() -> Iterator[Sessions]:
    """The sessions a verb uses: the warmed ones of this command (left open for its later questions), or its own,
    closed when the block ends."""
    if _warm is not None:
        yield _warm
        return
    with Sessions() as ss:
        yield ss


def keep_fresh() -> Sessions:
    """For a process that outlives one command (the API server of a multi-host lab): the pool ``for_command``
    uses, made again if a session in it broke or failed (one command's pool keeps a failure to the end)."""
    global _warm
    if _warm is not None and not _warm.alive():
        close_warm()
    if _warm is None:
        _warm = Sessions()
    return _warm


def close_warm() -> None:
    global _warm
    if _warm is not None:
        _warm.close()
        _warm = None
