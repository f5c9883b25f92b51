"""The store's change feed: one lab-wide, monotonic ``resourceVersion`` and a journal of every change, in order.

Every write to a lab's store (an object, a status, an event; from the CLI, the API server, an agent or a
controller) takes one lock (``store/.lock``, an flock), draws the next number from ``store/resourceVersion``,
stamps it on what it writes, and appends one line to ``store/changes.jsonl``::

    {"rv":42,"op":"put","kind":"pods","ns":"default","name":"web-1","status":false,"obj":{...}}
    {"rv":43,"op":"delete","kind":"pods","ns":"default","name":"web-1","status":false}

all before the lock is released, so the numbers grow in the order the changes became visible, and the journal
holds them in that order. The API server follows the journal (inotify on the store directory) to keep its
watch cache, serve ``watch`` from any recent resourceVersion, and answer 409 Conflict to a stale update (the
check and the write happen under the same lock). Processes that never read the journal only pay for the lock,
two small writes and a stat per change (tens of microseconds on tmpfs).

The journal is rotated under the lock when it passes ``MAX_JOURNAL`` bytes (``changes.jsonl`` becomes
``changes.1.jsonl``, replacing the older one): a follower that still holds the old file reads it to its end,
then reopens. A writer checks under the lock that its descriptor is still the current journal, so no line is
ever appended to a rotated file. Descriptors are per process (a forked process opens its own, since flock
belongs to an open file description and a shared one would not exclude the parent).
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
from pathlib import Path
from typing import Any, Iterator

MAX_JOURNAL = 8 << 20
JOURNAL = "changes.jsonl"
ROTATED = "changes.1.jsonl"
COUNTER = "resourceVersion"
LOCK = ".lock"


class Feed:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._pid = -1
        self._lock = self._counter = self._journal = -1
        self._depth = 0
        self._mutex = threading.RLock()

    def _open(self) -> None:
        if self._pid == os.getpid():
            return
        self.root.mkdir(parents=True, exist_ok=True)
        flags = os.O_CLOEXEC
        self._lock = os.open(self.root / LOCK, os.O_RDWR | os.O_CREAT | flags, 0o644)
        self._counter = os.open(self.root / COUNTER, os.O_RDWR | os.O_CREAT | flags, 0o644)
        self._journal = os.open(self.root / JOURNAL, os.O_WRONLY | os.O_APPEND | os.O_CREAT | flags, 0o644)
        self._pid = os.getpid()
        self._depth = 0
        self._mutex = threading.RLock()  # threads of this process take turns; flock excludes other processes

    def close(self) -> None:
        if self._pid == os.getpid():
            for fd in (self._lock, self._counter, self._journal):
                os.close(fd)
        self._pid = -1

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """The lab-wide write lock (re-entrant within one thread; the threads of a process take turns)."""
        self._open()
        with self._mutex:
            self._depth += 1
            if self._depth == 1:
                fcntl.flock(self._lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0:
                    fcntl.flock(self._lock, fcntl.LOCK_UN)

    def current(self) -> int:
        """The last resourceVersion handed out (0 for a new store)."""
        self._open()
        data = os.pread(self._counter, 32, 0).strip()
        return int(data) if data else 0

    def next(self) -> int:
        """The next resourceVersion (call under ``locked``)."""
        rv = self.current() + 1
        os.pwrite(self._counter, str(rv).rjust(20).encode(), 0)
        return rv

    def record(self, rv: int, op: str, kind: str, ns: str, name: str, obj: Any = None, status: bool = False) -> None:
        """Append one change to the journal (call under ``locked``, after the change is visible)."""
        entry: dict = {"rv": rv, "op": op, "kind": kind, "ns": ns, "name": name, "status": status}
        if obj is not None:
            entry["obj"] = obj
        self._current_journal()
        os.write(self._journal, (json.dumps(entry, separators=(",", ":")) + "\n").encode())

    def _current_journal(self) -> None:
        path = self.root / JOURNAL
        st = os.fstat(self._journal)
        try:
            same = os.stat(path).st_ino == st.st_ino
        except FileNotFoundError:
            same = False
        if same and st.st_size < MAX_JOURNAL:
            return
        if same:  # full: rotate (we hold the lock, so no one else is writing)
            os.replace(path, self.root / ROTATED)
        os.close(self._journal)
        self._journal = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)


_FEEDS: dict[tuple[int, str], Feed] = {}


def of(root: Path) -> Feed:
    """The feed of the store at ``root`` for this process (one per process and store)."""
    key = (os.getpid(), str(root))
    feed = _FEEDS.get(key)
    if feed is None:
        feed = _FEEDS[key] = Feed(Path(root))
    return feed
