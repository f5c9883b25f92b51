"""``apply -f`` and ``delete`` on a multi-host lab: each object goes where it lives, then one Services push.

- A Pod is placed by the controller, as the scheduler of one machine places it (``lab.podspec.parse`` over every
  node of every host, with the pods each node holds now), then sent, pinned to that node, to the node's host,
  which applies it as on one machine and answers once it is Running. ``delete pod`` goes to the host that holds it.
- A Namespace is created on every host (each host's store admits its own pods) and in the controller's store.
- A Service is admitted into the controller's store (``hosts.services``: one allocation of ClusterIPs and
  NodePorts for the whole lab); ``delete service`` removes it there.
- A NetworkPolicy is validated as on one machine and stored in the controller's store (``hosts.netpols``);
  ``delete networkpolicy`` removes it there. The lab's first one marks it as one whose policies are pushed.
- A Deployment is admitted into the controller's store too; ``delete deployment`` removes it there and ``scale``
  sets its replicas there.
- Then one ``converge.after_change``: every Deployment's pods created and deleted across the hosts (a deleted pod
  of a Deployment is replaced, a deleted Deployment's pods are collected), then, from that last look at every
  host's pods, the Services with their Endpoints and the NetworkPolicies with each host's view of the other hosts'
  pods pushed to every host. Every kube-proxy and policy enforcer has applied them when the command returns.

Every document is validated before anything is applied (as on one machine). Kinds other than Namespace, Pod,
Service, Deployment and NetworkPolicy are refused by name: not available across hosts yet.
"""
from __future__ import annotations

import ipaddress
from typing import Any, Callable

from emulator.errors import LabNotFoundError, ManifestError, NotFoundError, UsageError
from emulator.hosts import controller, converge, netpols, records, services
from emulator.hosts.fanout import each, raise_first
from emulator.hosts.sessions import for_command
from emulator.lab import podspec
from emulator.netpol import cluster, parse
from emulator.services import registry
from emulator.services.parse import ServiceParser
from emulator.state import namespaces
from emulator.topology.validate import Validator

Progress = Callable[[str], None]
APPLY_KINDS = ("Namespace", "Pod", "Service", "Deployment", "NetworkPolicy")
DELETE_KINDS = ("pods", "services", "deployments", "networkpolicies")
NETPOL_GROUP = "networkpolicy.networking.k8s.io"


def _record(lab: str) -> dict:
    rec = records.load(lab)
    if rec is None:
        raise LabNotFoundError(lab, known=records.all_labs())
    return rec


def _need_services(lab: str, rec: dict, what: str) -> None:
    if not rec.get("services"):
        raise UsageError(f"{what}: multi-host lab {lab} runs no kube-proxy or Services (its topology has no "
                         "services: or kubeProxy: section); add one and bring the lab up again", obj=lab)


def _pin(doc: dict, node: str) -> dict:
    """The pod document bound to ``node`` (``spec.nodeName`` of a manifest, ``node`` of podlab's short form)."""
    if "kind" in doc:
        return {**doc, "spec": {**(doc.get("spec") or {}), "nodeName": node}}
    return {**doc, "node": node}


def kind_of(doc: dict) -> Any:
    return doc.get("kind") or ("Pod" if "name" in doc else None)


def _namespace(doc: dict, source: str) -> tuple[str, dict]:
    v = Validator(source, ManifestError)
    data = v.mapping(doc, "", ("apiVersion", "kind", "metadata", "spec", "status"), "a Namespace manifest")
    meta = v.mapping(data.get("metadata"), "metadata", ("name", "labels", "annotations", "uid", "creationTimestamp",
                                                        "resourceVersion"), "metadata")
    return v.dns_name(meta.get("name"), "metadata.name", "namespace", 63, example="shop"), \
        dict(v.labels(meta.get("labels"), "metadata.labels"))


def apply(lab: str, docs: list[dict], source: str, progress: Progress = lambda s: None) -> list[str]:
    """Apply every document (validated all first); kubectl's line for each."""
    rec = _record(lab)
    cidr = ipaddress.IPv4Network(rec.get("serviceCIDR", "10.96.0.0/12"))
    for i, d in enumerate(docs):
        if kind_of(d) not in APPLY_KINDS:
            raise UsageError(f"apply of a {kind_of(d)} (document {i} of {source}) is not available across hosts yet "
                             f"(lab {lab}; Namespaces, Pods, Services and Deployments are)", obj=str(kind_of(d)))
        if kind_of(d) in ("Service", "Deployment"):
            _need_services(lab, rec, f"apply of a {kind_of(d)}")
    with for_command() as ss:
        st = controller.status(lab, ss)
        for h, why in st["unreachable"].items():
            raise UsageError(f"apply on multi-host lab {lab}: {why}; nothing was applied", obj=h)
        hosts = {d["name"]: records.host_of(d) for d in rec["hosts"]}
        existing = {(p.get("namespace") or "default", p["name"]): p for p in st["pods"]}
        counts = {n: 0 for n in rec["placement"]}
        for p in st["pods"]:
            if p.get("node") in counts:
                counts[p["node"]] += 1
        store = services.store_of(lab)
        parser = ServiceParser(source, ManifestError, cidr)
        prepared: list[tuple[str, Any]] = []
        new_spaces: set[str] = set()  # namespaces this file creates first (as kubectl applies them in order)
        for d in docs:
            if kind_of(d) == "Namespace":
                ns_name, labels = _namespace(d, source)
                new_spaces.add(ns_name)
                prepared.append(("Namespace", (ns_name, labels)))
            elif kind_of(d) == "Pod":
                req = podspec.parse(d, source, {n: 1 << 30 for n in rec["placement"]}, counts)
                have = existing.get((req.pod.namespace, req.pod.name))
                if have is not None:  # its host says unchanged, or that pod specs are immutable
                    node = have["node"] if req.pinned is None else req.pinned
                    prepared.append(("Pod", (req, have["node"], _pin(d, node))))
                    continue
                counts[req.pod.node] = counts.get(req.pod.node, 0) + 1
                prepared.append(("Pod", (req, req.pod.node, _pin(d, req.pod.node))))
            elif kind_of(d) == "NetworkPolicy":
                pol = parse.parse_manifest(d, source)
                if pol.namespace not in new_spaces and not namespaces.active(store, pol.namespace):
                    raise ManifestError(source, "metadata.namespace", f"namespace '{pol.namespace}' does not exist",
                                        "create it first, or apply the policy to a namespace of the lab")
                prepared.append(("NetworkPolicy", pol))
            else:
                obj = parser.service(d, "") if kind_of(d) == "Service" else parser.deployment(d, "")
                if obj.namespace not in new_spaces and not namespaces.active(store, obj.namespace):
                    raise ManifestError(source, "metadata.namespace", f"namespace '{obj.namespace}' does not exist",
                                        f"apply the {kind_of(d)} to a namespace of the lab's topology")
                prepared.append((kind_of(d), obj))
        lines = []
        for kind, p in prepared:
            if kind == "Namespace":  # on every host (each store admits its own pods), and here for the Services
                said = raise_first(each(list(hosts.values()), lambda h: ss.get(h).request(
                    "namespace", lab=lab, name=p[0], labels=p[1], timeout=30)))
                if store.get("namespaces", p[0]) is None:
                    store.put("namespaces", p[0], namespaces.manifest(p[0], p[1]))
                lines.append(f"{next(iter(said.values()))} on {len(said)} hosts")
            elif kind == "Pod":
                req, node, doc = p
                host = hosts[rec["placement"][node]]
                r = ss.get(host).request("apply_pod", lab=lab, obj=doc, source=source, name=req.pod.name,
                                         namespace=req.pod.namespace, timeout=60)
                lines.append(f"{r['line']} on {node} (host {host.name})")
            elif kind == "NetworkPolicy":
                word = cluster.put_policy(store, p)
                if not rec.get("netpol"):
                    netpols.enable(lab)
                    rec["netpol"] = True
                lines.append(f"{NETPOL_GROUP}/{p.name} {word}")
            elif kind == "Service":
                _, word = registry.put_service(store, p, cidr)
                lines.append(f"service/{p.name} {word}")
            else:
                _, word = registry.put_deployment(store, p)
                lines.append(f"deployment.apps/{p.name} {word}")
        converge.after_change(lab, rec, list(hosts.values()), ss.get, progress)
    return lines


def delete(lab: str, kind: str, names: list[str], namespace: str | None, wait: bool = True,
           progress: Progress = lambda s: None) -> list[str]:
    """``delete pods|services|deployments|networkpolicies NAME...`` on a multi-host lab; kubectl's line for each."""
    rec = _record(lab)
    if kind not in DELETE_KINDS:
        raise UsageError(f"delete {kind} is not available across hosts yet (lab {lab}; pods, services, "
                         "deployments and networkpolicies are)", obj=kind)
    ns = namespace or "default"
    lines = []
    with for_command() as ss:
        hosts = {d["name"]: records.host_of(d) for d in rec["hosts"]}
        if kind == "pods":
            st = controller.status(lab, ss)
            where = {(p.get("namespace") or "default", p["name"]): p["host"] for p in st["pods"]}
            for n in names:
                if (ns, n) not in where:
                    why = "; ".join(st["unreachable"].values())
                    raise NotFoundError("pod", n, f"multi-host lab {lab}" + (f" (unreachable: {why})" if why else ""))
            for n in names:
                ss.get(hosts[where[(ns, n)]]).request("delete_pod", lab=lab, name=n, namespace=ns, wait=wait,
                                                      timeout=60)
                lines.append(f'pod "{n}" deleted')
        elif kind == "networkpolicies":
            store = services.store_of(lab)
            refs = [_policy_ref(n, ns) for n in names]
            for (pns, n), given in zip(refs, names):
                if store.get(cluster.POLICIES, n, pns) is None:
                    raise NotFoundError("networkpolicy", given, f"namespace {pns} of multi-host lab {lab}")
            for pns, n in refs:
                cluster.delete_policy(store, pns, n)
                lines.append(f'{NETPOL_GROUP} "{n}" deleted')
        else:
            word = {"services": "service", "deployments": "deployment"}[kind]
            _need_services(lab, rec, f"delete of a {word}")
            store = services.store_of(lab)
            for n in names:
                if store.get(kind, n, ns) is None:
                    raise NotFoundError(word, n, f"namespace {ns} of multi-host lab {lab}")
            for n in names:
                store.delete(kind, n, ns)
                lines.append(f'service "{n}" deleted' if kind == "services" else f'deployment.apps "{n}" deleted')
        converge.after_change(lab, rec, list(hosts.values()), ss.get, progress)  # a deleted Deployment's pods too
    return lines


def _policy_ref(name: str, ns: str) -> tuple[str, str]:
    """(namespace, name) of a policy named NAME (in ``ns``) or NAMESPACE/NAME, as ``podlab delete netpol`` takes it."""
    pns, _, n = name.rpartition("/")
    return pns or ns, n


def scale(lab: str, name: str, replicas: int, namespace: str | None,
          progress: Progress = lambda s: None) -> str:
    """``scale deployment NAME --replicas N`` on a multi-host lab: set in the controller's store, then the pods
    created or deleted across the hosts (returns when they run or are gone)."""
    rec = _record(lab)
    _need_services(lab, rec, "scale of a deployment")
    ns = namespace or "default"
    if registry.scale(services.store_of(lab), name, replicas, ns) is None:
        raise NotFoundError("deployment", name, f"namespace {ns} of multi-host lab {lab}")
    with for_command() as ss:
        converge.after_change(lab, rec, [records.host_of(d) for d in rec["hosts"]], ss.get, progress)
    return f"deployment.apps/{name} scaled"


def reconcile(lab: str, progress: Progress = lambda s: None) -> str:
    """The Deployments reconciled across the hosts and the Endpoints and policies pushed, nothing else changed (the
    API server's answer to a Deployment's pod gone or failed on its host)."""
    rec = _record(lab)
    said: list[str] = []
    with for_command() as ss:
        converge.after_change(lab, rec, [records.host_of(d) for d in rec["hosts"]], ss.get,
                              lambda s: (said.append(s), progress(s)))
    return "; ".join(said)
