"""Pods given to ``apply``: the podlab form (as in a topology file) or a real Kubernetes ``v1 Pod`` manifest.

Both are checked by the topology ``Validator`` (raising ``ManifestError`` with file, field, value and fix) and
turned into the store's manifest shape. Fields of a real manifest that do not change the network are accepted
and ignored (probes, resources, pull policy, security context, ...) so that e2e manifests apply unchanged; a
container's ``stdin``/``stdinOnce``/``tty`` and the pod's ``restartPolicy`` are kept (its agent then starts it
attachable and restarts it as the policy says, as for kubectl's pods);
``hostNetwork: true`` is honoured (the node agent runs the pod in its node's namespace); any other field is
refused by name, because silently dropping e.g. ``volumes`` would teach the wrong thing. Placement:
``spec.nodeName``/``node`` if given (the node must exist), else the node with the fewest pods (the topology's
spread rule), never a ``runtime: docker`` node; a pod with ``hostPort`` s then meets the scheduler's NodePorts
filter (``host_ports``): moved to a node where they are free, or, pinned or with no such node, left Pending with
the scheduler's FailedScheduling message. A full node is *not* refused here: as in Kubernetes, the pod is bound and then
waits in ContainerCreating with the IPAM error, which is the lesson. A manifest's ``ownerReferences`` and
``generateName`` are kept as an API server keeps them (a multi-host lab's controller sends a Deployment's pods to
their hosts this way: ``emulator.hosts.deploy_across``).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from emulator.errors import ManifestError
from emulator.state.manifests import pod_manifest
from emulator.state.store import Store
from emulator.topology import hostports, names
from emulator.topology.model import Pod
from emulator.topology.validate import CONTAINER_KEYS, Validator, did_you_mean, show

PODLAB_KEYS = ("name", "node", "namespace", "labels", "containers")
TOP_KEYS = ("apiVersion", "kind", "metadata", "spec", "status")
META_KEYS = ("name", "namespace", "labels", "annotations", "uid", "creationTimestamp", "resourceVersion",
             "generation", "managedFields", "ownerReferences", "generateName")
#: metadata an API server keeps as given on a create (a ReplicaSet's pods: their owner and the name's prefix)
KEPT_META = ("ownerReferences", "generateName")
RESTART_POLICIES = ("Always", "OnFailure", "Never")
SPEC_KEYS = ("containers", "nodeName", "restartPolicy", "terminationGracePeriodSeconds", "dnsPolicy",
             "securityContext", "schedulerName", "enableServiceLinks", "tolerations", "priority",
             "serviceAccountName", "serviceAccount", "automountServiceAccountToken", "preemptionPolicy",
             "nodeSelector", "hostname", "subdomain", "hostNetwork")
IGNORED_CONTAINER_KEYS = ("imagePullPolicy", "resources", "livenessProbe", "readinessProbe", "startupProbe",
                          "securityContext", "terminationMessagePath", "terminationMessagePolicy", "workingDir",
                          "stdin", "stdinOnce", "tty")


@dataclass(frozen=True)
class PodRequest:
    pod: Pod
    manifest: dict
    pinned: str | None = None  # the node the manifest named (nodeName / node), if any


def _strip_containers(v: Validator, raw: object, field: str) -> object:
    if not isinstance(raw, list):
        return raw
    out = []
    for j, c in enumerate(raw):
        if isinstance(c, dict):
            for k in c:
                if k not in CONTAINER_KEYS and k not in IGNORED_CONTAINER_KEYS:
                    v.fail(f"{field}[{j}].{k}", f"container field {show(k)} is not supported by podlab",
                           did_you_mean(k, CONTAINER_KEYS) or "remove it (podlab emulates the pod network only)")
            c = {k: val for k, val in c.items() if k in CONTAINER_KEYS}
        out.append(c)
    return out


def parse(obj: dict, source: str, nodes: dict[str, int], counts: dict[str, int],
          docker: frozenset[str] = frozenset()) -> PodRequest:
    """Validate one pod document; ``nodes`` maps Kubernetes node name → capacity, ``counts`` node → pods bound
    now; ``docker`` names the ``runtime: docker`` nodes (no pod may go there)."""
    v = Validator(source, ManifestError)
    if "kind" in obj:
        data = v.mapping(obj, "", TOP_KEYS, "a Pod manifest")
        if data.get("apiVersion") != "v1":
            v.fail("apiVersion", f"{show(data.get('apiVersion'))} is not supported for kind Pod", "use apiVersion: v1")
        meta = v.mapping(data.get("metadata"), "metadata", META_KEYS, "metadata")
        spec = v.mapping(data.get("spec"), "spec", SPEC_KEYS, "a pod spec")
        if not isinstance(spec.get("hostNetwork", False), bool):
            v.fail("spec.hostNetwork", f"{show(spec.get('hostNetwork'))} is not a boolean", "use true or false")
        name, node = meta.get("name"), spec.get("nodeName")
        namespace, labels = meta.get("namespace", "default"), meta.get("labels")
        containers_raw, cfield = spec.get("containers"), "spec.containers"
        if containers_raw is None:
            v.fail("spec.containers", "a Pod manifest needs spec.containers", "list at least one container")
        nfield, nodefield = "metadata.name", "spec.nodeName"
    else:
        data = v.mapping(obj, "", PODLAB_KEYS, "a pod")
        name, node, namespace, labels = data.get("name"), data.get("node"), data.get("namespace", "default"), \
            data.get("labels")
        containers_raw, cfield, nfield, nodefield = data.get("containers"), "containers", "name", "node"
    name = v.dns_name(name, nfield, "pod", names.MAX_OBJECT_NAME, reserved=True, example="web-1",
                      why=" (it becomes part of the pod's network namespace name, <lab>-<pod>)")
    namespace = v.dns_name(namespace, "metadata.namespace" if "kind" in obj else "namespace", "namespace",
                           names.MAX_OBJECT_NAME, example="default")
    if name in nodes and namespace == names.DEFAULT_NAMESPACE:
        v.fail(nfield, f"pod name '{name}' is also a node name: both would be network namespace <lab>-{name}",
               f"rename the pod, e.g. {name}-pod")
    containers = v.containers(_strip_containers(v, containers_raw, cfield), cfield)
    pinned = node
    if node is None:
        node = min(nodes, key=lambda n: (counts.get(n, 0) >= nodes[n], counts.get(n, 0), list(nodes).index(n)))
    elif node in docker:
        v.fail(nodefield, f"node '{node}' has runtime: docker: it runs containers, not a kubelet",
               f"use a Kubernetes node ({', '.join(nodes) or 'none'}) or leave it out")
    elif node not in nodes:
        v.fail(nodefield, f"unknown node {show(node)}; known nodes: {', '.join(nodes)}",
               (did_you_mean(node, list(nodes)) or "") + " use one of the known nodes or leave it out")
    pod = Pod(name=name, node=node, containers=containers, labels=v.labels(labels, "metadata.labels"),
              namespace=namespace)
    manifest = pod_manifest(pod)
    given = meta.get("annotations") if "kind" in obj else None
    if isinstance(given, dict) and given:  # kept, as an API server keeps them (kubectl apply's last-applied one)
        manifest["metadata"]["annotations"] = {**{str(k): str(v) for k, v in given.items()},
                                               **manifest["metadata"].get("annotations", {})}
    for k in KEPT_META if "kind" in obj else ():
        if meta.get(k):
            manifest["metadata"][k] = meta[k]
    if "kind" in obj and spec.get("hostNetwork"):
        manifest["spec"]["hostNetwork"] = True  # honoured by the node agent: the pod runs in its node
    if "kind" in obj:
        _keep_attachable(containers_raw, manifest)
    if "kind" in obj and spec.get("restartPolicy") is not None:  # honoured by the agent's supervision
        if spec["restartPolicy"] not in RESTART_POLICIES:
            v.fail("spec.restartPolicy", f"{show(spec['restartPolicy'])} is not a restart policy",
                   f"use one of {', '.join(RESTART_POLICIES)} (default Always)")
        manifest["spec"]["restartPolicy"] = spec["restartPolicy"]
    return PodRequest(pod, manifest, pinned=pinned)


ATTACH_KEYS = ("stdin", "stdinOnce", "tty")


def _keep_attachable(raw: object, manifest: dict) -> None:
    """A container's ``stdin``/``stdinOnce``/``tty`` of a real manifest (true only) kept in the manifest, as an API
    server keeps them: the node agent starts such a container under its holder (``kubectl attach``, ``run -it``)."""
    given = {c.get("name"): c for c in raw if isinstance(c, dict)} if isinstance(raw, list) else {}
    for c in manifest["spec"]["containers"]:
        for k in ATTACH_KEYS:
            if given.get(c["name"], {}).get(k) is True:
                c[k] = True


def host_ports(req: PodRequest, store: Store, nodes: dict[str, int], counts: dict[str, int]) -> PodRequest:
    """The scheduler's NodePorts filter for a pod with ``hostPort`` s: moved to a node whose ports are free when
    it was not pinned, else left unscheduled (Pending) with the scheduler's message (``topology.hostports``)."""
    ports = set(req.pod.host_ports)
    if not ports:
        return req
    used: dict[str, set] = {n: set() for n in nodes}
    for m in store.list("pods"):
        n = m["spec"].get("nodeName")
        if n in used and (m["metadata"]["name"], m["metadata"].get("namespace", "default")) != (
                req.pod.name, req.pod.namespace):
            used[n] |= {(p["hostPort"], p.get("protocol", "TCP")) for c in m["spec"].get("containers", [])
                        for p in c.get("ports", []) if p.get("hostPort")}
    eligible = sorted((n for n in nodes if counts.get(n, 0) < nodes[n]), key=lambda n: (counts.get(n, 0),
                                                                                         list(nodes).index(n)))
    node, message = hostports.choose(ports, req.pinned, req.pod.node, used, eligible)
    if node == req.pod.node:
        return req
    pod = replace(req.pod, node=node, unschedulable=message)
    manifest = {**req.manifest, "spec": {**req.manifest["spec"], "nodeName": node}}
    return PodRequest(pod, manifest, pinned=req.pinned)


def same_spec(a: dict, b: dict) -> bool:
    """Two pod manifests differ only in generated metadata (uid, creationTimestamp)?"""
    strip = lambda m: {**m, "metadata": {k: v for k, v in m["metadata"].items()  # noqa: E731
                                         if k not in ("uid", "creationTimestamp", "resourceVersion",
                                                      "generation")}}
    return strip(a) == strip(b)
