"""``exec TARGET [-c CONTAINER] -- CMD``: run a command in a pod's, a node's, the underlay's or the external
host's network namespace (the target grammar of ``emulator.lab.targets``: ``web-1``, ``x/a`` or ``a -n x`` for a
pod of namespace x, ``node-1``, ``node/node-1``, ``underlay``, ``external``); the command's exit code is passed
through.

With ``-c CONTAINER`` (a pod only) the command runs as ``kubectl exec -c`` runs it: with that container's
environment and working directory (``emulator.lab.containers``). Without it, in the namespace with the caller's
environment — for a pod, what its containers see of the network (its /etc/resolv.conf too).

``podlab exec`` becomes the command (it execs in place: same PID, so a SIGKILL of it ends the command and nothing
is left behind). Before it enters the namespace it records itself in the lab's process journal, so ``down`` and
``cleanup`` end a command still running there (a ``sleep`` left in a pod would otherwise keep the pod's
namespace alive after ``down``); once the lab is being removed, nothing is started. What the command starts in the
background (``sh -c 'server &'``, which lives on in the pod as it would under ``kubectl exec``) stays in the
command's process group, which ``exec`` makes its own when no terminal controls it (a script, CI, a test: with a
terminal, the shell's job control has already given it one), so the group's number is the journal's PID and
``down`` ends the group with it (``lifecycle.kill_groups``), even once the command itself has exited.
"""
from __future__ import annotations

import argparse
import os
import sys

from emulator.cli import common, host_cmds
from emulator.errors import UsageError
from emulator.lab import containers
from emulator.lab.api import Lab
from emulator.netlink import netns
from emulator.proc import journal


def cmd_exec(a: argparse.Namespace) -> int:
    argv = list(a.command)
    if not argv or not getattr(a, "dashdash", True):  # as kubectl: options after the target are podlab's
        raise UsageError("exec needs the command after --, e.g. podlab exec web-1 -- ip addr")
    multi = host_cmds.multihost_lab(a.lab)
    if multi is not None:
        return host_cmds.exec_(multi, a.target, argv, interactive=bool(getattr(a, "stdin", False)))
    lab = Lab.get(a.lab)
    place = lab.target(common.namespaced_target(a.target, a.namespace), iface=False)
    env, cwd = None, None
    if a.container is not None:
        if place.kind != "pod":
            raise UsageError(f"-c names a container of a pod; {a.target} is the {place.kind}'s namespace",
                             obj=a.target)
        pod = lab.pod(place.name).obj
        name, _ = containers.choose(pod, a.container)
        ctx = containers.exec_context(pod, name)
        env, cwd = ctx.env, ctx.cwd
    journal.enter(lab.paths.proc_journal, f"exec {' '.join(argv)[:80]} in {place.ns}", kind="tool")
    _own_group()
    wrapped = netns.exec_argv(place.ns, argv)  # the pod's own resolv.conf etc.: as its containers see them
    if wrapped:
        argv = wrapped
    else:
        netns.setns(netns.open_fd(place.ns))
    if cwd is not None:
        os.chdir(cwd)
    try:
        if env is None:
            os.execvp(argv[0], argv)
        os.execvpe(argv[0], argv, env)
    except FileNotFoundError:
        print(f'podlab: exec: "{argv[0]}": executable file not found in $PATH', file=sys.stderr)
        return 127
    return 126  # not reached: exec replaced this process


def _own_group() -> None:
    """Lead a process group of our own (its number: our recorded PID) unless a terminal controls us: then job
    control must keep the terminal's foreground group (Ctrl-C), and an interactive shell made us a leader anyway."""
    if os.getpgrp() == os.getpid():
        return
    try:
        os.close(os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY))
        return  # a controlling terminal: leave job control alone
    except OSError:
        pass  # no controlling terminal (ENXIO): nothing's job control to keep
    try:
        os.setpgid(0, 0)
    except OSError:
        pass  # a session leader already (setsid): its group is its own


def register(sub: argparse._SubParsersAction) -> None:
    s = common.verb(sub, "exec", help="run a command in a pod, node, underlay or external namespace "
                                      "(exec web-1 -c app -- env)")
    s.add_argument("target", help="web-1, pod/web-1, x/a (pod a of namespace x), node-1, node/node-1, underlay or "
                                  "external")
    s.add_argument("-n", "--namespace", help="the pod's Kubernetes namespace (default: default)")
    s.add_argument("-c", "--container", help="a container of the pod: its environment and working directory")
    s.add_argument("-i", "--stdin", action="store_true", help="(on one machine stdin is always passed; on a "
                                                              "multi-host lab -i streams it to the pod's host)")
    s.add_argument("-t", "--tty", action="store_true", help="(accepted for kubectl compatibility)")
    s.add_argument("command", nargs="*", help="after --: the command and its arguments")
    s.set_defaults(fn=cmd_exec)
