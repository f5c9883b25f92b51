"""``get``: kubectl-shaped listings (``-o wide``, ``-o json``), one handler per resource kind.

Namespaced kinds are scoped as kubectl scopes them: ``-n NS`` (default ``default``), or ``-A`` for every
namespace, which adds a NAMESPACE column first (``scope``/``ns_cells``).

Other modules add kinds with ``register_kind(("services", "service", "svc"), handler)``; a handler takes the
``Lab`` and the parsed arguments and returns an exit code.
"""
from __future__ import annotations

import argparse
from typing import Callable

from emulator.cli import output, routing_view
from emulator.errors import PodlabError
from emulator.lab.api import Lab

Handler = Callable[[Lab, argparse.Namespace], int]
KINDS: dict[str, Handler] = {}


def register_kind(aliases: tuple[str, ...], handler: Handler) -> None:
    for a in aliases:
        KINDS[a] = handler


def scope(a: argparse.Namespace) -> str | None:
    """The namespace a listing covers: ``-n`` (default ``default``), or None for ``-A``."""
    return None if getattr(a, "all_namespaces", False) else (getattr(a, "namespace", None) or "default")


def ns_cells(a: argparse.Namespace, obj: dict) -> list[str]:
    """The NAMESPACE cell of a row, with ``-A`` only."""
    return [obj["metadata"].get("namespace") or "default"] if scope(a) is None else []


def ns_header(a: argparse.Namespace) -> list[str]:
    return ["NAMESPACE"] if scope(a) is None else []


def nothing_found(a: argparse.Namespace) -> None:
    import sys
    ns = scope(a)
    print("No resources found" + (f" in {ns} namespace." if ns else ""), file=sys.stderr)


def select(objs: list[dict], names: list[str], kind: str) -> list[dict]:
    if not names:
        return objs
    found = [o for o in objs if o["metadata"]["name"] in names]
    missing = sorted(set(names) - {o["metadata"]["name"] for o in found})
    if missing:
        raise PodlabError(f'{kind} "{missing[0]}" not found', obj=missing[0])
    return found


def get_pods(lab: Lab, a: argparse.Namespace) -> int:
    objs = [o for o in (lab.store.with_status("pods", n, ns) for ns, n in lab.store.keys("pods", ns=scope(a))) if o]
    objs = select(objs, a.names, "pods")
    if a.output == "json":
        output.emit_json({"apiVersion": "v1", "kind": "List", "items": objs})
        return 0
    if not objs:
        nothing_found(a)
        return 0
    headers = ns_header(a) + ["NAME", "READY", "STATUS", "RESTARTS", "AGE"] + (
        ["IP", "NODE"] if a.output == "wide" else [])
    rows = []
    for o in objs:
        st = o["status"]
        row = ns_cells(a, o) + [o["metadata"]["name"], output.pod_ready(st, o["spec"]), output.pod_status_word(st),
               output.pod_restarts(st), output.age(o["metadata"].get("creationTimestamp"))]
        if a.output == "wide":
            row += [st.get("podIP"), o["spec"].get("nodeName")]
        rows.append(row)
    output.table(headers, rows)
    return 0


def node_routing_state(lab: Lab, node: str, mode: str) -> str:
    """The ROUTING column: the mode, plus what the mode reports for this node (e.g. BGP sessions)."""
    from emulator import routing
    try:
        state = routing_view.status_word(mode, routing.get(mode).node_report(lab.name, node))
    except Exception as e:  # a status probe must not break a listing
        state = f"unknown ({e})"
    return f"{mode} ({state})" if state else mode


def get_nodes(lab: Lab, a: argparse.Namespace) -> int:
    items = []
    for nv in lab.nodes:
        o = dict(nv.obj)
        o["status"] = {**o["status"], "conditions": [{"type": "Ready", "status": "True" if nv.ready else "False"}]}
        items.append(o)
    items = select(items, a.names, "nodes")
    if a.output == "json":
        output.emit_json({"apiVersion": "v1", "kind": "List", "items": items})
        return 0
    rows = [[o["metadata"]["name"], "Ready" if o["status"]["conditions"][0]["status"] == "True" else "NotReady",
             node_routing_state(lab, o["metadata"]["name"], o["metadata"]["annotations"].get("podlab.io/routing")),
             o["spec"]["podCIDR"], o["status"]["addresses"][0]["address"]] for o in items]
    output.table(["NAME", "STATUS", "ROUTING", "POD-CIDR", "INTERNAL-IP"], rows)
    return 0


def get_namespaces(lab: Lab, a: argparse.Namespace) -> int:
    objs = select([o for o in lab.store.list("namespaces")], a.names, "namespaces")
    if a.output == "json":
        output.emit_json({"apiVersion": "v1", "kind": "List", "items": objs})
        return 0
    output.table(["NAME", "STATUS", "AGE"] + (["LABELS"] if a.output == "wide" else []),
                 [[o["metadata"]["name"], (o.get("status") or {}).get("phase", "Active"),
                   output.age(o["metadata"].get("creationTimestamp"))]
                  + ([",".join(f"{k}={v}" for k, v in (o["metadata"].get("labels") or {}).items())]
                     if a.output == "wide" else []) for o in objs])
    return 0


register_kind(("pods", "pod", "po"), get_pods)
register_kind(("nodes", "node", "no"), get_nodes)
register_kind(("namespaces", "namespace", "ns"), get_namespaces)


def add_namespace_flags(s: argparse.ArgumentParser, all_namespaces: bool = False) -> None:
    """``-n/--namespace`` (and ``-A/--all-namespaces`` for listings), as kubectl spells them."""
    s.add_argument("-n", "--namespace", help="the Kubernetes namespace (default: default)")
    if all_namespaces:
        s.add_argument("-A", "--all-namespaces", action="store_true", help="list every namespace")


def cmd_get(a: argparse.Namespace) -> int:
    lab = Lab.get(a.lab)
    handler = KINDS.get(a.kind.lower())
    if handler is None:
        known = sorted({k for k in KINDS if len(k) > 3})
        raise PodlabError(f'unknown resource type "{a.kind}"; known: {", ".join(known)}', obj=a.kind)
    return handler(lab, a)


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("get", help="list pods, nodes, ... (kubectl's columns)")
    s.add_argument("kind")
    s.add_argument("names", nargs="*")
    s.add_argument("-o", "--output", choices=["text", "wide", "json"], default="text")
    add_namespace_flags(s, all_namespaces=True)
    s.set_defaults(fn=cmd_get)
