"""``podlab``: the command line. Verbs follow kubectl where kubectl has one (get, exec, describe, ...).

Each group of verbs lives in its own module with a ``register(subparsers)`` function; ``COMMAND_MODULES`` lists
them. Every read command takes ``-o json``. Exit codes: 0 success, 1 generic failure, 2 invalid topology or
usage, 3 the lab or a namespace already exists, 4 not found, 5 missing dependency, 6 timeout or pods not
Running; ``exec`` passes the command's own exit code through.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from emulator.errors import PodlabError

COMMAND_MODULES = [
    "emulator.cli.lab_cmds",
    "emulator.cli.get_cmds",
    "emulator.cli.exec_cmd",
    "emulator.cli.describe_cmds",
    "emulator.cli.apply_cmds",
    "emulator.cli.bgp_cmds",
    "emulator.cli.fault_cmds",
    "emulator.cli.describe_node",
    "emulator.cli.pod_cmds",
    "emulator.cli.svc_cmds",
    "emulator.cli.check_cmds",
    "emulator.cli.tool_cmds",
    "emulator.cli.link_cmds",
    "emulator.cli.mn_cmds",
    "emulator.cli.kubeconfig_cmds",
]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="podlab", description="Kubernetes pod networking on real Linux namespaces")
    p.add_argument("--lab", help="the lab to act on (needed when several are up)")
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    for mod in COMMAND_MODULES:
        try:
            module = importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:  # a verb group not installed in this tree is left out; any other import error shows
                raise
            continue
        module.register(sub)
    for sp in sub.choices.values():  # --lab is accepted after the verb too
        if "--lab" not in sp._option_string_actions:
            sp.add_argument("--lab", default=argparse.SUPPRESS, help="the lab to act on")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    after: list[str] | None = None
    if "--" in argv:  # `podlab run x --rm -- sh -c ...`: everything after -- is the command, untouched
        i = argv.index("--")
        argv, after = argv[:i], argv[i + 1:]
    args = parser().parse_args(argv)
    if after is not None:
        if not hasattr(args, "command"):
            print(f"podlab {args.verb}: takes no command after --", file=sys.stderr)
            return 2
        args.command = list(args.command or []) + after
    if os.geteuid() != 0:
        print("podlab: needs root (network namespaces); run it with sudo", file=sys.stderr)
        return 1
    try:
        return int(args.fn(args) or 0)
    except PodlabError as e:
        print(f"podlab: error: {e}", file=sys.stderr)
        return e.exit_code or 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
