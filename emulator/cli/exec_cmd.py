"""``exec``: run a command inside a pod's or a node's network namespace (exit code passed through).

``podlab exec`` becomes the command (it execs in place: same PID, so a SIGKILL of it ends the command and nothing
is left behind). Before it enters the namespace it records itself in the lab's process journal, so ``down`` and
``cleanup`` end a command still running there (a ``sleep`` left in a pod would otherwise keep the pod's
namespace alive after ``down``); once the lab is being removed, nothing is started.
"""
from __future__ import annotations

import argparse
import os
import sys

from emulator.errors import PodlabError
from emulator.lab.api import Lab
from emulator.netlink import netns
from emulator.proc import journal


def cmd_exec(a: argparse.Namespace) -> int:
    lab = Lab.get(a.lab)
    argv = list(a.command)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise PodlabError("exec needs a command after --, e.g. podlab exec web-1 -- ip addr")
    ns = lab.target_ns(a.target if not a.namespace or "/" in a.target else f"{a.namespace}/{a.target}")
    journal.enter(lab.paths.proc_journal, f"exec {' '.join(argv)[:80]} in {ns}", kind="tool")
    wrapped = netns.exec_argv(ns, argv)  # the pod's own resolv.conf etc.: as its containers see them
    if wrapped:
        argv = wrapped
    else:
        netns.setns(netns.open_fd(ns))
    try:
        os.execvp(argv[0], argv)
    except FileNotFoundError:
        print(f'podlab: exec: "{argv[0]}": executable file not found in $PATH', file=sys.stderr)
        return 127



def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("exec", help="run a command in a pod (NAME) or node (node/NAME) namespace")
    s.add_argument("target")
    s.add_argument("-n", "--namespace", help="the pod's Kubernetes namespace (default: default)")
    s.add_argument("command", nargs=argparse.REMAINDER)
    s.set_defaults(fn=cmd_exec)
