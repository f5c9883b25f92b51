"""Server-side printing: the ``Table`` kubectl asks for (``Accept: ...;as=Table;g=meta.k8s.io;v=v1``), with the
columns the real API server prints for each kind (``pkg/printers/internalversion``): pods NAME READY STATUS
RESTARTS AGE and, at priority 1 (``-o wide``), IP NODE NOMINATED NODE READINESS GATES; nodes, services,
endpoints, endpoint slices, deployments, replica sets, namespaces, events and network policies likewise. Each
row carries the object (``PartialObjectMetadata`` by default, the whole object with ``includeObject=Object``,
which ``--sort-by`` needs), from which kubectl reads the NAMESPACE column of ``-A``, ``--show-labels`` and
``-L``. Cells are computed at request time (AGE changes), as human strings.
"""
from __future__ import annotations

import calendar
import functools
import time
from typing import Callable

Col = tuple[str, str, int, str]  # name, type, priority, description
Cells = Callable[[dict], list]


def human_duration(seconds: float) -> str:
    """kubectl's ``HumanDuration``: 45s, 3m12s, 2d3h, ..."""
    s = int(seconds)
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    m = s // 60
    if m < 10:
        return f"{m}m{s % 60}s" if s % 60 else f"{m}m"
    if m < 180:
        return f"{m}m"
    h = s // 3600
    if h < 8:
        return f"{h}h{m % 60}m" if m % 60 else f"{h}h"
    if h < 48:
        return f"{h}h"
    if h < 24 * 8:
        return f"{h // 24}d{h % 24}h" if h % 24 else f"{h // 24}d"
    if h < 24 * 365 * 2:
        return f"{h // 24}d"
    if h < 24 * 365 * 8:
        return f"{h // (24 * 365)}y{(h // 24) % 365}d"
    return f"{h // (24 * 365)}y"


@functools.lru_cache(maxsize=8192)
def _epoch(ts: str) -> float | None:
    """Seconds since the epoch of an API timestamp (cached: a list of 1000 pods has few distinct ones)."""
    try:
        return calendar.timegm(time.strptime(ts, "%Y-%m-%dT%H:%M:%SZ"))
    except ValueError:
        return None


def age(ts: str | None) -> str:
    t = _epoch(ts) if ts else None
    return "<unknown>" if t is None else human_duration(time.time() - t)


def _meta(o: dict) -> dict:
    return o.get("metadata") or {}


def _selector(sel: dict | None) -> str:
    if not sel:
        return "<none>"
    return ",".join(f"{k}={v}" for k, v in sel.items()) or "<none>"


def _label_selector(sel: dict | None) -> str:
    sel = sel or {}
    parts = [f"{k}={v}" for k, v in (sel.get("matchLabels") or {}).items()]
    for e in sel.get("matchExpressions") or []:
        op = e.get("operator", "")
        vals = ",".join(e.get("values") or [])
        parts.append({"In": f"{e['key']} in ({vals})", "NotIn": f"{e['key']} notin ({vals})", "Exists": e["key"],
                      "DoesNotExist": f"!{e['key']}"}.get(op, e["key"]))
    return ",".join(parts) or "<none>"


def pod_status(o: dict) -> str:
    st, meta = o.get("status") or {}, _meta(o)
    reason = st.get("reason") or st.get("phase") or "Pending"
    for c in st.get("containerStatuses") or []:
        state = c.get("state") or {}
        if state.get("waiting", {}).get("reason"):
            reason = state["waiting"]["reason"]
        elif state.get("terminated"):
            t = state["terminated"]
            reason = t.get("reason") or (f"Signal:{t['signal']}" if t.get("signal") else f"ExitCode:{t.get('exitCode')}")
    if meta.get("deletionTimestamp"):
        reason = "Unknown" if st.get("reason") == "NodeLost" else "Terminating"
    return reason


def _restarts(o: dict):
    total, last = 0, ""
    for c in (o.get("status") or {}).get("containerStatuses") or []:
        total += int(c.get("restartCount", 0))
        fin = ((c.get("lastState") or {}).get("terminated") or {}).get("finishedAt")
        if fin and fin > last:
            last = fin
    return f"{total} ({age(last)} ago)" if total and last else total


def _pod(o: dict) -> list:
    st, spec = o.get("status") or {}, o.get("spec") or {}
    cs = st.get("containerStatuses") or []
    ready = sum(1 for c in cs if c.get("ready"))
    return [_meta(o).get("name"), f"{ready}/{len(spec.get('containers') or [])}", pod_status(o), _restarts(o),
            age(_meta(o).get("creationTimestamp")), st.get("podIP") or "<none>", spec.get("nodeName") or "<none>",
            "<none>", "<none>"]


def _node(o: dict) -> list:
    st, meta = o.get("status") or {}, _meta(o)
    ready = next((c for c in st.get("conditions") or [] if c.get("type") == "Ready"), {})
    word = "Ready" if ready.get("status") == "True" else "NotReady"
    if (o.get("spec") or {}).get("unschedulable"):
        word += ",SchedulingDisabled"
    roles = sorted(k.split("/", 1)[1] for k in (meta.get("labels") or {}) if k.startswith("node-role.kubernetes.io/"))
    addrs = {a.get("type"): a.get("address") for a in st.get("addresses") or []}
    info = st.get("nodeInfo") or {}
    return [meta.get("name"), word, ",".join(roles) or "<none>", age(meta.get("creationTimestamp")),
            info.get("kubeletVersion", ""), addrs.get("InternalIP", "<none>"), addrs.get("ExternalIP", "<none>"),
            info.get("osImage", ""), info.get("kernelVersion", ""), info.get("containerRuntimeVersion", "")]


def _ports(spec: dict) -> str:
    out = []
    for p in spec.get("ports") or []:
        np = f":{p['nodePort']}" if p.get("nodePort") else ""
        out.append(f"{p['port']}{np}/{p.get('protocol', 'TCP')}")
    return ",".join(out) or "<none>"


def _service(o: dict) -> list:
    spec = o.get("spec") or {}
    ext = ",".join(spec.get("externalIPs") or []) or "<none>"
    return [_meta(o).get("name"), spec.get("type", "ClusterIP"), spec.get("clusterIP") or "<none>", ext,
            _ports(spec), age(_meta(o).get("creationTimestamp")), _selector(spec.get("selector"))]


def _first3(items: list[str]) -> str:
    if not items:
        return "<none>"
    return ",".join(items[:3]) + (f" + {len(items) - 3} more..." if len(items) > 3 else "")


def _endpoints(o: dict) -> list:
    addrs = []
    for s in o.get("subsets") or []:  # port by port, each with every address, as the real server prints them
        for p in s.get("ports") or [{}]:
            for a in s.get("addresses") or []:
                addrs.append(f"{a['ip']}:{p['port']}" if p.get("port") else a["ip"])
    return [_meta(o).get("name"), _first3(addrs), age(_meta(o).get("creationTimestamp"))]


def _slice(o: dict) -> list:
    ports = ",".join(str(p.get("port", "")) for p in o.get("ports") or []) or "<unset>"
    addrs = [a for e in o.get("endpoints") or [] for a in e.get("addresses") or []]
    return [_meta(o).get("name"), o.get("addressType", "IPv4"), ports, _first3(addrs),
            age(_meta(o).get("creationTimestamp"))]


def _template(o: dict) -> list:
    cs = (((o.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers") or []
    return [",".join(c.get("name", "") for c in cs), ",".join(c.get("image", "") for c in cs),
            _label_selector((o.get("spec") or {}).get("selector"))]


def _deployment(o: dict) -> list:
    st, spec = o.get("status") or {}, o.get("spec") or {}
    return [_meta(o).get("name"), f"{st.get('readyReplicas', 0)}/{spec.get('replicas', 1)}",
            st.get("updatedReplicas", 0), st.get("availableReplicas", 0), age(_meta(o).get("creationTimestamp"))
            ] + _template(o)


def _replicaset(o: dict) -> list:
    st, spec = o.get("status") or {}, o.get("spec") or {}
    return [_meta(o).get("name"), spec.get("replicas", 0), st.get("replicas", 0), st.get("readyReplicas", 0),
            age(_meta(o).get("creationTimestamp"))] + _template(o)


def _daemonset(o: dict) -> list:
    st, spec = o.get("status") or {}, o.get("spec") or {}
    sel = ((spec.get("template") or {}).get("spec") or {}).get("nodeSelector") or {}
    return [_meta(o).get("name"), st.get("desiredNumberScheduled", 0), st.get("currentNumberScheduled", 0),
            st.get("numberReady", 0), st.get("updatedNumberScheduled", 0), st.get("numberAvailable", 0),
            ",".join(f"{k}={v}" for k, v in sel.items()) or "<none>", age(_meta(o).get("creationTimestamp"))
            ] + _template(o)


def _namespace(o: dict) -> list:
    return [_meta(o).get("name"), (o.get("status") or {}).get("phase", "Active"), age(_meta(o).get("creationTimestamp"))]


def _event(o: dict) -> list:
    inv, src = o.get("involvedObject") or {}, o.get("source") or {}
    source = ", ".join(x for x in (src.get("component"), src.get("host")) if x)
    return [age(o.get("lastTimestamp")), o.get("type", ""), o.get("reason", ""),
            f"{inv.get('kind', '').lower()}/{inv.get('name', '')}", o.get("message", ""),
            inv.get("fieldPath") or "", source, age(o.get("firstTimestamp")), o.get("count", 1),
            _meta(o).get("name")]


def _netpol(o: dict) -> list:
    return [_meta(o).get("name"), _label_selector((o.get("spec") or {}).get("podSelector")),
            age(_meta(o).get("creationTimestamp"))]


def _c(name: str, kind: str = "string", priority: int = 0, desc: str = "") -> Col:
    return (name, kind, priority, desc)


AGE = _c("Age", desc="CreationTimestamp is a timestamp representing the server time when this object was created.")
NAME = _c("Name", desc="Name must be unique within a namespace.")
TEMPLATE = [_c("Containers", priority=1, desc="Names of each container in the template."),
            _c("Images", priority=1, desc="Images referenced by each container in the template."),
            _c("Selector", priority=1, desc="Label selector for pods.")]
PRINTERS: dict[str, tuple[list[Col], Cells]] = {
    "pods": ([NAME, _c("Ready", desc="The aggregate readiness state of this pod for accepting traffic."),
              _c("Status", desc="The aggregate status of the containers in this pod."),
              _c("Restarts", desc="The number of times the containers in this pod have been restarted and when the "
                                  "last container in this pod has restarted."), AGE,
              _c("IP", priority=1, desc="IP address allocated to the pod."),
              _c("Node", priority=1, desc="Name of the node where the pod is bound."),
              _c("Nominated Node", priority=1, desc="Name of the node where the pod is nominated."),
              _c("Readiness Gates", priority=1, desc="Readiness gates of the pod.")], _pod),
    "nodes": ([NAME, _c("Status", desc="The status of the node"), _c("Roles", desc="The roles of the node"), AGE,
               _c("Version", desc="Kubelet Version reported by the node."),
               _c("Internal-IP", priority=1, desc="Internal IP of the node."),
               _c("External-IP", priority=1, desc="External IP of the node."),
               _c("OS-Image", priority=1, desc="OS image reported by the node."),
               _c("Kernel-Version", priority=1, desc="Kernel version reported by the node."),
               _c("Container-Runtime", priority=1, desc="Container runtime reported by the node.")], _node),
    "services": ([NAME, _c("Type", desc="The type of the service."), _c("Cluster-IP", desc="The cluster IP."),
                  _c("External-IP", desc="The external IP."), _c("Port(s)", desc="The ports of the service."),
                  AGE, _c("Selector", priority=1, desc="The selector of the service.")], _service),
    "endpoints": ([NAME, _c("Endpoints", desc="Endpoints of the service."), AGE], _endpoints),
    "endpointslices": ([NAME, _c("AddressType", desc="The address type."), _c("Ports", desc="The ports."),
                        _c("Endpoints", desc="The endpoints."), AGE], _slice),
    "deployments": ([NAME, _c("Ready", desc="Number of the pod with ready state"),
                     _c("Up-to-date", "integer", desc="Total number of non-terminated pods targeted by this "
                                                      "deployment that have the desired template spec."),
                     _c("Available", "integer", desc="Total number of available pods (ready for at least "
                                                     "minReadySeconds) targeted by this deployment."),
                     AGE] + TEMPLATE, _deployment),
    "replicasets": ([NAME, _c("Desired", "integer", desc="Number of desired pods."),
                     _c("Current", "integer", desc="Number of actual replicas."),
                     _c("Ready", "integer", desc="Number of ready replicas."), AGE] + TEMPLATE, _replicaset),
    "daemonsets": ([NAME, _c("Desired", "integer", desc="The number of nodes that should be running the daemon pod."),
                    _c("Current", "integer", desc="The number of nodes running at least one daemon pod."),
                    _c("Ready", "integer", desc="The number of nodes that should be running the daemon pod and "
                                                "have one or more of the daemon pod running and ready."),
                    _c("Up-to-date", "integer", desc="The total number of nodes that are running updated daemon pod"),
                    _c("Available", "integer", desc="The number of nodes that should be running the daemon pod and "
                                                    "have one or more of the daemon pod running and available."),
                    _c("Node Selector", desc="NodeSelector is a selector which must be true for the pod to fit "
                                             "on a node."), AGE] + TEMPLATE, _daemonset),
    "namespaces": ([NAME, _c("Status", desc="The status of the namespace"), AGE], _namespace),
    "events": ([_c("Last Seen", desc="Time when last event was seen"), _c("Type", desc="Type of the event"),
                _c("Reason", desc="Reason of the event"), _c("Object", desc="The object the event is about"),
                _c("Message", desc="Message of the event"),
                _c("Subobject", priority=1, desc="The field of the object the event is about"),
                _c("Source", priority=1, desc="The source of the event"),
                _c("First Seen", priority=1, desc="Time when first event was seen"),
                _c("Count", "integer", priority=1, desc="Number of times the event was seen"),
                _c("Name", priority=1, desc="Name of the event")], _event),
    "networkpolicies": ([NAME, _c("Pod-Selector", desc="The pods the policy applies to."), AGE], _netpol),
}


def columns(resource: str) -> list[dict]:
    cols, _ = PRINTERS[resource]
    return [{"name": n, "type": t, "format": "name" if n == "Name" else "", "description": d,
             "priority": p} for n, t, p, d in cols]


def cells(resource: str, obj: dict) -> list:
    return PRINTERS[resource][1](obj)


def partial(obj: dict, api_version: str, kind: str) -> dict:
    """The row object kubectl gets by default: the object's metadata only."""
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata") or {}}
