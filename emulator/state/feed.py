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
then reopens. The counter file holds the journal's generation beside the number (``<rv> <generation>``), which
a rotation increments: a writer reads both in the one ``pread`` it makes anyway and reopens the journal when
the generation moved, so no line is ever appended to a rotated file. Descriptors are per process (a forked
process opens its own, since flock belongs to an open file description and a shared one would not exclude the
parent).

Cost, as every agent pays it per status and event: under the lock one ``pread``/``pwrite`` of the counter, the
object's file, one ``fstat`` and one ``write`` of the journal lines (a line embeds the JSON text the file got,
serialized once; ``line``/``append``), and the flock itself.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
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
        self._gen = self._seen_gen = 0  # the journal generation our descriptor is of / the counter said last
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
        self._gen = self._seen_gen = self._read()[1]
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

    def _read(self) -> tuple[int, int]:
        words = os.pread(self._counter, 64, 0).split()
        return (int(words[0]) if words else 0), (int(words[1]) if len(words) > 1 else 0)

    def _write(self, rv: int, gen: int) -> None:
        os.pwrite(self._counter, f"{rv:>20} {gen:>10}".encode(), 0)

    def current(self) -> int:
        """The last resourceVersion handed out (0 for a new store)."""
        self._open()
        return self._read()[0]

    def next(self, count: int = 1) -> int:
        """The next resourceVersion (call under ``locked``); with ``count``, the last of that many consecutive
        ones (the first is ``next(count) - count + 1``)."""
        self._open()
        rv, self._seen_gen = self._read()
        self._write(rv + count, self._seen_gen)
        return rv + count

    def record(self, rv: int, op: str, kind: str, ns: str, name: str, obj: Any = None, status: bool = False) -> None:
        """Append one change to the journal (call under ``locked``, after the change is visible)."""
        self.append([line(rv, op, kind, ns, name, None if obj is None else json.dumps(obj, separators=(",", ":")),
                          status)])

    def append(self, lines: list[str]) -> None:
        """Append journal lines (``line``) with one write (call under ``locked``, after ``next``)."""
        if not lines:
            return
        if self._seen_gen != self._gen:  # another process rotated the journal since we opened it
            self._reopen()
        if os.fstat(self._journal).st_size >= MAX_JOURNAL:  # full: rotate (we hold the lock: nobody writes)
            os.replace(self.root / JOURNAL, self.root / ROTATED)
            rv, gen = self._read()
            self._write(rv, gen + 1)
            self._seen_gen = gen + 1
            self._reopen()
        os.write(self._journal, "".join(lines).encode())

    def _reopen(self) -> None:
        os.close(self._journal)
        self._journal = os.open(self.root / JOURNAL, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self._gen = self._seen_gen


_FEEDS: dict[tuple[int, str], Feed] = {}
_PLAIN = re.compile(r"[A-Za-z0-9._/-]*")  # DNS names and the like need no escaping


def _quoted(text: str) -> str:
    return f'"{text}"' if _PLAIN.fullmatch(text) else json.dumps(text)


def of(root: Path | str) -> Feed:
    """The feed of the store at ``root`` for this process (one per process and store)."""
    key = (os.getpid(), os.fspath(root))
    feed = _FEEDS.get(key)
    if feed is None:
        feed = _FEEDS[key] = Feed(Path(root))
    return feed


def forget(root: Path | str) -> None:
    """Close and drop this process's feed of the store at ``root``: the store is being made anew (``Store.init``
    of a lab whose directory was removed and made again under the same name, e.g. ``up``/``down``/``up`` in one
    process), and the old descriptors would go on writing to the removed files (and rotate a journal that is
    not there)."""
    feed = _FEEDS.pop((os.getpid(), os.fspath(root)), None)
    if feed is not None:
        feed.close()


def line(rv: int, op: str, kind: str, ns: str, name: str, obj_json: str | None = None, status: bool = False) -> str:
    """One journal line: ``{"rv":..,"op":..,"kind":..,"ns":..,"name":..,"status":..,"obj":<obj_json>}``, the object
    as the JSON text already written to its file (not serialized a second time)."""
    head = (f'{{"rv":{rv},"op":"{op}","kind":"{kind}","ns":{_quoted(ns)},"name":{_quoted(name)},'
            f'"status":{"true" if status else "false"}')
    return head + (f',"obj":{obj_json}}}\n' if obj_json is not None else "}\n")
