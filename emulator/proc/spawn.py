"""Start a program inside a network namespace without forking Python: ``posix_spawn`` from a thread that has
entered the namespace, so the child inherits it (no ``ip netns exec``, no mount-table copy) unless the
namespace has files under ``/etc/netns/<name>/`` (a pod's resolv.conf, hosts, ...), which need the private mount
namespace ``ip netns exec`` makes. Given a process journal (``emulator.proc.journal``), the program is started
behind its shell lines, so it is recorded there, by itself, before it execs.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from emulator.netlink import netns
from emulator.proc import journal as proc_journal
from emulator.proc.lifecycle import start_time


def spawn(ns_fd: int, exe: str, argv: list[str], log: Path, env: dict[str, str],
          ns_name: str = "", journal: Path | None = None, what: str = "",
          kind: str = "daemon") -> tuple[int, int | None]:
    """Start ``exe`` with ``argv`` inside the namespace ``ns_fd``; return (pid, start time).

    If ``/etc/netns/<ns_name>/`` exists (a pod's own resolv.conf, hosts, ...), the process is started through
    ``ip netns exec``, which bind-mounts those files over /etc in a private mount namespace, exactly as for any
    ``ip netns exec`` user; otherwise directly (no mount-table copy, whose cost grows with the namespaces).
    """
    if not log.parent.is_dir():
        log.parent.mkdir(parents=True, exist_ok=True)
    wrapped = netns.exec_argv(ns_name, [exe, *argv[1:]])
    if wrapped:
        argv, exe = wrapped, shutil.which("ip") or "/usr/sbin/ip"
    if journal is not None:
        argv, exe = proc_journal.wrap(journal, what or os.path.basename(exe), [exe, *argv[1:]], kind), \
            proc_journal.SHELL
    actions = [(os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
               (os.POSIX_SPAWN_OPEN, 1, str(log), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
               (os.POSIX_SPAWN_DUP2, 1, 2)]
    with netns.entered(ns_fd):
        pid = os.posix_spawn(exe, argv, env, file_actions=actions, setsid=True)
    return pid, start_time(pid)


