"""Running a program inside a lab namespace, recorded in the lab's process journal before it runs.

``ns_argv`` is the command line: ``nsenter --net`` into the namespace (it enters only the network namespace, so it
costs the same with 10 or 10,000 namespaces), or ``ip netns exec`` when the namespace has its own /etc files (a
pod's resolv.conf, which it bind-mounts over /etc); and, when a lab owns the namespace, the shell lines of
``emulator.proc.journal.wrap`` in front, so the process names itself (PID, start time) in that lab's journal
before it execs. ``nsenter`` and ``ip netns exec`` both exec in place, so the entry is the PID of the program
that ends up in the namespace: if the command that started it is killed, ``down``/``cleanup`` still end it.
Once the lab's journal is closed (the lab is being removed) the program is not started (exit status 125).
"""
from __future__ import annotations

import subprocess
from typing import Sequence

from emulator.errors import NotFoundError
from emulator.netlink import netns
from emulator.proc import journal
from emulator.state import record
from emulator.state.paths import LabPaths


def ns_argv(ns_name: str, argv: Sequence[str], what: str | None = None) -> list[str]:
    """``argv`` run in namespace ``ns_name``, recorded in its lab's process journal (if a lab owns it)."""
    cmd = netns.exec_argv(ns_name, list(argv)) or ["nsenter", f"--net={netns.path(ns_name)}", "--", *argv]
    return journaled(ns_name, cmd, what or f"{' '.join(argv)[:80]} in {ns_name}")


def journaled(ns_name: str, cmd: list[str], what: str) -> list[str]:
    """``cmd`` (which enters ``ns_name`` and execs in place) preceded by the lines that record it in the journal
    of the lab owning ``ns_name``; unchanged if no lab owns it."""
    lab = record.owner_of_namespace(ns_name)
    return cmd if lab is None else journal.wrap(LabPaths(lab).proc_journal, what, cmd)


def run_in(ns_name: str, argv: Sequence[str], timeout: float | None = 30, check: bool = False,
           input: str | None = None) -> subprocess.CompletedProcess:
    if not netns.exists(ns_name):
        raise NotFoundError("network namespace", ns_name, message=f"network namespace {ns_name} does not exist")
    return subprocess.run(ns_argv(ns_name, argv), capture_output=True, text=True, timeout=timeout, check=check,
                          input=input)


def popen_in(ns_name: str, argv: Sequence[str], what: str | None = None, **kw) -> subprocess.Popen:
    """``subprocess.Popen`` of ``argv`` in namespace ``ns_name`` (recorded like ``run_in``'s)."""
    if not netns.exists(ns_name):
        raise NotFoundError("network namespace", ns_name, message=f"network namespace {ns_name} does not exist")
    return subprocess.Popen(ns_argv(ns_name, argv, what), **kw)
