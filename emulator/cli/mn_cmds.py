"""``podlab cli``: Mininet's CLI over the lab's pods and nodes (see ``emulator.cli.mncli``).

    sudo podlab cli                      interactive: pingall, web-1 ping web-3, dump, nodes, net, trace, capture
    sudo podlab cli --script cmds.mn     run the commands of a file (Mininet's script=)
    echo pingall | sudo podlab cli       commands from standard input
"""
from __future__ import annotations

import argparse

from emulator.cli import common
from emulator.lab.api import Lab


def cmd_cli(a: argparse.Namespace) -> int:
    from emulator.tools import mnimport
    mnimport.load()  # a clear MissingDependencyError before anything else
    from emulator.cli import mncli
    mncli.run(Lab.get(a.lab), script=a.script)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    s = common.verb(sub, "cli", help="Mininet's CLI on the lab (pingall, web-1 ping web-2, dump, trace, capture)")
    s.add_argument("--script", metavar="FILE", help="run the CLI commands in FILE, then exit")
    s.set_defaults(fn=cmd_cli)
