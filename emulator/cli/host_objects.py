"""What a multi-host lab's controller holds itself, shown from its store: the Services, Endpoints and
NetworkPolicies it pushes to every host, and the Deployments (with the status its reconcile wrote) whose pods it
spreads over them (``hosts.services``, ``hosts.netpols``, ``hosts.deploy_across``). ``host_cmds`` sends ``get`` and
``describe deploy`` of a multi-host lab here; everything else is asked of the hosts.
"""
from __future__ import annotations

import argparse

from emulator.cli import common, output
from emulator.hosts import controller


def get(a: argparse.Namespace, lab: str, kind: str, names: list[str]) -> int:
    """Services, Endpoints and NetworkPolicies (the same objects every host has been pushed) and Deployments (with
    the status the controller's reconcile wrote) from the controller's store."""
    from emulator.cli import netpol_cmds, svc_cmds
    from emulator.hosts import services
    ns = None if getattr(a, "all_namespaces", False) else (getattr(a, "namespace", None) or "default")
    store = services.store_of(lab)
    objs = sorted(store.list(kind, ns=ns), key=lambda o: (o["metadata"].get("namespace") or "default",
                                                           o["metadata"]["name"]))
    items = common.select(objs, names, {"networkpolicies": "networkpolicy"}.get(kind, kind.rstrip("s")), lab, ns)
    if kind == "deployments":
        items = [{**o, "status": store.get_status(kind, o["metadata"]["name"], o["metadata"].get("namespace")
                                                  or "default") or {}} for o in items]
    if a.output == "json":
        output.emit_json(common.one_or_list(items, names))
        return 0
    table = {"services": svc_cmds.service_table, "endpoints": svc_cmds.endpoints_table,
             "deployments": svc_cmds.deployment_table, "networkpolicies": netpol_cmds.netpol_table}[kind]
    headers, rows = table(None, items, False if kind == "networkpolicies" else a.output == "wide")  # type: ignore
    if ns is None:
        headers = ["NAMESPACE", *headers]
        rows = [[o["metadata"].get("namespace") or "default", *row] for o, row in zip(items, rows)]
    output.table(headers, rows)
    return 0


def describe_deployment(lab: str, a: argparse.Namespace) -> int:
    """``describe deploy NAME`` of a multi-host lab: the Deployment from the controller's store, its pods from
    every host (each with its node and host)."""
    from emulator.errors import NotFoundError
    from emulator.hosts import services
    from emulator.services import deployments as depctl
    name = a.name if a.name else str(a.kind).split("/", 1)[-1]
    ns = getattr(a, "namespace", None) or "default"
    store = services.store_of(lab)
    dep = store.get("deployments", name, ns)
    if dep is None:
        raise NotFoundError("deployment", name, f"namespace {ns} of multi-host lab {lab}")
    st = store.get_status("deployments", name, ns) or {}
    rs = depctl.replicaset_name(dep)
    pods = sorted((p for p in controller.status(lab)["pods"] if (p.get("namespace") or "default") == ns
                   and p["name"].startswith(rs + "-")), key=lambda p: p["name"])
    if a.output == "json":
        output.emit_json({"deployment": {**dep, "status": st}, "pods": [p["name"] for p in pods]})
        return 0
    spec = dep["spec"]
    for k, v in [("Name", name), ("Namespace", ns),
                 ("Selector", ",".join(f"{k}={v}" for k, v in spec["selector"].get("matchLabels", {}).items())),
                 ("Replicas", f"{spec.get('replicas', 1)} desired | {st.get('updatedReplicas', 0)} updated | "
                              f"{st.get('replicas', 0)} total | {st.get('availableReplicas', 0)} available"),
                 ("NewReplicaSet", rs)]:
        print(f"{k + ':':<16}{v}")
    print("Pods:")
    for p in pods:
        print(f"  {p['name']:<32} {p['phase']:<18} {p.get('ip') or '<none>':<15} {p.get('node')} (host {p['host']})")
    return 0
