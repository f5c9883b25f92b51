"""Services and Deployments from a topology file or an applied manifest, checked rule by rule.

Two shapes are accepted everywhere: podlab's flat form (``{name, selector, type, ports: [{port, targetPort}]}``,
``{name, replicas, labels, containers}``) and the real Kubernetes manifests (``v1 Service``, ``apps/v1
Deployment``), recognised by their ``kind``/``spec`` keys. Every broken rule raises the ``Validator``'s error
(``TopologyError`` for a topology, ``ManifestError`` for ``apply``) naming the file, the field path
(``services[0].ports[1].nodePort``), the value and the fix, before anything is stored. Fields of real manifests
that do not change the network are ignored (annotations, ipFamilies, strategy, ...); fields that would (an
``externalIPs`` list, a LoadBalancer type) are refused by name rather than silently dropped.
"""
from __future__ import annotations

import ipaddress
import re
from typing import Any

from emulator.services.model import (AFFINITIES, HEADLESS, MAX_AFFINITY_TIMEOUT, NODE_PORT_MAX, NODE_PORT_MIN,
                                     PROTOCOLS, SERVICE_TYPES, TRAFFIC_POLICIES, Deployment, Service, ServicePort)
from emulator.topology import names
from emulator.topology.validate import Validator, did_you_mean, is_int, show, sub

SVC_KEYS = ("kind", "name", "namespace", "labels", "type", "selector", "clusterIP", "ports", "sessionAffinity",
            "sessionAffinityTimeout", "externalTrafficPolicy")
SVC_PORT_KEYS = ("name", "port", "targetPort", "protocol", "nodePort", "appProtocol")
K8S_TOP = ("apiVersion", "kind", "metadata", "spec", "status")
K8S_META = ("name", "namespace", "labels", "annotations", "uid", "creationTimestamp", "resourceVersion",
            "generation", "managedFields", "finalizers")
K8S_SVC_SPEC = ("type", "selector", "ports", "clusterIP", "clusterIPs", "sessionAffinity", "sessionAffinityConfig",
                "externalTrafficPolicy", "internalTrafficPolicy", "ipFamilies", "ipFamilyPolicy",
                "publishNotReadyAddresses", "allocateLoadBalancerNodePorts")
DEP_KEYS = ("kind", "name", "namespace", "labels", "replicas", "containers")
K8S_DEP_SPEC = ("replicas", "selector", "template", "strategy", "revisionHistoryLimit", "progressDeadlineSeconds",
                "minReadySeconds", "paused")
#: Pod-spec and container fields of real manifests that do not change the network: accepted and ignored.
IGNORED_POD_KEYS = ("restartPolicy", "terminationGracePeriodSeconds", "dnsPolicy", "securityContext",
                    "schedulerName", "enableServiceLinks", "tolerations", "priority", "serviceAccountName",
                    "serviceAccount", "automountServiceAccountToken", "preemptionPolicy", "nodeSelector")
IGNORED_CONTAINER_KEYS = ("imagePullPolicy", "resources", "livenessProbe", "readinessProbe", "startupProbe",
                          "securityContext", "terminationMessagePath", "terminationMessagePolicy", "workingDir",
                          "stdin", "stdinOnce", "tty")
MAX_DEPLOYMENT_NAME = 47  # leaves room for "-<10-char hash>-<5 chars>" in a 63-character pod name
_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_PORT_NAME = re.compile(r"^(?!.*--)(?=.*[a-z])[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class ServiceParser(Validator):
    """Checks Services of one file (``service_cidr`` bounds the ClusterIPs that may be given)."""

    def __init__(self, file: str, error: type, service_cidr: ipaddress.IPv4Network) -> None:
        super().__init__(file, error)
        self.service_cidr = service_cidr

    # -- Service --------------------------------------------------------------------------------------------
    def service(self, raw: object, at: str) -> Service:
        if _k8s_form(raw):
            return self._k8s_service(raw, at)
        data = self.mapping(raw, at, SVC_KEYS, "a service")
        return self._service_body(data, at, at, data.get("name"), data.get("namespace", "default"),
                                  data.get("labels"), data.get("sessionAffinityTimeout"),
                                  sub(at, "sessionAffinityTimeout"))

    def _k8s_service(self, raw: dict, at: str) -> Service:
        data = self.mapping(raw, at, K8S_TOP, "a Service manifest")
        if data.get("apiVersion") != "v1" or data.get("kind") != "Service":
            self.fail(sub(at, "apiVersion"), f"expected apiVersion 'v1' and kind 'Service', got "
                      f"{show(data.get('apiVersion'))} and {show(data.get('kind'))}", "write apiVersion: v1, kind: Service")
        meta = self.mapping(data.get("metadata"), sub(at, "metadata"), K8S_META, "metadata")
        spec = self.mapping(data.get("spec"), sub(at, "spec"), K8S_SVC_SPEC, "a Service spec")
        cfg = spec.get("sessionAffinityConfig") or {}
        field = sub(at, "spec.sessionAffinityConfig.clientIP.timeoutSeconds")
        timeout = cfg.get("clientIP", {}).get("timeoutSeconds") if isinstance(cfg, dict) and isinstance(
            cfg.get("clientIP", {}), dict) else None
        return self._service_body(spec, sub(at, "spec"), sub(at, "metadata"), meta.get("name"),
                                  meta.get("namespace", "default"), meta.get("labels"), timeout, field)

    def _service_body(self, spec: dict, at: str, meta_at: str, name: object, namespace: object, labels: object,
                      timeout: object, timeout_field: str) -> Service:
        name = self.dns1035(name, sub(meta_at, "name"))
        namespace = self.dns_name(namespace, sub(meta_at, "namespace"), "namespace", names.MAX_OBJECT_NAME,
                                  example="default")
        stype = spec.get("type", "ClusterIP")
        if stype not in SERVICE_TYPES:
            fix = ("use NodePort (podlab has no cloud load balancer; NodePort is what a LoadBalancer builds on)"
                   if stype == "LoadBalancer" else f"use one of {', '.join(SERVICE_TYPES)}")
            self.fail(sub(at, "type"), f"service type {show(stype)} is not supported", fix)
        selector = spec.get("selector")
        if selector is not None:
            if not selector:
                self.fail(sub(at, "selector"), "an empty selector would select no pod here",
                          "give labels (e.g. {app: web}) or drop 'selector' to manage the endpoints by hand")
            selector = self.labels(selector, sub(at, "selector"))
        cluster_ip = self.cluster_ip(spec.get("clusterIP"), sub(at, "clusterIP"))
        if cluster_ip == HEADLESS and stype != "ClusterIP":
            self.fail(sub(at, "clusterIP"), f"a {stype} service cannot be headless (clusterIP: None)",
                      "drop 'clusterIP: None' or use type ClusterIP")
        ports = self.ports(spec.get("ports"), sub(at, "ports"), stype, headless=cluster_ip == HEADLESS)
        affinity = spec.get("sessionAffinity", "None")
        if affinity not in AFFINITIES:
            self.fail(sub(at, "sessionAffinity"), f"{show(affinity)} is not a session affinity",
                      did_you_mean(affinity, AFFINITIES) or f"use one of {', '.join(AFFINITIES)}")
        if timeout is None:
            timeout = 10800
        elif not is_int(timeout) or not 1 <= timeout <= MAX_AFFINITY_TIMEOUT:
            self.fail(timeout_field, f"timeout {show(timeout)} is not an integer from 1 to {MAX_AFFINITY_TIMEOUT}",
                      "give seconds, e.g. 10800 (3 hours, the default)")
        policy = spec.get("externalTrafficPolicy", "Cluster")
        if policy not in TRAFFIC_POLICIES:
            self.fail(sub(at, "externalTrafficPolicy"), f"{show(policy)} is not a traffic policy",
                      f"use one of {', '.join(TRAFFIC_POLICIES)}")
        if policy == "Local" and stype != "NodePort":
            self.fail(sub(at, "externalTrafficPolicy"), "only NodePort services have external traffic",
                      "drop externalTrafficPolicy or use type NodePort")
        return Service(name=name, namespace=namespace, type=stype, ports=ports,
                       selector=selector, cluster_ip=cluster_ip, session_affinity=affinity, affinity_timeout=timeout,
                       labels=self.labels(labels, sub(meta_at, "labels")), external_traffic_policy=policy)

    def dns1035(self, value: object, field: str) -> str:
        if not isinstance(value, str) or not value or len(value) > 63 or not _DNS1035.match(value):
            self.fail(field, f"service name {show(value)} must be a DNS-1035 label: lower-case letters, digits and "
                      "'-', starting with a letter, at most 63 characters (it becomes <name>.<ns>.svc.cluster.local)",
                      "use e.g. 'web'")
        return value

    def cluster_ip(self, value: object, field: str) -> str | None:
        if value is None or value == "":
            return None
        if value == HEADLESS:
            return HEADLESS
        ip = self.address(value, field)
        net = self.service_cidr
        if ip not in net or ip in (net.network_address, net.broadcast_address):
            self.fail(field, f"{ip} is not a usable address of the service CIDR {net}",
                      f"give an address inside {net} (not its first or last), or drop clusterIP to have one allocated")
        return str(ip)

    def ports(self, raw: object, field: str, stype: str, headless: bool) -> tuple[ServicePort, ...]:
        entries = self.list_of(raw, field, "ports", "[{port: 80, targetPort: 8080}]")
        if not entries and not headless:
            self.fail(field, "a service needs at least one port", "add e.g. 'ports: [{port: 80, targetPort: 8080}]'")
        out: list[ServicePort] = []
        for i, entry in enumerate(entries):
            at = f"{field}[{i}]"
            data = self.mapping(entry, at, SVC_PORT_KEYS, "a service port")
            port = self.port_number(data.get("port"), f"{at}.port", "port: 80")
            target = data.get("targetPort", port)
            if isinstance(target, str) and not target.isdigit():
                if len(target) > 15 or not _PORT_NAME.match(target):
                    self.fail(f"{at}.targetPort", f"{show(target)} is neither a port number nor a port name",
                              "give the container's port number (8080) or the name of one of its ports (http)")
            else:
                target = self.port_number(int(target) if isinstance(target, str) else target, f"{at}.targetPort",
                                          "targetPort: 8080")
            protocol = data.get("protocol", "TCP")
            if protocol not in PROTOCOLS:
                self.fail(f"{at}.protocol", f"protocol {show(protocol)} is not supported for services here",
                          f"use {' or '.join(PROTOCOLS)} (upper case)")
            pname = data.get("name", "")
            if pname and (not isinstance(pname, str) or len(pname) > 63 or not names.DNS_LABEL.match(pname)):
                self.fail(f"{at}.name", f"port name {show(pname)} is not a DNS-1123 label (a Service port's "
                          "name, unlike a container port's, may be all digits: 80-8080)",
                          "use at most 63 lower-case letters, digits and '-', e.g. http")
            if len(entries) > 1 and not pname:
                self.fail(f"{at}.name", "a service with several ports must name every port",
                          "add e.g. 'name: http' (the name is part of the DNS SRV record and of kube-proxy's chains)")
            node_port = data.get("nodePort")
            if node_port is not None:
                if stype != "NodePort":
                    self.fail(f"{at}.nodePort", f"nodePort {show(node_port)} needs a NodePort service",
                              "add 'type: NodePort' to the service, or drop nodePort")
                if not is_int(node_port) or not NODE_PORT_MIN <= node_port <= NODE_PORT_MAX:
                    self.fail(f"{at}.nodePort", f"nodePort {show(node_port)} is outside {NODE_PORT_MIN}-{NODE_PORT_MAX}",
                              f"give a port from {NODE_PORT_MIN} to {NODE_PORT_MAX}, or drop it to have one allocated")
            for j, prev in enumerate(out):
                if pname and prev.name == pname:
                    self.fail(f"{at}.name", f"port name '{pname}' is already used by {field}[{j}]",
                              "name each port of a service once")
                if (prev.port, prev.protocol) == (port, protocol):
                    self.fail(f"{at}.port", f"{protocol} port {port} is already declared by {field}[{j}]",
                              "declare each port/protocol once")
                if node_port is not None and prev.node_port == node_port and prev.protocol == protocol:
                    self.fail(f"{at}.nodePort", f"nodePort {node_port} is already used by {field}[{j}]",
                              "give each port its own nodePort")
            out.append(ServicePort(port=port, target_port=target, protocol=protocol, name=pname, node_port=node_port))
        return tuple(out)

    def port_number(self, value: object, field: str, example: str) -> int:
        if not is_int(value) or not 1 <= value <= 65535:
            self.fail(field, f"{show(value)} is not a port number from 1 to 65535", f"write e.g. '{example}'")
        return int(value)

    # -- Deployment -----------------------------------------------------------------------------------------
    def deployment(self, raw: object, at: str) -> Deployment:
        if _k8s_form(raw):
            return self._k8s_deployment(raw, at)
        data = self.mapping(raw, at, DEP_KEYS, "a deployment")
        labels = self.labels(data.get("labels"), sub(at, "labels"))
        if not labels:
            self.fail(sub(at, "labels"), "a deployment needs labels for its pods (they are also its selector)",
                      "add e.g. 'labels: {app: web}'")
        return Deployment(name=self.deployment_name(data.get("name"), sub(at, "name")),
                          namespace=self.namespace(data.get("namespace", "default"), sub(at, "namespace")),
                          replicas=self.replicas(data.get("replicas", 1), sub(at, "replicas")), selector=labels,
                          template_labels=labels, containers=self.containers(data.get("containers"),
                                                                             sub(at, "containers")))

    def _k8s_deployment(self, raw: dict, at: str) -> Deployment:
        data = self.mapping(raw, at, K8S_TOP, "a Deployment manifest")
        if data.get("apiVersion") != "apps/v1" or data.get("kind") != "Deployment":
            self.fail(sub(at, "apiVersion"), f"expected apiVersion 'apps/v1' and kind 'Deployment', got "
                      f"{show(data.get('apiVersion'))} and {show(data.get('kind'))}",
                      "write apiVersion: apps/v1, kind: Deployment")
        meta = self.mapping(data.get("metadata"), sub(at, "metadata"), K8S_META, "metadata")
        spec = self.mapping(data.get("spec"), sub(at, "spec"), K8S_DEP_SPEC, "a Deployment spec")
        sel = self.mapping(spec.get("selector"), sub(at, "spec.selector"), ("matchLabels",), "a selector")
        selector = self.labels(sel.get("matchLabels"), sub(at, "spec.selector.matchLabels"))
        tmpl = self.mapping(spec.get("template"), sub(at, "spec.template"), ("metadata", "spec"), "a pod template")
        tmeta = self.mapping(tmpl.get("metadata"), sub(at, "spec.template.metadata"), ("labels", "annotations"),
                             "template metadata")
        tlabels = self.labels(tmeta.get("labels"), sub(at, "spec.template.metadata.labels"))
        if not selector:
            self.fail(sub(at, "spec.selector.matchLabels"), "a Deployment needs a selector",
                      "add spec.selector.matchLabels with the template's labels, e.g. {app: web}")
        missing = [k for k, v in selector if dict(tlabels).get(k) != v]
        if missing:
            self.fail(sub(at, "spec.template.metadata.labels"), f"the template's labels do not match the selector "
                      f"(missing {', '.join(missing)})", "give the template every label of spec.selector.matchLabels")
        tspec = tmpl.get("spec") or {}
        if not isinstance(tspec, dict):
            self.fail(sub(at, "spec.template.spec"), f"must be a mapping, got {show(tspec)}", "write a pod spec")
        for k in tspec:
            if k != "containers" and k not in IGNORED_POD_KEYS:
                self.fail(sub(at, f"spec.template.spec.{k}"), f"pod field {show(k)} is not supported in a template",
                          "remove it (podlab emulates the pod network only; a Deployment places its pods itself)")
        containers_raw = _strip(tspec.get("containers"), IGNORED_CONTAINER_KEYS)
        return Deployment(name=self.deployment_name(meta.get("name"), sub(at, "metadata.name")),
                          namespace=self.namespace(meta.get("namespace", "default"), sub(at, "metadata.namespace")),
                          replicas=self.replicas(spec.get("replicas", 1), sub(at, "spec.replicas")),
                          selector=selector, template_labels=tlabels,
                          containers=self.containers(containers_raw, sub(at, "spec.template.spec.containers")),
                          labels=self.labels(meta.get("labels"), sub(at, "metadata.labels")))

    def deployment_name(self, value: object, field: str) -> str:
        return self.dns_name(value, field, "deployment", MAX_DEPLOYMENT_NAME, example="web",
                             why=" (pods are named <deployment>-<hash>-<suffix>)", reserved=True)

    def namespace(self, value: object, field: str) -> str:
        return self.dns_name(value, field, "namespace", names.MAX_OBJECT_NAME, example="default")

    def replicas(self, value: object, field: str) -> int:
        if not is_int(value) or not 0 <= value <= 1000:
            self.fail(field, f"replicas {show(value)} is not an integer from 0 to 1000", "write e.g. 'replicas: 3'")
        return int(value)


def _k8s_form(raw: object) -> bool:
    """A real manifest (apiVersion/metadata/spec) rather than podlab's flat form (which may say ``kind``)."""
    return isinstance(raw, dict) and any(k in raw for k in ("apiVersion", "metadata", "spec"))


def _strip(containers: Any, ignored: tuple[str, ...]) -> Any:
    if not isinstance(containers, list):
        return containers
    return [{k: v for k, v in c.items() if k not in ignored} if isinstance(c, dict) else c for c in containers]


def from_topology(raw_services: object, raw_deployments: object, file: str, error: type,
                  service_cidr: ipaddress.IPv4Network,
                  namespaces: tuple[str, ...] | None = None) -> tuple[list[Service], list[Deployment]]:
    """The ``services`` and ``deployments`` sections of a topology, checked (names unique per namespace; with
    ``namespaces``, every object's namespace one of them)."""
    p = ServiceParser(file, error, service_cidr)
    services = [p.service(s, f"services[{i}]")
                for i, s in enumerate(p.list_of(raw_services, "services", "services", "[{name: web, ...}]"))]
    deployments = [p.deployment(d, f"deployments[{i}]")
                   for i, d in enumerate(p.list_of(raw_deployments, "deployments", "deployments",
                                                   "[{name: web, replicas: 2, ...}]"))]
    for kind, items in (("services", services), ("deployments", deployments)):
        seen: dict[tuple[str, str], int] = {}
        for i, obj in enumerate(items):
            if namespaces is not None and obj.namespace not in namespaces:
                field = f"{kind}[{i}].namespace" if not _k8s_form(
                    (raw_services if kind == "services" else raw_deployments)[i]) else f"{kind}[{i}].metadata.namespace"
                hint = did_you_mean(obj.namespace, list(namespaces))
                p.fail(field, f"namespace '{obj.namespace}' does not exist in the lab (namespaces: "
                       f"{', '.join(namespaces)})", (hint + " " if hint else "") + "declare it in the file's "
                       f"'namespaces:' section, e.g. 'namespaces: [{{name: {obj.namespace}}}]'")
            key = (obj.namespace, obj.name)
            if key in seen:
                p.fail(f"{kind}[{i}].name", f"name '{obj.name}' is already used in namespace {obj.namespace} by "
                       f"{kind}[{seen[key]}]", "give each object of a namespace its own name")
            seen[key] = i
    return services, deployments
