"""``podlab``: the command line. Verbs follow kubectl where kubectl has one (get, exec, describe, ...).

Each group of verbs lives in its own module with a ``register(subparsers)`` function; ``COMMAND_MODULES`` lists
them (the CLI's part of the composition root, ``emulator.plugins``, which ``main`` installs first). The verbs that
act on kinds hold their tables of kinds in their own module (``get_cmds.KINDS``, ``describe_cmds.KINDS``,
``apply_cmds.APPLY`` and ``DELETE``); nothing registers itself at import.

One grammar everywhere (``emulator.cli.common``): ``--lab`` before or after the verb at every depth, ``-o`` only
for the output format, ``-f`` only for a file, places in the target grammar of ``emulator.lab.targets``, and
``-o json`` of a list in kubectl's ``List`` envelope. Exit codes: 0 success, 1 generic failure, 2 invalid
topology, manifest or usage, 3 the lab or a namespace already exists, 4 not found, 5 missing dependency,
6 timeout or pods not Running; ``exec`` passes the command's own exit code through.
"""
from __future__ import annotations

import argparse
import os
import sys

from emulator import plugins
from emulator.cli import (apply_cmds, bgp_cmds, check_cmds, describe_cmds, exec_cmd, fault_cmds, get_cmds,
                          host_cmds, kubeconfig_cmds, lab_cmds, link_cmds, mn_cmds, netpol_cmds, pod_cmds, svc_cmds,
                          tool_cmds)
from emulator.errors import PodlabError, UsageError
from emulator.hosts import forward

COMMAND_MODULES = [lab_cmds, get_cmds, exec_cmd, describe_cmds, apply_cmds, pod_cmds, svc_cmds, netpol_cmds, bgp_cmds,
                   fault_cmds, check_cmds, tool_cmds, link_cmds, mn_cmds, kubeconfig_cmds, host_cmds]


#: verbs that act on one machine's lab only: on a multi-host lab they say so instead of "lab not found"
NOT_ACROSS_HOSTS = frozenset({"create", "cli", "netpol", "scale"})


def refuse_across_hosts(args: argparse.Namespace) -> None:
    """UsageError if the verb is not available on the multi-host lab it would act on."""
    if args.verb in NOT_ACROSS_HOSTS:
        lab = host_cmds.multihost_lab(getattr(args, "lab", None))
        if lab is not None:
            raise UsageError(f"podlab {args.verb} is not available across hosts yet (lab {lab} spans "
                             "several hosts; see docs/multihost.md for the verbs that are)", obj=args.verb)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="podlab", description="Kubernetes pod networking on real Linux namespaces")
    p.add_argument("--lab", default=None, help="the lab to act on (needed when several are up)")
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    for module in COMMAND_MODULES:
        module.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    plugins.install()
    argv = list(sys.argv[1:] if argv is None else argv)
    after: list[str] | None = None
    if "--" in argv:  # `podlab run x --rm -- sh -c ...`: everything after -- is the command, untouched
        i = argv.index("--")
        argv, after = argv[:i], argv[i + 1:]
    args = parser().parse_args(argv)
    args.dashdash = after is not None
    if after is not None:
        if not hasattr(args, "command"):
            print(f"podlab {args.verb}: takes no command after --", file=sys.stderr)
            return 2
        args.command = list(args.command or []) + after
    if os.geteuid() != 0:
        print("podlab: needs root (network namespaces); run it with sudo", file=sys.stderr)
        return 1
    try:
        refuse_across_hosts(args)
        if args.verb in forward.VERBS:  # about one pod or node: on a multi-host lab, run on its host
            multi = host_cmds.multihost_lab(getattr(args, "lab", None))
            if multi is not None:
                return host_cmds.forwarded(multi, args, argv)
        return int(args.fn(args) or 0)
    except PodlabError as e:
        print(f"podlab: error: {e}", file=sys.stderr)
        return e.exit_code or 1
    except OSError as e:  # one the code did not name (a file it reads or writes): shown with the file, one line
        where = f"{e.filename}: " if e.filename else ""
        print(f"podlab: error: {where}{e.strerror or e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
