"""Service and Deployment verbs: ``get svc|ep|deploy``, ``describe svc|deploy``, ``apply`` (kinds Service and
Deployment), ``delete svc|deploy``, ``scale deploy NAME --replicas N``. Listings have kubectl's columns and its
scoping (``-n NS``, default ``default``; ``-A`` adds a NAMESPACE column); ``-o json`` everywhere."""
from __future__ import annotations

import argparse
import ipaddress
import time

from emulator.cli import apply_cmds, describe_cmds, get_cmds, output
from emulator.errors import ManifestError, PodlabError, TimeoutError_
from emulator.lab.api import Lab
from emulator.services import deployments as depctl
from emulator.services import endpoints as epctl
from emulator.services import registry
from emulator.services.parse import ServiceParser
from emulator.services.proxy import names as chain_names
from emulator.services.proxy.state import build as proxy_state


def _need_services(lab: Lab) -> None:
    if not (lab.paths.root / "controller.json").exists():
        raise PodlabError(f"lab {lab.name} runs no kube-proxy or controllers; add e.g. 'kubeProxy: {{mode: iptables}}' "
                          "or a 'services:' section to its topology and bring it up again", obj=lab.name)


def _service_cidr(lab: Lab) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network((lab.record.get("cluster") or {}).get("serviceCIDR", "10.96.0.0/12"))


def ports_text(svc: dict) -> str:
    out = []
    for p in svc["spec"].get("ports", []):
        np = f":{p['nodePort']}" if p.get("nodePort") else ""
        out.append(f"{p['port']}{np}/{p.get('protocol', 'TCP')}")
    return ",".join(out) or "<none>"


def endpoints_text(ep: dict | None) -> str:
    addrs = [f"{ip}:{port}" if port else ip for ip, port, _, _ in epctl.addresses(ep)]
    addrs = list(dict.fromkeys(addrs))
    if not addrs:
        return "<none>"
    return ",".join(addrs[:3]) + (f" + {len(addrs) - 3} more..." if len(addrs) > 3 else "")


def _objs(lab: Lab, kind: str, names: list[str], label: str, a: argparse.Namespace) -> list[dict]:
    return get_cmds.select(list(lab.store.list(kind, ns=get_cmds.scope(a))), names, label)


def _ns(a: argparse.Namespace) -> str:
    return getattr(a, "namespace", None) or "default"


# -- get
def get_services(lab: Lab, a: argparse.Namespace) -> int:
    objs = _objs(lab, "services", a.names, "services", a)
    if a.output == "json":
        output.emit_json({"apiVersion": "v1", "kind": "List", "items": objs})
        return 0
    if not objs:
        get_cmds.nothing_found(a)
        return 0
    headers = get_cmds.ns_header(a) + ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    headers += ["SELECTOR"] if a.output == "wide" else []
    rows = []
    for s in objs:
        spec, meta = s["spec"], s["metadata"]
        row = get_cmds.ns_cells(a, s) + [meta["name"], spec.get("type", "ClusterIP"), spec.get("clusterIP"),
               "<none>", ports_text(s), output.age(meta.get("creationTimestamp"))]
        if a.output == "wide":
            row.append(",".join(f"{k}={v}" for k, v in (spec.get("selector") or {}).items()) or "<none>")
        rows.append(row)
    output.table(headers, rows)
    return 0


def get_endpoints(lab: Lab, a: argparse.Namespace) -> int:
    objs = _objs(lab, "endpoints", a.names, "endpoints", a)
    if a.output == "json":
        output.emit_json({"apiVersion": "v1", "kind": "List", "items": objs})
        return 0
    if not objs:
        get_cmds.nothing_found(a)
        return 0
    output.table(get_cmds.ns_header(a) + ["NAME", "ENDPOINTS", "AGE"],
                 [get_cmds.ns_cells(a, e) + [e["metadata"]["name"], endpoints_text(e),
                                             output.age(e["metadata"].get("creationTimestamp"))] for e in objs])
    return 0


def get_deployments(lab: Lab, a: argparse.Namespace) -> int:
    objs = [dict(o) for o in _objs(lab, "deployments", a.names, "deployments", a)]
    for o in objs:
        o["status"] = lab.store.get_status("deployments", o["metadata"]["name"], o["metadata"]["namespace"]) or {}
    if a.output == "json":
        output.emit_json({"apiVersion": "apps/v1", "kind": "List", "items": objs})
        return 0
    if not objs:
        get_cmds.nothing_found(a)
        return 0
    headers = get_cmds.ns_header(a) + ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    headers += ["CONTAINERS", "IMAGES", "SELECTOR"] if a.output == "wide" else []
    rows = []
    for d in objs:
        st, spec = d["status"], d["spec"]
        row = get_cmds.ns_cells(a, d) + [d["metadata"]["name"],
               f"{st.get('readyReplicas', 0)}/{spec.get('replicas', 1)}", st.get("updatedReplicas", 0),
               st.get("availableReplicas", 0), output.age(d["metadata"].get("creationTimestamp"))]
        if a.output == "wide":
            cs = spec["template"]["spec"].get("containers", [])
            row += [",".join(c["name"] for c in cs), ",".join(c.get("image", "") for c in cs),
                    ",".join(f"{k}={v}" for k, v in spec["selector"].get("matchLabels", {}).items())]
        rows.append(row)
    output.table(headers, rows)
    return 0


# -- describe
def describe_service(lab: Lab, name: str, a: argparse.Namespace) -> int:
    svc = lab.store.get("services", name, _ns(a))
    if svc is None:
        raise PodlabError(f'service "{name}" not found', obj=name)
    ep = lab.store.get("endpoints", name, _ns(a))
    if a.output == "json":
        output.emit_json({"service": svc, "endpoints": ep})
        return 0
    spec, meta = svc["spec"], svc["metadata"]
    state = proxy_state([svc], [ep] if ep else [], "", "")
    lines = [("Name", meta["name"]), ("Namespace", meta.get("namespace", "default")),
             ("Labels", ",".join(f"{k}={v}" for k, v in (meta.get("labels") or {}).items()) or "<none>"),
             ("Selector", ",".join(f"{k}={v}" for k, v in (spec.get("selector") or {}).items()) or "<none>"),
             ("Type", spec.get("type", "ClusterIP")), ("IP", spec.get("clusterIP")),
             ("Session Affinity", spec.get("sessionAffinity", "None"))]
    for k, v in lines:
        print(f"{k + ':':<25}{v}")
    by_port = {(sp.port_name, sp.protocol): sp for sp in state.ports}
    for p in spec.get("ports", []):
        sp = by_port.get((p.get("name", ""), p.get("protocol", "TCP").lower()))
        label = p.get("name") or "<unset>"
        print(f"{'Port:':<25}{label}  {p['port']}/{p.get('protocol', 'TCP')}")
        print(f"{'TargetPort:':<25}{p.get('targetPort')}/{p.get('protocol', 'TCP')}")
        if p.get("nodePort"):
            print(f"{'NodePort:':<25}{label}  {p['nodePort']}/{p.get('protocol', 'TCP')}")
        eps = [f"{ip}:{port}" for ip, port, _, pname in epctl.addresses(ep) if pname == p.get("name", "")]
        print(f"{'Endpoints:':<25}{','.join(eps) or '<none>'}")
        if sp is not None:
            print(f"{'kube-proxy (iptables):':<25}{chain_names.svc_chain(sp)}"
                  + (f", {chain_names.ext_chain(sp)}" if sp.node_port else ""))
            print(f"{'kube-proxy (nftables):':<25}{chain_names.nft_service(sp)}")
    return 0


def describe_deployment(lab: Lab, name: str, a: argparse.Namespace) -> int:
    dep = lab.store.get("deployments", name, _ns(a))
    if dep is None:
        raise PodlabError(f'deployment "{name}" not found', obj=name)
    st = lab.store.get_status("deployments", name, _ns(a)) or {}
    pods = [p for p in lab.store.list("pods", ns=_ns(a)) if depctl.owned_by(dep, p)]
    if a.output == "json":
        output.emit_json({"deployment": {**dep, "status": st}, "pods": [p["metadata"]["name"] for p in pods]})
        return 0
    spec = dep["spec"]
    for k, v in [("Name", name), ("Namespace", dep["metadata"].get("namespace", "default")),
                 ("Selector", ",".join(f"{k}={v}" for k, v in spec["selector"].get("matchLabels", {}).items())),
                 ("Replicas", f"{spec.get('replicas', 1)} desired | {st.get('updatedReplicas', 0)} updated | "
                              f"{st.get('replicas', 0)} total | {st.get('availableReplicas', 0)} available"),
                 ("NewReplicaSet", depctl.replicaset_name(dep))]:
        print(f"{k + ':':<16}{v}")
    print("Pods:")
    for p in sorted(pods, key=lambda p: p["metadata"]["name"]):
        pst = lab.store.get_status("pods", p["metadata"]["name"], _ns(a)) or {}
        print(f"  {p['metadata']['name']:<32} {output.pod_status_word(pst):<18} {pst.get('podIP') or '<none>':<15} "
              f"{p['spec'].get('nodeName')}")
    return 0


# -- apply / delete / scale
def _validate(kind: str):
    def validate(lab: Lab, obj: dict, source: str):
        from emulator.state import namespaces
        _need_services(lab)
        p = ServiceParser(source, ManifestError, _service_cidr(lab))
        parsed = p.service(obj, "") if kind == "Service" else p.deployment(obj, "")
        if not namespaces.active(lab.store, parsed.namespace):
            field = "metadata.namespace" if "metadata" in obj else "namespace"
            raise ManifestError(source, field, f"namespace '{parsed.namespace}' does not exist (or is being "
                                "deleted)", f"create it first (`podlab create namespace {parsed.namespace}`), or "
                                f"choose one of: {', '.join(lab.namespaces)}")
        return parsed
    return validate


def _apply_service(lab: Lab, svc) -> str:
    _, word = registry.put_service(lab.store, svc, _service_cidr(lab))
    return f"service/{svc.name} {word}"


def _apply_deployment(lab: Lab, dep) -> str:
    _, word = registry.put_deployment(lab.store, dep)
    return f"deployment.apps/{dep.name} {word}"


def _delete_service(lab: Lab, name: str, a: argparse.Namespace) -> str:
    if lab.store.get("services", name, _ns(a)) is None:
        raise PodlabError(f'service "{name}" not found', obj=name)
    lab.store.delete("services", name, _ns(a))
    return f'service "{name}" deleted'


def _wait_pods_gone(lab: Lab, dep: dict, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    ns = dep["metadata"].get("namespace") or "default"
    while any(depctl.owned_by(dep, p) for p in lab.store.list("pods", ns=ns)) or any(
            st.get("name") and lab.store.get("pods", st["name"], ns) is None
            for st in lab.store.list("pods", status=True, ns=ns)):
        if time.monotonic() > deadline:
            raise TimeoutError_(f"the pods of deployment {dep['metadata']['name']} were not removed in {timeout:.0f}s",
                                obj=dep["metadata"]["name"])
        time.sleep(0.02)


def _delete_deployment(lab: Lab, name: str, a: argparse.Namespace) -> str:
    dep = lab.store.get("deployments", name, _ns(a))
    if dep is None:
        raise PodlabError(f'deployment "{name}" not found', obj=name)
    lab.store.delete("deployments", name, _ns(a))
    for p in list(lab.store.list("pods", ns=_ns(a))):  # the garbage collector's job: owned pods go with their owner
        if depctl.owned_by(dep, p):
            lab.store.delete("pods", p["metadata"]["name"], _ns(a))
    if getattr(a, "wait", True):
        _wait_pods_gone(lab, dep)
    return f'deployment.apps "{name}" deleted'


def cmd_scale(a: argparse.Namespace) -> int:
    lab = Lab.get(a.lab)
    kind, name = a.kind.lower(), a.name
    if "/" in kind and not name:
        kind, name = kind.split("/", 1)
    if kind not in ("deploy", "deployment", "deployments") or not name:
        raise PodlabError("scale needs a deployment: podlab scale deploy NAME --replicas N", obj=a.kind)
    if a.replicas < 0:
        raise PodlabError("--replicas must be 0 or more", obj=name)
    if registry.scale(lab.store, name, a.replicas, _ns(a)) is None:
        raise PodlabError(f'deployment "{name}" not found', obj=name)
    print(f"deployment.apps/{name} scaled")
    return 0


get_cmds.register_kind(("services", "service", "svc"), get_services)
get_cmds.register_kind(("endpoints", "endpoint", "ep"), get_endpoints)
get_cmds.register_kind(("deployments", "deployment", "deploy"), get_deployments)
describe_cmds.register_kind(("services", "service", "svc"), describe_service)
describe_cmds.register_kind(("deployments", "deployment", "deploy"), describe_deployment)
apply_cmds.register_kind("Service", apply_cmds.KindHandler(_validate("Service"), _apply_service))
apply_cmds.register_kind("Deployment", apply_cmds.KindHandler(_validate("Deployment"), _apply_deployment))
apply_cmds.register_delete(("services", "service", "svc"), _delete_service)
apply_cmds.register_delete(("deployments", "deployment", "deploy"), _delete_deployment)


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("scale", help="set a deployment's replicas (scale deploy web --replicas 3)")
    s.add_argument("kind", help="deploy (or deploy/NAME)")
    s.add_argument("name", nargs="?")
    s.add_argument("--replicas", type=int, required=True)
    get_cmds.add_namespace_flags(s)
    s.set_defaults(fn=cmd_scale)
