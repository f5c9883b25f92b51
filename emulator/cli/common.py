"""What the CLI's verb modules share: ``--lab`` at every depth, kind tables, picking named objects.

Every (sub-)command parser is made by ``verb``, which gives it ``--lab`` (a parent parser whose default is
suppressed, so ``podlab --lab x link show`` and ``podlab link show --lab x`` both set it and neither clears the
other). Verbs that act on kinds (``get``, ``describe``, ``delete``) hold an explicit table of ``Kind`` rows, one
per kind they know, in their own module: nothing registers itself at import.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Generic, Iterable, TypeVar

from emulator.cli.output import list_object
from emulator.errors import NotFoundError, UsageError

LAB = argparse.ArgumentParser(add_help=False)
LAB.add_argument("--lab", default=argparse.SUPPRESS, help="the lab to act on (needed when several are up)")

H = TypeVar("H")


def verb(sub: argparse._SubParsersAction, name: str, **kw) -> argparse.ArgumentParser:
    """A command (or sub-command) parser under ``sub`` that takes ``--lab`` like every other."""
    return sub.add_parser(name, parents=[LAB], **kw)


def actions(parser: argparse.ArgumentParser, dest: str, metavar: str) -> argparse._SubParsersAction:
    """The sub-commands of a noun (``bgp status``, ``agent stop``): one is required."""
    return parser.add_subparsers(dest=dest, required=True, metavar=metavar)


@dataclass(frozen=True)
class Kind(Generic[H]):
    """One kind a verb knows: its names (the plural first, then kubectl's aliases) and the verb's handler."""

    names: tuple[str, ...]
    handler: H

    @property
    def singular(self) -> str:
        return self.names[1] if len(self.names) > 1 else self.names[0]


def lookup(table: Iterable[Kind[H]], word: str, verb_name: str) -> Kind[H]:
    """The row of ``table`` for ``word`` (any of its names, any case); ``UsageError`` listing the kinds."""
    table = list(table)
    for row in table:
        if word.lower() in row.names:
            return row
    raise UsageError(f'{verb_name}: unknown resource type "{word}"; known: '
                     f'{", ".join(row.names[0] for row in table)}', obj=word)


def add_namespace_flags(s: argparse.ArgumentParser, all_namespaces: bool = False) -> None:
    """``-n/--namespace`` (and ``-A/--all-namespaces`` for listings), as kubectl spells them."""
    s.add_argument("-n", "--namespace", help="the Kubernetes namespace (default: default)")
    if all_namespaces:
        s.add_argument("-A", "--all-namespaces", action="store_true", help="list every namespace")


def namespaced_target(target: str, namespace: str | None) -> str:
    """A target with ``-n NAMESPACE`` applied, as kubectl scopes a pod: ``a`` → ``x/a``, ``pod/a`` → ``pod/x/a``;
    a target that names its namespace already, a node, ``underlay`` or ``external`` is left as it is."""
    if not namespace:
        return target
    head, colon, iface = target.partition(":")
    prefix, slash, rest = head.partition("/")
    if slash and prefix in ("pod", "pods", "po") and "/" not in rest:
        head = f"{prefix}/{namespace}/{rest}"
    elif not slash and head not in ("underlay", "external"):
        head = f"{namespace}/{head}"
    return head + colon + iface


def kind_and_names(kind: str, names: list[str]) -> tuple[str, list[str]]:
    """``pod web-1`` or kubectl's ``pod/web-1``."""
    if "/" in kind:
        kind, first = kind.split("/", 1)
        return kind, [first, *names]
    return kind, list(names)


def select(objs: list[dict], names: list[str], kind: str, lab: str, ns: str | None = None) -> list[dict]:
    """The objects named (all when none is), in the order asked; ``NotFoundError`` for the first missing (``ns``:
    the namespace they were looked for in, for the message)."""
    if not names:
        return objs
    by_name: dict[str, list[dict]] = {}
    for o in objs:
        by_name.setdefault(o["metadata"]["name"], []).append(o)
    for n in names:
        if n not in by_name:
            where = f"lab {lab}" if ns in (None, "default") else f"namespace {ns} of lab {lab}"
            raise NotFoundError(kind, n, where)
    return [o for n in names for o in by_name[n]]


def one_or_list(items: list[dict], names: list[str]) -> dict:
    """kubectl's ``-o json``: the object itself when one name was asked for, else a ``List`` of them."""
    return items[0] if len(names) == 1 and len(items) == 1 else list_object(items)

