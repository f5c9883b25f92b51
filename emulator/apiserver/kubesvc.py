"""The ``default/kubernetes`` Service: the API server as pods see it, at ``https://kubernetes.default.svc``.

Written in labs that run Services (kube-proxy: without it no ClusterIP leads anywhere, and ``podlab check``
would rightly fail the Service). As on a kubeadm/kind cluster, the Service has the first address of the Service CIDR and port 443 (``https``),
no selector, and Endpoints that name the control-plane node's address and port 6443. Here the control plane is
the lab's first node: the API server opens a second listening socket *inside that node's network namespace*
(``listen_in_lab``: a socket created by a thread that has entered it), bound to the node's own address, so a pod
reaches the API through the Service (with kube-proxy) or at the node's address, while nothing listens outside the
lab except the server's 127.0.0.1 port. The server certificate names the Service's ClusterIP, the node's address
and the ``kubernetes[.default[.svc[.<domain>]]]`` names; the lab's token is still required (anonymous requests
get 401, as from 127.0.0.1).
"""
from __future__ import annotations

import ipaddress
import socket

from emulator.netlink import netns
from emulator.services import registry
from emulator.services.alloc import api_ip
from emulator.services.config import DOMAIN
from emulator.services.endpoints import manifest as endpoints_manifest
from emulator.services.model import Service, ServicePort
from emulator.state.store import Store
from emulator.topology import names

PORT = 6443
LABELS = (("component", "apiserver"), ("provider", "kubernetes"))


def dns_names(domain: str = DOMAIN) -> tuple[str, ...]:
    return ("kubernetes", "kubernetes.default", "kubernetes.default.svc", f"kubernetes.default.svc.{domain}")


def put(store: Store, cidr: ipaddress.IPv4Network, node_ip: str) -> None:
    """Write the Service and its Endpoints (idempotent)."""
    registry.put_service(store, Service(name="kubernetes", namespace="default", cluster_ip=api_ip(cidr),
                                        labels=LABELS, ports=(ServicePort(443, PORT, "TCP", "https"),)), cidr)
    store.put("endpoints", "kubernetes", endpoints_manifest("kubernetes", "default", [{
        "addresses": [{"ip": node_ip}], "ports": [{"name": "https", "port": PORT, "protocol": "TCP"}]}],
        dict(LABELS)))


def listen_in_lab(lab: str, node: str, node_ip: str) -> socket.socket:
    """A listening socket on ``node_ip:6443`` inside the node's namespace."""
    with netns.entered(names.node_ns(lab, node)):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((node_ip, PORT))
        s.listen(64)
    return s
