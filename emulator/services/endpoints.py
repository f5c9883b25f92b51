"""The endpoints controller, pure: which pod addresses back a Service, as a ``v1 Endpoints`` object.

A pod backs a Service when it is in the Service's namespace, carries every label of the selector, still exists
in the store (a deleted pod leaves the endpoints at once, before its agent has stopped it: it is terminating),
and its agent reports an IP for the same pod (same uid). Running pods are ``addresses``; pods with an IP that are
not Running are ``notReadyAddresses``. Each Service port's ``targetPort`` is resolved per pod (a name is looked
up among the pod's container ports, so pods may serve one named port on different numbers); pods that resolve
the ports to the same numbers share a subset, as the real controller packs them. A Service without a selector
is not managed here: its Endpoints are written by hand (``kube-dns`` is one).
"""
from __future__ import annotations

from emulator.state.manifests import now
from emulator.services.model import matches

Ports = tuple[tuple[str, int, str], ...]  # (port name, number, protocol) per resolved service port


def pod_ports(svc: dict, pod: dict) -> Ports:
    """The service's ports as this pod serves them (ports a named targetPort cannot find are left out)."""
    named: dict[tuple[str, str], int] = {}
    for c in pod["spec"].get("containers", []):
        for p in c.get("ports", []):
            if p.get("name"):
                named[(p["name"], p.get("protocol", "TCP"))] = int(p["containerPort"])
    out = []
    for sp in svc["spec"].get("ports", []):
        proto = sp.get("protocol", "TCP")
        target = sp.get("targetPort", sp["port"])
        if isinstance(target, str) and not target.isdigit():
            if (target, proto) not in named:
                continue
            number = named[(target, proto)]
        else:
            number = int(target)
        out.append((sp.get("name", ""), number, proto))
    return tuple(out)


def compute(svc: dict, pods: list[dict], statuses: dict[tuple[str, str], dict]) -> dict | None:
    """The Endpoints object for ``svc`` (None when the Service has no selector: not ours to manage);
    ``statuses`` are keyed by (namespace, pod name)."""
    selector = svc["spec"].get("selector")
    if not selector:
        return None
    ns = svc["metadata"].get("namespace", "default")
    groups: dict[Ports, dict[str, list[dict]]] = {}
    for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
        meta = pod["metadata"]
        if meta.get("namespace", "default") != ns or not matches(selector, meta.get("labels") or {}):
            continue
        st = statuses.get((ns, meta["name"]))
        if not st or not st.get("podIP") or (meta.get("uid") and st.get("uid") != meta.get("uid")):
            continue
        ports = pod_ports(svc, pod)
        if svc["spec"].get("ports") and not ports:
            continue
        addr = {"ip": st["podIP"], "nodeName": pod["spec"].get("nodeName"),
                "targetRef": {"kind": "Pod", "namespace": ns, "name": meta["name"], "uid": meta.get("uid")}}
        kind = "addresses" if st.get("phase") == "Running" else "notReadyAddresses"
        groups.setdefault(ports, {"addresses": [], "notReadyAddresses": []})[kind].append(addr)
    subsets = []
    for ports, g in sorted(groups.items()):
        subset: dict = {k: sorted(v, key=lambda a: _ip_key(a["ip"])) for k, v in g.items() if v}
        subset["ports"] = [{**({"name": n} if n else {}), "port": num, "protocol": proto} for n, num, proto in ports]
        subsets.append(subset)
    return manifest(svc["metadata"]["name"], ns, subsets, svc["metadata"].get("labels"))


def manifest(name: str, namespace: str, subsets: list[dict], labels: dict | None = None) -> dict:
    meta: dict = {"name": name, "namespace": namespace, "creationTimestamp": now()}
    if labels:
        meta["labels"] = dict(labels)
    return {"apiVersion": "v1", "kind": "Endpoints", "metadata": meta, "subsets": subsets}


def same(a: dict | None, b: dict | None) -> bool:
    """Equal but for timestamps (so an unchanged object is not rewritten and watchers stay asleep)."""
    if a is None or b is None:
        return a is b
    return a.get("subsets") == b.get("subsets") and (a["metadata"].get("labels") == b["metadata"].get("labels"))


def addresses(ep: dict | None, ready_only: bool = True) -> list[tuple[str, int, str, str]]:
    """(ip, port, protocol, port name) of every address in ``ep`` (for listings)."""
    out = []
    for s in (ep or {}).get("subsets", []):
        addrs = s.get("addresses", []) + ([] if ready_only else s.get("notReadyAddresses", []))
        for a in addrs:
            for p in s.get("ports", []) or [{"port": 0, "protocol": "TCP"}]:
                out.append((a["ip"], int(p.get("port", 0)), p.get("protocol", "TCP"), p.get("name", "")))
    return out


def _ip_key(ip: str) -> tuple[int, ...]:
    return tuple(int(x) for x in ip.split("."))
