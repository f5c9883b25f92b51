"""``describe KIND NAME``: a readable account of one object (events, routes, ...). Kinds register handlers."""
from __future__ import annotations

import argparse
from typing import Callable

from emulator.errors import PodlabError
from emulator.lab.api import Lab

Handler = Callable[[Lab, str, argparse.Namespace], int]
KINDS: dict[str, Handler] = {}


def register_kind(aliases: tuple[str, ...], handler: Handler) -> None:
    for a in aliases:
        KINDS[a] = handler


def cmd_describe(a: argparse.Namespace) -> int:
    lab = Lab.get(a.lab)
    kind, name = a.kind.lower(), a.name
    if "/" in kind and not name:
        kind, name = kind.split("/", 1)
    handler = KINDS.get(kind)
    if handler is None or not name:
        raise PodlabError(f'describe needs KIND NAME with KIND one of {", ".join(sorted(KINDS)) or "(none)"}',
                          obj=a.kind)
    return handler(lab, name, a)


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("describe", help="show one object in detail (describe pod web-1, describe node node-1)")
    s.add_argument("kind")
    s.add_argument("name", nargs="?")
    s.add_argument("-o", "--output", choices=["text", "json"], default="text")
    s.add_argument("-n", "--namespace", help="the Kubernetes namespace (default: default)")
    s.set_defaults(fn=cmd_describe)
