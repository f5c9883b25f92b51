"""Service and Deployment verbs: the handlers ``get svc|ep|deploy``, ``describe svc|deploy``, ``apply`` (kinds
Service and Deployment) and ``delete svc|deploy`` list in their tables, and ``scale deploy NAME --replicas N``.
Listings have kubectl's columns and its scoping (``-n NS``, default ``default``; ``-A`` adds a NAMESPACE column:
``get_cmds``); ``-o json`` everywhere. A name that does not exist is ``NotFoundError`` (exit 4) through
``Lab.get_object``. Applying to a namespace that does not exist (or is being deleted) is refused by name."""
from __future__ import annotations

import argparse
import ipaddress
import time

from emulator.cli import common, output
from emulator.errors import LabTimeoutError, ManifestError, NotFoundError, PodlabError, UsageError
from emulator.lab.api import Lab
from emulator.services import deployments as depctl
from emulator.services import endpoints as epctl
from emulator.services import registry
from emulator.services.parse import ServiceParser
from emulator.services.proxy import names as chain_names
from emulator.services.proxy.state import build as proxy_state


def _need_services(lab: Lab) -> None:
    if not (lab.paths.root / "controller.json").exists():
        raise PodlabError(f"lab {lab.name} runs no kube-proxy or controllers (its topology says 'kubeProxy: none'); "
                          "remove that line and bring the lab up again", obj=lab.name)


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


def _objs(lab: Lab, resource: str, names: list[str], kind: str, ns: str | None) -> list[dict]:
    return common.select(list(lab.store.list(resource, ns=ns)), names, kind, lab.name, ns)


def _ns(a: argparse.Namespace) -> str:
    return getattr(a, "namespace", None) or "default"


# -- get
def service_items(lab: Lab, names: list[str], ns: str | None = "default") -> list[dict]:
    return _objs(lab, "services", names, "service", ns)


def service_table(lab: Lab, objs: list[dict], wide: bool) -> tuple[list[str], list[list]]:
    headers = ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    headers += ["SELECTOR"] if wide else []
    rows = []
    for s in objs:
        spec, meta = s["spec"], s["metadata"]
        row = [meta["name"], spec.get("type", "ClusterIP"), spec.get("clusterIP"), "<none>", ports_text(s),
               output.age(meta.get("creationTimestamp"))]
        if wide:
            row.append(",".join(f"{k}={v}" for k, v in (spec.get("selector") or {}).items()) or "<none>")
        rows.append(row)
    return headers, rows


def endpoints_items(lab: Lab, names: list[str], ns: str | None = "default") -> list[dict]:
    return _objs(lab, "endpoints", names, "endpoints", ns)


def endpoints_table(lab: Lab, objs: list[dict], wide: bool) -> tuple[list[str], list[list]]:
    return ["NAME", "ENDPOINTS", "AGE"], [
        [e["metadata"]["name"], endpoints_text(e), output.age(e["metadata"].get("creationTimestamp"))] for e in objs]


def deployment_items(lab: Lab, names: list[str], ns: str | None = "default") -> list[dict]:
    objs = [dict(o) for o in _objs(lab, "deployments", names, "deployment", ns)]
    for o in objs:
        o["status"] = lab.store.get_status("deployments", o["metadata"]["name"], o["metadata"]["namespace"]) or {}
    return objs


def deployment_table(lab: Lab, objs: list[dict], wide: bool) -> tuple[list[str], list[list]]:
    headers = ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    headers += ["CONTAINERS", "IMAGES", "SELECTOR"] if wide else []
    rows = []
    for d in objs:
        st, spec = d["status"], d["spec"]
        row = [d["metadata"]["name"], f"{st.get('readyReplicas', 0)}/{spec.get('replicas', 1)}", st.get("updatedReplicas", 0),
               st.get("availableReplicas", 0), output.age(d["metadata"].get("creationTimestamp"))]
        if wide:
            cs = spec["template"]["spec"].get("containers", [])
            row += [",".join(c["name"] for c in cs), ",".join(c.get("image", "") for c in cs),
                    ",".join(f"{k}={v}" for k, v in spec["selector"].get("matchLabels", {}).items())]
        rows.append(row)
    return headers, rows


# -- describe
def describe_service(lab: Lab, name: str, a: argparse.Namespace) -> int:
    svc = lab.get_object("services", name, namespace=_ns(a))
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
    dep = lab.get_object("deployments", name, namespace=_ns(a))
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
def _parser(lab: Lab, source: str) -> ServiceParser:
    _need_services(lab)
    return ServiceParser(source, ManifestError, _service_cidr(lab))


def _in_active_namespace(lab: Lab, obj: dict, source: str, parsed):
    from emulator.state import namespaces
    if not namespaces.active(lab.store, parsed.namespace):
        field = "metadata.namespace" if "metadata" in obj else "namespace"
        raise ManifestError(source, field, f"namespace '{parsed.namespace}' does not exist (or is being deleted)",
                            f"create it first (`podlab create namespace {parsed.namespace}`), or choose one of: "
                            f"{', '.join(lab.namespaces)}")
    return parsed


def validate_service(lab: Lab, obj: dict, source: str):
    return _in_active_namespace(lab, obj, source, _parser(lab, source).service(obj, ""))


def validate_deployment(lab: Lab, obj: dict, source: str):
    return _in_active_namespace(lab, obj, source, _parser(lab, source).deployment(obj, ""))


def apply_service(lab: Lab, svc) -> str:
    _, word = registry.put_service(lab.store, svc, _service_cidr(lab))
    return f"service/{svc.name} {word}"


def apply_deployment(lab: Lab, dep) -> str:
    _, word = registry.put_deployment(lab.store, dep)
    return f"deployment.apps/{dep.name} {word}"


def delete_service(lab: Lab, name: str, a: argparse.Namespace) -> str:
    lab.get_object("services", name, namespace=_ns(a))
    lab.store.delete("services", name, _ns(a))
    return f'service "{name}" deleted'


def _wait_pods_gone(lab: Lab, dep: dict, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    ns = dep["metadata"].get("namespace") or "default"
    while any(depctl.owned_by(dep, p) for p in lab.store.list("pods", ns=ns)) or any(
            st.get("name") and lab.store.get("pods", st["name"], ns) is None
            for st in lab.store.list("pods", status=True, ns=ns)):
        if time.monotonic() > deadline:
            raise LabTimeoutError(f"the pods of deployment {dep['metadata']['name']} were not removed in {timeout:.0f}s",
                                obj=dep["metadata"]["name"])
        time.sleep(0.02)


def delete_deployment(lab: Lab, name: str, a: argparse.Namespace) -> str:
    dep = lab.get_object("deployments", name, namespace=_ns(a))
    lab.store.delete("deployments", name, _ns(a))
    for p in list(lab.store.list("pods", ns=_ns(a))):  # the garbage collector's job: owned pods go with their owner
        if depctl.owned_by(dep, p):
            lab.store.delete("pods", p["metadata"]["name"], _ns(a))
    if getattr(a, "wait", True):
        _wait_pods_gone(lab, dep)
    return f'deployment.apps "{name}" deleted'


def cmd_scale(a: argparse.Namespace) -> int:
    kind, names = common.kind_and_names(a.kind, [a.name] if a.name else [])
    if kind.lower() not in ("deploy", "deployment", "deployments") or len(names) != 1:
        raise UsageError("scale needs one deployment: podlab scale deploy NAME --replicas N", obj=a.kind)
    name = names[0]
    if a.replicas < 0:
        raise UsageError("--replicas must be 0 or more", obj=name)
    from emulator.cli import host_cmds
    multi = host_cmds.multihost_lab(a.lab)
    if multi is not None:  # the controller's store holds the Deployment; its pods change on the hosts
        return host_cmds.scale(multi, name, a.replicas, getattr(a, "namespace", None))
    lab = Lab.get(a.lab)
    if registry.scale(lab.store, name, a.replicas, _ns(a)) is None:
        raise NotFoundError("deployment", name, f"lab {lab.name}" if _ns(a) == "default" else
                            f"namespace {_ns(a)} of lab {lab.name}")
    print(f"deployment.apps/{name} scaled")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    s = common.verb(sub, "scale", help="set a deployment's replicas (scale deploy web --replicas 3)")
    s.add_argument("kind", help="deploy (or deploy/NAME)")
    s.add_argument("name", nargs="?")
    s.add_argument("--replicas", type=int, required=True)
    common.add_namespace_flags(s)
    s.set_defaults(fn=cmd_scale)
