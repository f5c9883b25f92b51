"""Cluster DNS as a kubeadm (and kind) cluster has it: Deployment ``kube-system/coredns`` behind Service ``kube-dns``.

* Service ``kube-dns`` (labels ``k8s-app: kube-dns``, ``kubernetes.io/name: CoreDNS``), ClusterIP = the tenth address
  of the Service CIDR, ports ``dns`` 53/UDP, ``dns-tcp`` 53/TCP, ``metrics`` 9153/TCP, selector ``k8s-app:
  kube-dns``: its Endpoints are the pods', written by the endpoints controller like any Service's.
* Deployment ``coredns`` (2 replicas, ``k8s-app: kube-dns``; strategy maxUnavailable 1, the preferred pod
  anti-affinity on ``kubernetes.io/hostname`` that spreads the replicas over nodes, ``dnsPolicy: Default``,
  ``priorityClassName: system-cluster-critical``) with one container ``coredns`` of image
  ``registry.k8s.io/coredns/coredns:v1.11.3``, args ``-conf <lab>/coredns/Corefile`` (a file of the lab, as
  there are no ConfigMap volumes): the deployment controller makes ReplicaSet ``coredns-<hash>`` and pods
  ``coredns-<hash>-<5>``, the node agents run them in their own namespaces with IPs of their nodes' slices, and
  the image resolves to ``emulator.services.dnsserver``.

Values only (manifests); ``component`` writes them into the store.
"""
from __future__ import annotations

from pathlib import Path

from emulator.services.dnsserver import VERSION, render
from emulator.services.model import Deployment, Service, ServicePort
from emulator.state.paths import LabPaths

NAME = "coredns"
NAMESPACE = "kube-system"
REPLICAS = 2
IMAGE = f"registry.k8s.io/coredns/coredns:v{VERSION}"
APP = ("k8s-app", "kube-dns")
SERVICE_LABELS = (APP, ("kubernetes.io/name", "CoreDNS"))


def corefile_path(paths: LabPaths) -> Path:
    return paths.root / "coredns" / "Corefile"


def write_corefile(paths: LabPaths, domain: str) -> Path:
    path = corefile_path(paths)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(paths.store, domain))
    return path


def service(cluster_ip: str) -> Service:
    return Service(name="kube-dns", namespace=NAMESPACE, cluster_ip=cluster_ip, labels=SERVICE_LABELS,
                   selector=(APP,), ports=(ServicePort(53, 53, "UDP", "dns"), ServicePort(53, 53, "TCP", "dns-tcp"),
                                           ServicePort(9153, 9153, "TCP", "metrics")))


def deployment(paths: LabPaths, replicas: int = REPLICAS) -> dict:
    """The ``coredns`` Deployment's manifest (kubeadm's shape, without what podlab does not run: volumes,
    probes, resources, securityContext)."""
    container = {"name": "coredns", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
                 "args": ["-conf", str(corefile_path(paths))],
                 "ports": [{"containerPort": 53, "name": "dns", "protocol": "UDP"},
                           {"containerPort": 53, "name": "dns-tcp", "protocol": "TCP"},
                           {"containerPort": 9153, "name": "metrics", "protocol": "TCP"}]}
    base = Deployment(name=NAME, namespace=NAMESPACE, replicas=replicas, selector=(APP,), template_labels=(APP,),
                      containers=(), labels=(APP,)).manifest()
    spec = base["spec"]
    spec["strategy"] = {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": "25%"}}
    spec["template"]["spec"] = {
        "containers": [container], "dnsPolicy": "Default", "priorityClassName": "system-cluster-critical",
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "CriticalAddonsOnly", "operator": "Exists"},
                        {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}],
        "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
            "weight": 100, "podAffinityTerm": {
                "labelSelector": {"matchExpressions": [{"key": APP[0], "operator": "In", "values": [APP[1]]}]},
                "topologyKey": "kubernetes.io/hostname"}}]}}}
    return base
