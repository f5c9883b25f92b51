"""The resources the lab's API server serves, described once: discovery, OpenAPI, routing and the store all read
this table. ``store`` names the store kind behind a resource (None: computed, e.g. EndpointSlices from
Endpoints); ``writable`` says whether clients may create/update/delete it (podlab's own controllers and agents
write the others)."""
from __future__ import annotations

from dataclasses import dataclass, field

READ = ("get", "list", "watch")
WRITE = ("create", "delete", "deletecollection", "patch", "update")


@dataclass(frozen=True)
class Resource:
    name: str  # plural, as in the URL
    kind: str
    group: str
    version: str
    namespaced: bool
    store: str | None
    short: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    writable: bool = True
    subresources: tuple[tuple[str, str, tuple[str, ...]], ...] = ()  # (name, response kind, verbs)
    singular: str = field(default="")

    @property
    def gv(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def api_version(self) -> str:
        return self.gv

    @property
    def verbs(self) -> tuple[str, ...]:
        return READ + (WRITE if self.writable else ())

    @property
    def singular_name(self) -> str:
        return self.singular or self.kind.lower()

    @property
    def qualified(self) -> str:
        """``deployments.apps`` (kubectl's word in messages); core resources have no group."""
        return f"{self.name}.{self.group}" if self.group else self.name


RESOURCES: tuple[Resource, ...] = (
    Resource("namespaces", "Namespace", "", "v1", False, "namespaces", ("ns",),
             subresources=(("status", "Namespace", ("get",)),)),
    Resource("nodes", "Node", "", "v1", False, "nodes", ("no",), writable=True,
             subresources=(("status", "Node", ("get",)),)),
    Resource("pods", "Pod", "", "v1", True, "pods", ("po",), ("all",),
             subresources=(("attach", "PodAttachOptions", ("create", "get")),
                           ("exec", "PodExecOptions", ("create", "get")), ("log", "Pod", ("get",)),
                           ("portforward", "PodPortForwardOptions", ("create", "get")),
                           ("status", "Pod", ("get",)))),
    Resource("services", "Service", "", "v1", True, "services", ("svc",), ("all",),
             subresources=(("status", "Service", ("get",)),)),
    Resource("endpoints", "Endpoints", "", "v1", True, "endpoints", ("ep",), singular="endpoints"),
    Resource("events", "Event", "", "v1", True, None, ("ev",), writable=False),
    Resource("deployments", "Deployment", "apps", "v1", True, "deployments", ("deploy",), ("all",),
             subresources=(("scale", "Scale", ("get", "patch", "update")), ("status", "Deployment", ("get",)))),
    Resource("replicasets", "ReplicaSet", "apps", "v1", True, "replicasets", ("rs",), ("all",),
             subresources=(("status", "ReplicaSet", ("get",)),)),
    Resource("daemonsets", "DaemonSet", "apps", "v1", True, "daemonsets", ("ds",), ("all",), writable=False,
             subresources=(("status", "DaemonSet", ("get",)),)),  # the lab's own (syspods): read-only
    Resource("endpointslices", "EndpointSlice", "discovery.k8s.io", "v1", True, None, (), writable=False),
    Resource("networkpolicies", "NetworkPolicy", "networking.k8s.io", "v1", True, "networkpolicies",
             ("netpol",)),
)
BY_PATH: dict[tuple[str, str], Resource] = {(r.gv, r.name): r for r in RESOURCES}
BY_KIND: dict[str, Resource] = {r.kind: r for r in RESOURCES}
GROUPS: dict[str, list[str]] = {}
for _r in RESOURCES:
    GROUPS.setdefault(_r.group, [])
    if _r.version not in GROUPS[_r.group]:
        GROUPS[_r.group].append(_r.version)


def lookup(gv: str, name: str) -> Resource | None:
    return BY_PATH.get((gv, name))


def in_group_version(gv: str) -> list[Resource]:
    return [r for r in RESOURCES if r.gv == gv]
