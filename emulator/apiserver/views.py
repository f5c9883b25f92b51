"""Store objects as the API shows them: what ``kubectl get -o yaml`` prints for a real cluster.

The store keeps what podlab's writers need (a pod's manifest, and its status in podlab's own shape, written by
the node's agent); these functions turn them into the API objects clients parse, with the fields the real
server fills (defaults, conditions, container IDs) and every field the Python client's models require (a
ContainerStatus's ``image``/``imageID``, a node's ten ``nodeInfo`` fields, never ``null`` where a list is
required). They are pure: the watch cache calls them when an object changes and keeps the result.
"""
from __future__ import annotations

import hashlib
import os
import platform
import uuid

from emulator.apiserver.discovery import GIT_VERSION
from emulator.state.manifests import now
from emulator.state.nodes import NETWORK_NOT_READY, NOT_READY_TAINT

POD_SPEC_DEFAULTS = {"restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
                     "serviceAccountName": "default", "serviceAccount": "default", "securityContext": {},
                     "schedulerName": "default-scheduler", "enableServiceLinks": True, "priority": 0,
                     "preemptionPolicy": "PreemptLowerPriority"}
TOLERATIONS = [{"key": f"node.kubernetes.io/{k}", "operator": "Exists", "effect": "NoExecute",
                "tolerationSeconds": 300} for k in ("not-ready", "unreachable")]


def _host_facts() -> dict:
    osimage = "Linux"
    try:
        for line in open("/etc/os-release"):
            if line.startswith("PRETTY_NAME="):
                osimage = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass  # no /etc/os-release: the node info says "Linux"
    return {"kernel": platform.release(), "os": osimage, "arch": {"x86_64": "amd64", "aarch64": "arm64"}.get(
        platform.machine(), platform.machine()), "cpus": str(os.cpu_count() or 1),
            "memory": f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') // 1024}Ki"}


HOST = _host_facts()


def pull_policy(image: str) -> str:
    tail = image.rsplit("/", 1)[-1]
    return "Always" if ":" not in tail or tail.endswith(":latest") else "IfNotPresent"


def default_container(c: dict) -> dict:
    c = dict(c)
    c.setdefault("imagePullPolicy", pull_policy(c.get("image", "")))
    c.setdefault("resources", {})
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    if c.get("ports"):
        c["ports"] = [{**p, "protocol": p.get("protocol", "TCP")} for p in c["ports"]]
    return c


def default_pod_spec(spec: dict) -> dict:
    out = {**POD_SPEC_DEFAULTS, **spec}
    out["containers"] = [default_container(c) for c in spec.get("containers") or []]
    out.setdefault("tolerations", TOLERATIONS)
    return out


def _container_id(sandbox: str, name: str) -> str:
    return "podlab://" + hashlib.sha256(f"{sandbox}/{name}".encode()).hexdigest()


def container_status(cs: dict, sandbox: str) -> dict:
    state = dict(cs.get("state") or {"waiting": {"reason": "ContainerCreating"}})
    last = dict(cs.get("lastState") or {})
    if "terminated" in last:
        t = dict(last["terminated"])
        if t.get("exitCode") is None:
            t["exitCode"], t["reason"] = 0, t.get("reason") or "Unknown"
        last["terminated"] = t
    out = {"name": cs["name"], "state": state, "lastState": last, "ready": bool(cs.get("ready")),
           "restartCount": int(cs.get("restartCount", 0)), "image": cs.get("image") or "pause",
           "imageID": f"podlab.io/images/{cs.get('image') or 'pause'}", "started": "running" in state}
    if sandbox and "running" in state:
        out["containerID"] = _container_id(sandbox, cs["name"])
    return out


def pod(manifest: dict, st: dict | None, deleting: str | None = None) -> dict:
    """The Pod: ``manifest`` plus the agent's status ``st`` (ignored when it is another pod's of the same name);
    ``deleting`` (a timestamp) marks a pod whose manifest is gone but whose sandbox the agent still tears down."""
    meta = dict(manifest.get("metadata") or {})
    if st and meta.get("uid") and st.get("uid") and st["uid"] != meta["uid"]:
        st = None
    rv = max(int(meta.get("resourceVersion") or 0), int((st or {}).get("resourceVersion") or 0))
    meta["resourceVersion"] = str(rv)
    meta.setdefault("namespace", "default")
    if deleting:
        meta["deletionTimestamp"] = deleting
        meta["deletionGracePeriodSeconds"] = 0
    spec = default_pod_spec(manifest.get("spec") or {})
    containers = spec["containers"]
    created = meta.get("creationTimestamp") or now()
    if not st:
        status = {"phase": "Pending", "qosClass": "BestEffort", "conditions": [
            {"type": "PodScheduled", "status": "True", "lastProbeTime": None, "lastTransitionTime": created}]}
        return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec, "status": status}
    if not spec.get("nodeName"):  # never bound: the scheduler's PodScheduled=False condition alone
        spec.pop("nodeName", None)
        status = {"phase": "Pending", "qosClass": "BestEffort", "conditions": [
            {"lastProbeTime": None, "lastTransitionTime": created, **c} for c in st.get("conditions") or [
                {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": st.get("message")}]]}
        return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec, "status": status}
    sandbox = (st.get("sandbox") or {}).get("id", "")
    cstats = {c["name"]: c for c in st.get("containerStatuses") or []}
    statuses = [container_status(cstats.get(c["name"], {"name": c["name"], "image": c.get("image")}), sandbox)
                for c in containers]
    ready = bool(statuses) and all(c["ready"] for c in statuses)
    since = st.get("startTime") or created

    def cond(kind: str, ok: bool) -> dict:
        return {"type": kind, "status": "True" if ok else "False", "lastProbeTime": None, "lastTransitionTime": since}
    status = {"phase": st.get("phase", "Pending"),
              "conditions": [cond("PodReadyToStartContainers", bool(sandbox)), cond("Initialized", True),
                             cond("Ready", ready), cond("ContainersReady", ready), cond("PodScheduled", True)],
              "hostIP": st.get("hostIP"), "hostIPs": [{"ip": st["hostIP"]}] if st.get("hostIP") else [],
              "qosClass": "BestEffort", "containerStatuses": statuses}
    if st.get("podIP"):
        status["podIP"], status["podIPs"] = st["podIP"], [{"ip": st["podIP"]}]
    if st.get("startTime"):
        status["startTime"] = st["startTime"]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec, "status": status}


def node(manifest: dict, ready: str, capacity: int) -> dict:
    """The Node: ``manifest`` with the kubelet's status; ``ready`` is ``Ready``, ``Unknown`` (the agent does not
    run: the lifecycle controller's NodeStatusUnknown) or ``NetworkNotReady`` (no CNI configuration: the
    kubelet's KubeletNotReady, and the not-ready NoSchedule taint the lifecycle controller adds)."""
    meta = dict(manifest.get("metadata") or {})
    name = meta.get("name", "")
    meta["labels"] = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": HOST["arch"],
                      "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": HOST["arch"],
                      **(meta.get("labels") or {})}
    res = {"cpu": HOST["cpus"], "memory": HOST["memory"], "pods": str(capacity), "ephemeral-storage": "0"}
    since = meta.get("creationTimestamp") or now()
    conds = [{"type": t, "status": "False", "reason": r, "message": m, "lastHeartbeatTime": since,
              "lastTransitionTime": since} for t, r, m in (
        ("MemoryPressure", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
        ("DiskPressure", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        ("PIDPressure", "KubeletHasSufficientPID", "kubelet has sufficient PID available"))]
    status_, reason, message = {
        "Ready": ("True", "KubeletReady", "kubelet is posting ready status"),
        "NetworkNotReady": ("False", "KubeletNotReady", NETWORK_NOT_READY)}.get(
        ready, ("Unknown", "NodeStatusUnknown", "Kubelet stopped posting node status."))
    conds.append({"type": "Ready", "status": status_, "reason": reason, "message": message,
                  "lastHeartbeatTime": since, "lastTransitionTime": since})
    spec = dict(manifest.get("spec") or {})
    if ready == "NetworkNotReady":
        spec["taints"] = [*(spec.get("taints") or []), {"key": NOT_READY_TAINT, "effect": "NoSchedule",
                                                         "timeAdded": since}]
    stored = manifest.get("status") or {}
    sysuuid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"podlab/{meta.get('uid', name)}"))
    status = {"capacity": res, "allocatable": res, "conditions": conds, "addresses": stored.get("addresses", []),
              "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
              "nodeInfo": {"machineID": sysuuid.replace("-", ""), "systemUUID": sysuuid, "bootID": sysuuid,
                           "kernelVersion": HOST["kernel"], "osImage": HOST["os"],
                           "containerRuntimeVersion": "podlab://0.1.0", "kubeletVersion": GIT_VERSION,
                           "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": HOST["arch"]}}
    return {"apiVersion": "v1", "kind": "Node", "metadata": meta, "spec": spec, "status": status}


def default_deployment_spec(spec: dict) -> None:
    """The API server's defaults of a Deployment spec (strategy, history, deadline), set in place."""
    strategy = dict(spec.get("strategy") or {"type": "RollingUpdate"})
    if strategy.get("type", "RollingUpdate") == "RollingUpdate":
        strategy.setdefault("rollingUpdate", {"maxUnavailable": "25%", "maxSurge": "25%"})
    spec["strategy"] = strategy
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)


def deployment(manifest: dict, st: dict | None) -> dict:
    obj = {**manifest, "apiVersion": "apps/v1", "kind": "Deployment"}
    meta = dict(manifest.get("metadata") or {})
    meta["resourceVersion"] = str(max(int(meta.get("resourceVersion") or 0), int((st or {}).get("resourceVersion") or 0)))
    obj["metadata"] = meta
    spec = dict(obj.get("spec") or {})
    spec.setdefault("replicas", 1)
    default_deployment_spec(spec)
    tmpl = dict(spec.get("template") or {})
    tmpl["spec"] = default_pod_spec(tmpl.get("spec") or {})
    spec["template"] = tmpl
    obj["spec"] = spec
    st = {k: v for k, v in (st or {}).items() if k != "resourceVersion"}
    want, avail = spec["replicas"], st.get("availableReplicas", 0)
    since = (manifest.get("metadata") or {}).get("creationTimestamp")
    st.setdefault("observedGeneration", 0)
    st["conditions"] = [
        {"type": "Available", "status": "True" if avail >= want else "False",
         "reason": "MinimumReplicasAvailable" if avail >= want else "MinimumReplicasUnavailable",
         "message": "Deployment has minimum availability." if avail >= want
         else "Deployment does not have minimum availability.", "lastUpdateTime": since,
         "lastTransitionTime": since},
        {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable" if avail >= want
         else "ReplicaSetUpdated", "message": f'ReplicaSet "{st.get("replicaSet", "")}" has '
         + ("successfully progressed." if avail >= want else "is progressing."), "lastUpdateTime": since,
         "lastTransitionTime": since}]
    st.pop("replicaSet", None)
    obj["status"] = st
    return obj


def replicaset(manifest: dict) -> dict:
    obj = {**manifest, "apiVersion": "apps/v1", "kind": "ReplicaSet"}
    spec = dict(obj.get("spec") or {})
    tmpl = dict(spec.get("template") or {})
    tmpl["spec"] = default_pod_spec(tmpl.get("spec") or {})
    spec["template"] = tmpl
    obj["spec"] = spec
    obj["status"] = {"replicas": 0, **(obj.get("status") or {})}
    return obj


def with_kind(obj: dict, api_version: str, kind: str) -> dict:
    return {**obj, "apiVersion": api_version, "kind": kind}


def endpoint_slices(ep: dict, svc: dict | None) -> list[dict]:
    """The EndpointSlices of a Service, from its Endpoints (one per subset, as ports differ between them)."""
    meta = ep.get("metadata") or {}
    name, ns = meta.get("name", ""), meta.get("namespace", "default")
    out = []
    for i, subset in enumerate(ep.get("subsets") or [{}]):
        suffix = hashlib.sha256(f"{ns}/{name}/{i}".encode()).hexdigest()
        slice_name = f"{name}-{''.join(c for c in suffix if c in 'bcdfghjklmnpqrstvwxz2456789')[:5]}"
        endpoints = []
        for key, ready in (("addresses", True), ("notReadyAddresses", False)):
            for a in subset.get(key) or []:
                e = {"addresses": [a["ip"]], "conditions": {"ready": ready, "serving": ready, "terminating": False}}
                if a.get("nodeName"):
                    e["nodeName"] = a["nodeName"]
                if a.get("targetRef"):
                    e["targetRef"] = a["targetRef"]
                endpoints.append(e)
        labels = {**((svc or {}).get("metadata", {}).get("labels") or {}), "kubernetes.io/service-name": name,
                  "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}
        smeta = {"name": slice_name, "namespace": ns, "labels": labels, "generation": 1,
                 "resourceVersion": meta.get("resourceVersion", "0"),
                 "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"podlab/epslice/{ns}/{slice_name}")),
                 "creationTimestamp": meta.get("creationTimestamp")}
        if svc:
            smeta["ownerReferences"] = [{"apiVersion": "v1", "kind": "Service", "name": name, "controller": True,
                                         "blockOwnerDeletion": True, "uid": svc["metadata"].get("uid", "")}]
        out.append({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": smeta,
                    "addressType": "IPv4", "endpoints": endpoints,
                    "ports": [{"name": p.get("name", ""), "port": p.get("port"), "protocol": p.get("protocol", "TCP")}
                              for p in subset.get("ports") or []]})  # name "" too: kubectl dereferences it
    return out


EVENT_KINDS = {"pod": ("Pod", "v1", True), "node": ("Node", "v1", False), "deployment": ("Deployment", "apps/v1", True),
               "service": ("Service", "v1", True), "replicaset": ("ReplicaSet", "apps/v1", True),
               "namespace": ("Namespace", "v1", False)}


def event_name(file_key: str, rv: int) -> str:
    return f"{file_key.partition('-')[2]}.{rv:016x}"


def event(line: dict, ns: str, file_key: str, involved_uid: str) -> dict:
    """A ``v1 Event`` from one line of an object's events file (``<kind>-<name>``)."""
    short, _, name = file_key.partition("-")
    kind, api_version, namespaced = EVENT_KINDS.get(short, (short.capitalize(), "v1", True))
    rv = int(line.get("rv", 0))
    component, _, host = (line.get("from") or "").partition(", ")
    source = {"component": component, **({"host": host} if host else {})}
    ename = event_name(file_key, rv)
    involved = {"kind": kind, "name": name, "apiVersion": api_version, **({"namespace": ns} if namespaced else {})}
    if involved_uid:
        involved["uid"] = involved_uid
    return {"apiVersion": "v1", "kind": "Event",
            "metadata": {"name": ename, "namespace": ns, "resourceVersion": str(rv), "creationTimestamp": line["time"],
                         "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"podlab/event/{ns}/{ename}"))},
            "involvedObject": involved, "reason": line.get("reason", ""), "message": line.get("message", ""),
            "source": source, "firstTimestamp": line["time"], "lastTimestamp": line["time"], "count": 1,
            "type": line.get("type", "Normal"), "eventTime": None, "reportingComponent": component,
            "reportingInstance": host}
