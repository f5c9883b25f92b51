"""``get KIND [NAME ...]``: kubectl-shaped listings (``-o wide``, ``-o json``), one row of ``KINDS`` per kind.

A kind's ``Listing`` gives the objects (``NotFoundError``, exit 4, for a name that does not exist) and the table
of them; ``-o json`` is the same for every kind, as kubectl's: one object when one name was asked for
(``get pod web-1 -o json``), else ``{"apiVersion": "v1", "kind": "List", "items": [...]}``.

Namespaced kinds are scoped as kubectl scopes them: ``-n NS`` (default ``default``), or ``-A`` for every
namespace, which adds a NAMESPACE column first (``cmd_get`` adds it: a kind's table never has one). An empty
listing says kubectl's ``No resources found in NS namespace.`` on stderr.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Any, Callable

from emulator.cli import common, container_cmds, host_cmds, netpol_cmds, output, routing_view, svc_cmds
from emulator.cli.common import Kind, add_namespace_flags  # noqa: F401 (add_namespace_flags: the verbs' too)
from emulator.lab.api import Lab

Rows = tuple[list[str], list[list[Any]]]


@dataclass(frozen=True)
class Listing:
    #: the objects named (all if none) in the namespace (None: every one), NotFoundError if missing
    items: Callable[[Lab, list[str], str | None], list[dict]]
    table: Callable[[Lab, list[dict], bool], Rows]  # (headers, rows); the bool: -o wide
    namespaced: bool = True


def scope(a: argparse.Namespace) -> str | None:
    """The namespace a listing covers: ``-n`` (default ``default``), or None for ``-A``."""
    return None if getattr(a, "all_namespaces", False) else (getattr(a, "namespace", None) or "default")


# -- pods ----------------------------------------------------------------------------------------------------
def pod_items(lab: Lab, names: list[str], ns: str | None = "default") -> list[dict]:
    objs = [o for o in (lab.store.with_status("pods", n, s) for s, n in lab.store.keys("pods", ns=ns)) if o]
    return common.select(objs, names, "pod", lab.name, ns)


def pod_table(lab: Lab, objs: list[dict], wide: bool) -> Rows:
    headers = ["NAME", "READY", "STATUS", "RESTARTS", "AGE"] + (["IP", "NODE"] if wide else [])
    rows = []
    for o in objs:
        st = o["status"]
        row = [o["metadata"]["name"], output.pod_ready(st, o["spec"]), output.pod_status_word(st),
               output.pod_restarts(st), output.age(o["metadata"].get("creationTimestamp"))]
        if wide:
            row += [st.get("podIP"), o["spec"].get("nodeName")]
        rows.append(row)
    return headers, rows


# -- nodes ---------------------------------------------------------------------------------------------------
def node_routing_state(lab: Lab, node: str, mode: str) -> str:
    """The ROUTING column: the mode, plus what the mode reports for this node (e.g. BGP sessions)."""
    from emulator import routing
    try:
        state = routing_view.status_word(mode, routing.get(mode).node_report(lab.name, node))
    except Exception as e:  # a status probe must not break a listing; the reason is shown in the column
        state = f"unknown ({e})"
    return f"{mode} ({state})" if state else mode


def node_items(lab: Lab, names: list[str], ns: str | None = None) -> list[dict]:
    items = []
    for nv in lab.nodes:
        o = dict(nv.obj)
        o["status"] = {**o["status"], "conditions": [{"type": "Ready", "status": "True" if nv.ready else "False"}]}
        items.append(o)
    return common.select(items, names, "node", lab.name)


def node_table(lab: Lab, items: list[dict], wide: bool) -> Rows:
    rows = [[o["metadata"]["name"], "Ready" if o["status"]["conditions"][0]["status"] == "True" else "NotReady",
             node_routing_state(lab, o["metadata"]["name"], o["metadata"]["annotations"].get("podlab.io/routing")),
             o["spec"]["podCIDR"], o["status"]["addresses"][0]["address"]] for o in items]
    return ["NAME", "STATUS", "ROUTING", "POD-CIDR", "INTERNAL-IP"], rows


# -- namespaces ----------------------------------------------------------------------------------------------
def namespace_items(lab: Lab, names: list[str], ns: str | None = None) -> list[dict]:
    return common.select(list(lab.store.list("namespaces")), names, "namespace", lab.name)


def namespace_table(lab: Lab, objs: list[dict], wide: bool) -> Rows:
    rows = [[o["metadata"]["name"], (o.get("status") or {}).get("phase", "Active"),
             output.age(o["metadata"].get("creationTimestamp"))]
            + ([",".join(f"{k}={v}" for k, v in (o["metadata"].get("labels") or {}).items())] if wide else [])
            for o in objs]
    return ["NAME", "STATUS", "AGE"] + (["LABELS"] if wide else []), rows


#: the kinds ``get`` knows
KINDS: tuple[Kind[Listing], ...] = (
    Kind(("pods", "pod", "po"), Listing(pod_items, pod_table)),
    Kind(("nodes", "node", "no"), Listing(node_items, node_table, namespaced=False)),
    Kind(("namespaces", "namespace", "ns"), Listing(namespace_items, namespace_table, namespaced=False)),
    Kind(("services", "service", "svc"), Listing(svc_cmds.service_items, svc_cmds.service_table)),
    Kind(("endpoints", "endpoint", "ep"), Listing(svc_cmds.endpoints_items, svc_cmds.endpoints_table)),
    Kind(("deployments", "deployment", "deploy"), Listing(svc_cmds.deployment_items, svc_cmds.deployment_table)),
    Kind(netpol_cmds.ALIASES, Listing(netpol_cmds.netpol_items, netpol_cmds.netpol_table)),
    Kind(container_cmds.ALIASES, Listing(container_cmds.container_items, container_cmds.container_table,
                                                namespaced=False)),
)


def cmd_get(a: argparse.Namespace) -> int:
    kind, names = common.kind_and_names(a.kind, a.names)
    listing = common.lookup(KINDS, kind, "get").handler
    multi = host_cmds.multihost_lab(a.lab)
    if multi is not None:
        return host_cmds.get(a, multi, next(k.names[0] for k in KINDS if kind in k.names), list(names))
    lab = Lab.get(a.lab)
    ns = scope(a) if listing.namespaced else None
    items = listing.items(lab, names, ns)
    if a.output == "json":
        output.emit_json(common.one_or_list(items, names))
        return 0
    if not items:
        print("No resources found" + (f" in {ns} namespace." if ns else ""), file=sys.stderr)
        return 0
    headers, rows = listing.table(lab, items, a.output == "wide")
    if listing.namespaced and ns is None:
        headers = ["NAMESPACE", *headers]
        rows = [[o["metadata"].get("namespace") or "default", *row] for o, row in zip(items, rows)]
    output.table(headers, rows)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    s = common.verb(sub, "get", help="list pods, nodes, namespaces, services, endpoints, deployments, networkpolicies, "
                                     "containers (kubectl's columns)")
    s.add_argument("kind", help=", ".join(k.names[0] for k in KINDS) + " (or KIND/NAME)")
    s.add_argument("names", nargs="*")
    s.add_argument("-o", "--output", choices=["text", "wide", "json"], default="text")
    add_namespace_flags(s, all_namespaces=True)
    s.set_defaults(fn=cmd_get)
