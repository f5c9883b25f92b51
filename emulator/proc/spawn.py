"""Start a program inside a network namespace without forking Python: ``posix_spawn`` from a thread that has
entered the namespace, so the child inherits it (no ``ip netns exec``, no mount-table copy). When the namespace
has files under ``/etc/netns/<name>/`` (a pod's resolv.conf), the thread also enters the mount namespace that
shows them over /etc (``emulator.proc.etcns``: one per distinct content, shared by every program that needs that
content, so starting a program copies no mount table either). Given a process journal
(``emulator.proc.journal``), the program is started behind its shell lines, so it is recorded there, by itself,
before it execs.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

from emulator.netlink import netns
from emulator.proc import etcns
from emulator.proc import journal as proc_journal
from emulator.proc.lifecycle import start_time

#: the mount namespaces this process has made for namespaces' /etc files
ETC_NAMESPACES = etcns.EtcNamespaces()


def spawn(ns_fd: int, exe: str, argv: list[str], log: Path, env: dict[str, str],
          ns_name: str = "", journal: Path | None = None, what: str = "",
          kind: str = "daemon", etc_fallback: str = "") -> tuple[int, int | None]:
    """Start ``exe`` with ``argv`` inside the namespace ``ns_fd``; return (pid, start time).

    If ``/etc/netns/<ns_name>/`` exists (a pod's own resolv.conf, hosts, ...), the process sees those files over
    /etc, as under ``ip netns exec``, in a mount namespace shared with every program that sees the same files;
    while it does not, the files of ``etc_fallback`` (the directory it will link to), if given.
    """
    if not log.parent.is_dir():
        log.parent.mkdir(parents=True, exist_ok=True)
    mnt = ETC_NAMESPACES.namespace_for(ns_name, etc_fallback) if ns_name else None
    if journal is not None:
        argv, exe = proc_journal.wrap(journal, what or os.path.basename(exe), [exe, *argv[1:]], kind), \
            proc_journal.SHELL
    actions = [(os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
               (os.POSIX_SPAWN_OPEN, 1, str(log), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
               (os.POSIX_SPAWN_DUP2, 1, 2)]
    with netns.entered(ns_fd), (etcns.entered(mnt) if mnt is not None else contextlib.nullcontext()):
        pid = os.posix_spawn(exe, argv, env, file_actions=actions, setsid=True)
    return pid, start_time(pid)


