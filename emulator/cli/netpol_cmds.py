"""NetworkPolicy verbs: the rows ``get``/``describe``/``apply``/``delete`` hold for the kind (``netpol_items`` and
``netpol_table``, ``describe_netpol``, ``validate_netpol``/``apply_netpol``, ``delete_netpol``), and ``netpol
matrix`` / ``netpol explain`` / ``netpol status``.

A policy is named ``NAME`` or ``NAMESPACE/NAME`` (needed when two namespaces use the name), or ``NAME -n
NAMESPACE``; ``get netpol`` lists one namespace (``-n``, default ``default``) or all (``-A``), as kubectl. ``apply`` and
``delete`` return once the change is live on every node (each enforcer reported it applied), so the next probe
sees it; a lab without enforcers gets them on the first ``apply`` (said on stderr). ``netpol matrix`` prints the
truth table as the upstream e2e suite does (rows from, columns to, ``.`` connected, ``X`` blocked), computed from
the policies; with ``--probe`` it is also measured from inside the pods (``--via service`` probes each pod's
ClusterIP, as upstream), and the cells that differ are marked ``*`` and explained.
"""
from __future__ import annotations

import argparse
import sys

from emulator.cli import common, output
from emulator.errors import NotFoundError, PodlabError, UsageError
from emulator.lab.api import Lab
from emulator.netpol import cluster, component, describe, engine, enforcer, explain, kernel, matrix, parse, probe
from emulator.netpol.model import NetworkPolicy
from emulator.netpol.truthtable import TruthTable
from emulator.state.store import read_json

ALIASES = ("networkpolicies", "networkpolicy", "netpol")
GROUP = "networkpolicy.networking.k8s.io"


def _nodes(lab: Lab) -> list[str]:
    return [n.name for n in lab.nodes]


def _policies(lab: Lab) -> list[NetworkPolicy]:
    return sorted(cluster.ClusterReader(lab.store).policies().values(), key=lambda p: p.key)


def _one(lab: Lab, ref: str, namespace: str | None = None) -> NetworkPolicy:
    ns, _, name = ref.rpartition("/")
    ns = ns or namespace or ""
    found = cluster.find_policies(lab.store, name, ns or None)
    if not found:
        raise NotFoundError("networkpolicy", ref, f"lab {lab.name}")
    if len(found) > 1:
        raise UsageError(f'networkpolicy "{name}" exists in namespaces {", ".join(p.namespace for p in found)}; '
                         f"name one as NAMESPACE/{name}", obj=ref)
    return found[0]


# -- get / describe -------------------------------------------------------------------------------------------
def netpol_items(lab: Lab, names: list[str], ns: str | None = "default") -> list[dict]:
    """The stored manifests (as ``kubectl get netpol -o json``) of namespace ``ns`` (None: all), in the order
    asked; NAME or NAMESPACE/NAME."""
    stored = sorted(lab.store.list(cluster.POLICIES, ns=ns),
                    key=lambda m: (m["metadata"].get("namespace", "default"), m["metadata"]["name"]))
    if not names:
        return stored
    stored = sorted(lab.store.list(cluster.POLICIES),
                    key=lambda m: (m["metadata"].get("namespace", "default"), m["metadata"]["name"]))
    out = []
    for n in names:
        p = _one(lab, n, ns)
        out += [m for m in stored if (m["metadata"].get("namespace", "default"), m["metadata"]["name"]) == p.key]
    return out


def netpol_table(lab: Lab, items: list[dict], wide: bool) -> tuple[list[str], list[list]]:
    c = matrix.cluster_of(lab) if wide else None
    rows = []
    for m in items:
        p = parse.from_store(m)
        row = [p.name, p.pod_selector.text(), output.age(p.created)]
        if c is not None:
            row += [",".join(p.policy_types), sum(1 for q in c.pods if engine.selects(p, q))]
        rows.append(row)
    return ["NAME", "POD-SELECTOR", "AGE"] + (["POLICY-TYPES", "PODS"] if wide else []), rows


def describe_netpol(lab: Lab, name: str, a: argparse.Namespace) -> int:
    p = _one(lab, name, getattr(a, "namespace", None))
    c = matrix.cluster_of(lab)
    if a.output == "json":
        output.emit_json({"policy": p.manifest(), "selected": [q.ref for q in c.pods if engine.selects(p, q)]})
        return 0
    print("\n".join(describe.kubectl_lines(p) + describe.now_lines(p, c)))
    return 0


# -- apply / delete -------------------------------------------------------------------------------------------
def validate_netpol(lab: Lab, obj: dict, source: str) -> NetworkPolicy:
    from emulator.errors import ManifestError
    from emulator.state import namespaces
    p = parse.parse_manifest(obj, source)
    if not namespaces.active(lab.store, p.namespace):
        raise ManifestError(source, "metadata.namespace", f"namespace '{p.namespace}' does not exist (or is being "
                            "deleted)", f"create it first (`podlab create namespace {p.namespace}`), or choose one "
                            f"of: {', '.join(lab.namespaces)}")
    return p


def apply_netpol(lab: Lab, p: NetworkPolicy) -> str:
    component.ensure_running(lab.name, _nodes(lab), output.progress)
    word = cluster.put_policy(lab.store, p)
    component.wait_synced(lab.paths, lab.store, _nodes(lab))
    return f"{GROUP}/{p.name} {word}"


def delete_netpol(lab: Lab, name: str, a: argparse.Namespace) -> str:
    p = _one(lab, name, getattr(a, "namespace", None))
    cluster.delete_policy(lab.store, p.namespace, p.name)
    if getattr(a, "wait", True) and any(component.running(lab.paths, n) for n in _nodes(lab)):
        component.wait_synced(lab.paths, lab.store, _nodes(lab))
    return f'{GROUP} "{p.name}" deleted'


# -- netpol matrix / status -----------------------------------------------------------------------------------
def cmd_matrix(a: argparse.Namespace) -> int:
    lab = Lab.get(a.lab)
    try:
        specs = [matrix.PortSpec.parse(s) for s in (a.port or ["80/TCP"])]
    except ValueError as e:
        print(f"podlab netpol matrix: {e}", file=sys.stderr)
        return 2
    c = matrix.cluster_of(lab)
    pods = matrix.pods_of(c, a.namespace)
    if not pods:
        raise PodlabError("no Running pod with an IP" + (f" in namespace {a.namespace}" if a.namespace else ""))
    # a host of a multi-host lab (``--rows-here``): rows from its own pods only, columns every pod of the lab
    here = {n.name for n in lab.nodes}
    rows = [p for p in pods if p.node in here] if getattr(a, "rows_here", False) else pods
    out, jobs = [], []
    for spec in specs:
        item: dict = {"port": str(spec), "expected": matrix.expected(c, rows, spec, pods)}
        if a.probe and spec.protocol == "SCTP" and not probe.sctp_available():
            item["note"] = ("this kernel has no SCTP sockets (CONFIG_IP_SCTP is not set): SCTP cannot be probed; "
                            "shown is the expected table only")
        elif a.probe and rows:
            jobs.append((item, matrix.Job(spec, a.via, item["expected"], tuple(pods))))
        out.append(item)
    results = matrix.converge_many(lab, rows, [j for _, j in jobs]) if jobs else []
    for (item, job), (got, details) in zip(jobs, results):
        spec = job.spec
        diff = item["expected"].differences(got)
        item.update(observed=got, differ=diff,
                    why={f"{f} -> {t}": engine.evaluate(c, c.pod(f), c.pod(t), spec.port, spec.protocol).text()
                         for f, t in diff},
                    seen={f"{f} -> {t}": details[(f, t)].detail for f, t in diff if (f, t) in details})
    return show_matrix(out, a.output, a.probe, a.via)


def as_json(items: list[dict]) -> list[dict]:
    return [{**i, "expected": i["expected"].to_dict(),
             **({"observed": i["observed"].to_dict(), "differ": [list(d) for d in i["differ"]]}
                if "observed" in i else {})} for i in items]


def from_json(items: list[dict]) -> list[dict]:
    """``as_json`` read back (the items a host printed with ``-o json``)."""
    def table(d: dict) -> TruthTable:
        return TruthTable(d["froms"], d["tos"], {(f, t): v for f, row in d["cells"].items() for t, v in row.items()})
    return [{**i, "expected": table(i["expected"]),
             **({"observed": table(i["observed"]), "differ": [tuple(d) for d in i["differ"]]}
                if "observed" in i else {})} for i in items]


def show_matrix(out: list[dict], fmt: str, probed: bool, via: str) -> int:
    """Print the items (``-o json`` or the tables); 1 if a probed cell differs from the expected one."""
    bad = any(i.get("differ") for i in out)
    if fmt == "json":
        output.emit_json(as_json(out))
        return 1 if bad else 0
    for item in out:
        print(f"{item['port']}" + (f" via {via}" if probed else "") + ":")
        if "observed" not in item:
            print(item["expected"].pretty("  "))
            if "note" in item:
                print(f"  ({item['note']})")
            continue
        want, got, diff = item["expected"], item["observed"], item["differ"]
        print("expected:\n" + want.pretty("  ") + "\nobserved:\n" + got.pretty("  ", set(diff)))
        if diff:
            print("comparison (. same, X different):\n" + want.compare(got).pretty("  "))
            for cell in diff:
                key = f"{cell[0]} -> {cell[1]}"
                print(f"  * {key}: expected {'connected' if want.get(*cell) else 'blocked'}, observed "
                      f"{item['seen'].get(key, '?')}; {item['why'][key]}")
        else:
            print(f"  all {sum(v is not None for v in got.values.values())} probed cells as expected")
    return 1 if bad else 0


def merge_rows(parts: list[list[dict]]) -> list[dict]:
    """The items of several hosts' ``--rows-here`` tables (each host's rows: its own pods) as one lab-wide item per
    port: rows in the order of the columns (every pod of the lab)."""
    out = []
    for k, first in enumerate(parts[0]):
        items = [p[k] for p in parts]
        tos = first["expected"].tos
        merged: dict = {"port": first["port"], "expected": TruthTable(list(tos), list(tos))}
        if "note" in first:
            merged["note"] = first["note"]
        probed = [i for i in items if "observed" in i]
        if probed:
            merged.update(observed=TruthTable(list(tos), list(tos)), differ=[], why={}, seen={})
        for i in items:
            merged["expected"].values.update(i["expected"].values)
            if "observed" in i:
                merged["observed"].values.update(i["observed"].values)
                merged["differ"] += i["differ"]
                merged["why"].update(i["why"])
                merged["seen"].update(i["seen"])
        out.append(merged)
    return out


def _endpoint(c, text: str):
    """A pod as ``NAMESPACE/NAME`` or ``NAME`` (of ``default``, else the one pod of that name), or an IPv4 host."""
    named = [p for p in c.pods if text == p.ref] or sorted(
        (p for p in c.pods if text == p.name), key=lambda p: p.namespace != "default")
    if len(named) > 1 and named[1].namespace != "default" and named[0].namespace != "default":
        raise UsageError(f'pod "{text}" exists in namespaces {", ".join(p.namespace for p in named)}; name one as '
                         f"NAMESPACE/{text}", obj=text)
    if named:
        return named[0]
    try:
        import ipaddress
        ipaddress.IPv4Address(text)
    except ValueError:
        raise PodlabError(f'"{text}" is neither a pod (NAME or NAMESPACE/NAME) nor an IPv4 address', obj=text) from None
    return engine.Host(text)


def cmd_explain(a: argparse.Namespace) -> int:
    lab = Lab.get(a.lab)
    try:
        spec = matrix.PortSpec.parse(a.port)
    except ValueError as e:
        print(f"podlab netpol explain: {e}", file=sys.stderr)
        return 2
    c = matrix.cluster_of(lab)
    src, dst = _endpoint(c, a.src), _endpoint(c, a.dst)
    v = engine.evaluate(c, src, dst, spec.port, spec.protocol)
    tables = {n: kernel.read(lab, n) for n in {getattr(src, "node", ""), getattr(dst, "node", "")} if n
              and component.running(lab.paths, n)}
    print("\n".join(explain.lines(v, src, dst, spec.port, spec.protocol, tables)))
    return 0


def cmd_status(a: argparse.Namespace) -> int:
    lab = Lab.get(a.lab)
    rows, items = [], []
    for n in _nodes(lab):
        st = read_json(enforcer.status_path(lab.paths, n)) or {}
        up = component.running(lab.paths, n)
        items.append({"node": n, "running": up, **st})
        rows.append([n, "Running" if up else "-", st.get("policies", 0), st.get("rules", 0), st.get("syncs", 0),
                     st.get("fullSyncs", 0), st.get("repairs", 0), st.get("lastSyncMs", "-"), st.get("error") or ""])
    if a.output == "json":
        output.emit_json(items)
        return 0
    output.table(["NODE", "ENFORCER", "POLICIES", "RULES", "SYNCS", "FULL", "REPAIRS", "LAST-SYNC-MS", "ERROR"], rows)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    s = common.verb(sub, "netpol", help="NetworkPolicy: the reachability matrix (computed, probed), why a "
                    "connection is allowed or dropped, enforcer status")
    verbs = common.actions(s, "netpol_verb", "VERB")
    m = common.verb(verbs, "matrix", help="the truth table: rows from, columns to, '.' connected, 'X' blocked")
    m.add_argument("-n", "--namespace", help="only the pods of this namespace")
    m.add_argument("--port", action="append", help="PORT/PROTO to test, e.g. 80/TCP (repeatable; default 80/TCP)")
    m.add_argument("--probe", action="store_true", help="also measure it from inside the pods and compare")
    m.add_argument("--via", choices=["pod", "service"], default="pod",
                   help="probe pod IPs (default) or each pod's ClusterIP (as the upstream suite)")
    m.add_argument("-o", "--output", choices=["text", "json"], default="text")
    m.add_argument("--rows-here", action="store_true", help=argparse.SUPPRESS)  # a host's part of a multi-host lab
    m.set_defaults(fn=cmd_matrix)
    e = common.verb(verbs, "explain", help="why SRC may or may not connect to DST: the policy, rule, node, chain, "
                                         "and its packet counter")
    e.add_argument("src", help="a pod (NAME or NAMESPACE/NAME)")
    e.add_argument("dst", help="a pod, or an IPv4 address")
    e.add_argument("--port", default="80/TCP", help="PORT/PROTO (default 80/TCP)")
    e.set_defaults(fn=cmd_explain)
    st = common.verb(verbs, "status", help="each node's enforcer: policies, rules, syncs, repairs")
    st.add_argument("-o", "--output", choices=["text", "json"], default="text")
    st.set_defaults(fn=cmd_status)

