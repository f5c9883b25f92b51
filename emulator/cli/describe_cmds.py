"""``describe KIND NAME``: a readable account of one object (events, routes, ...); ``KINDS`` lists the kinds
``describe`` knows and the module that describes each."""
from __future__ import annotations

import argparse
from typing import Callable

from emulator.cli import common, describe_node, netpol_cmds, pod_cmds, svc_cmds
from emulator.cli.common import Kind
from emulator.errors import UsageError
from emulator.lab.api import Lab

Describer = Callable[[Lab, str, argparse.Namespace], int]

#: the kinds ``describe`` knows
KINDS: tuple[Kind[Describer], ...] = (
    Kind(("pods", "pod", "po"), pod_cmds.describe_pod),
    Kind(("nodes", "node", "no"), describe_node.describe_node),
    Kind(("services", "service", "svc"), svc_cmds.describe_service),
    Kind(("deployments", "deployment", "deploy"), svc_cmds.describe_deployment),
    Kind(netpol_cmds.ALIASES, netpol_cmds.describe_netpol),
)


def cmd_describe(a: argparse.Namespace) -> int:
    kind, names = common.kind_and_names(a.kind, [a.name] if a.name else [])
    handler = common.lookup(KINDS, kind, "describe").handler
    if len(names) != 1:
        raise UsageError(f"describe needs one name: podlab describe {kind} NAME", obj=a.kind)
    return handler(Lab.get(a.lab), names[0], a)


def register(sub: argparse._SubParsersAction) -> None:
    s = common.verb(sub, "describe", help="show one object in detail (describe pod web-1, describe node node-1)")
    s.add_argument("kind", help=", ".join(k.names[0] for k in KINDS) + " (or KIND/NAME)")
    s.add_argument("name", nargs="?")
    s.add_argument("-o", "--output", choices=["text", "json"], default="text")
    s.add_argument("-n", "--namespace", help="the Kubernetes namespace (default: default)")
    s.set_defaults(fn=cmd_describe)
