"""Cluster DNS answers (A, SRV, headless, pod names, NXDOMAIN vs NODATA, REFUSED outside the zone), pods'
resolv.conf, the external network's settings and desired state, flannel's masquerade rules."""
from __future__ import annotations

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from emulator.errors import TopologyError
from emulator.external import config as ext_config
from emulator.external import masq, network
from emulator.services.dns import answer, build_zone
from emulator.services.endpoints import manifest as ep_manifest
from emulator.services.model import Service, ServicePort
from emulator.state.resolv import content
from emulator.topology.loader import loads

SERVICES = [Service("web", ports=(ServicePort(80, 8080, "TCP", "http"),), cluster_ip="10.100.1.2").manifest(),
            Service("kube-dns", "kube-system", ports=(ServicePort(53, 53, "UDP", "dns"),),
                    cluster_ip="10.96.0.10").manifest(),
            Service("db", cluster_ip="None", selector=(("a", "db"),)).manifest()]
ENDPOINTS = [ep_manifest("db", "default", [{"addresses": [{"ip": "10.244.1.7"}, {"ip": "10.244.2.7"}],
                                            "notReadyAddresses": [{"ip": "10.244.3.7"}], "ports": []}])]
ZONE = build_zone(SERVICES, ENDPOINTS)


def ask(name: str, rdtype: str = "A") -> dns.message.Message:
    q = dns.message.make_query(name, rdtype)
    return dns.message.from_wire(answer(dns.message.from_wire(q.to_wire()), ZONE).to_wire())


def values(resp: dns.message.Message) -> list[str]:
    return sorted(r.to_text() for rr in resp.answer for r in rr)


def test_service_a_records() -> None:
    r = ask("web.default.svc.cluster.local")
    assert r.rcode() == dns.rcode.NOERROR and values(r) == ["10.100.1.2"] and r.flags & dns.flags.AA
    assert r.answer[0].ttl == 5
    assert values(ask("KUBE-DNS.kube-system.svc.cluster.local.")) == ["10.96.0.10"]
    assert values(ask("db.default.svc.cluster.local")) == ["10.244.1.7", "10.244.2.7"]  # headless: ready endpoints


def test_srv_and_pod_records() -> None:
    r = ask("_http._tcp.web.default.svc.cluster.local", "SRV")
    assert values(r) == ["0 100 80 web.default.svc.cluster.local."]
    assert values(ask("10-244-1-5.default.pod.cluster.local")) == ["10.244.1.5"]


def test_nxdomain_nodata_and_refused() -> None:
    r = ask("nope.default.svc.cluster.local")
    assert r.rcode() == dns.rcode.NXDOMAIN and r.authority[0].rdtype == dns.rdatatype.SOA
    r = ask("web.default.svc.cluster.local", "AAAA")
    assert r.rcode() == dns.rcode.NOERROR and not r.answer and r.authority  # exists, no IPv6: NODATA
    assert ask("default.svc.cluster.local").rcode() == dns.rcode.NOERROR  # an empty non-terminal exists
    assert ask("web.default.svc.cluster.local.default.svc.cluster.local").rcode() == dns.rcode.NXDOMAIN
    assert ask("example.com").rcode() == dns.rcode.REFUSED


def test_resolv_conf_is_a_pods() -> None:
    assert content("prod", "10.96.0.10") == ("search prod.svc.cluster.local svc.cluster.local cluster.local\n"
                                             "nameserver 10.96.0.10\noptions ndots:5\n")


BASE = "version: 1\nname: t\nnodes: [{name: node-1}, {name: node-2}]\n"


def test_external_network_defaults_and_rules() -> None:
    assert ext_config.settings(loads(BASE)) is None  # no services, no external: nothing
    ext = ext_config.settings(loads(BASE + "services: []\n"))
    assert ext is not None and str(ext.host) == "203.0.113.2" and str(ext.underlay_gateway) == "192.168.56.1"
    assert ext_config.settings(loads(BASE + "kubeProxy: {}\nexternal: false\n")) is None
    custom = ext_config.settings(loads(BASE + "external: {cidr: 198.51.100.0/24, host: 198.51.100.9}\n"))
    assert custom is not None and str(custom.gateway) == "198.51.100.1" and str(custom.host) == "198.51.100.9"
    for text, field in (("external: {cidr: 10.244.0.0/24}\n", "external.cidr"),
                        ("external: {host: 203.0.113.1}\n", "external.host"),
                        ("external: {hots: 1}\n", "external.hots"),
                        ("external: {}\npods: [{name: gw}]\n", "pods[0].name")):
        with pytest.raises(TopologyError) as e:
            ext_config.settings(loads(BASE + text, "lab.yaml"))
        assert e.value.field == field and e.value.file == "lab.yaml"


def test_desired_states_of_router_and_host() -> None:
    topo = loads(BASE + "external: {}\n")
    ext = ext_config.settings(topo)
    assert ext is not None
    router = network.router_state(topo, ext)
    assert {(a.dev, a.ip) for a in router.addrs} == {("eth0", "192.168.56.1"), ("eth1", "203.0.113.1")}
    assert ("net.ipv4.ip_forward", "1") in router.sysctls and not router.routes  # no route to pods: not routable
    host = network.host_state(topo, ext)
    assert [(r.dst, r.gateway) for r in host.routes] == [("0.0.0.0/0", "203.0.113.1")]
    from emulator.routing.base import base_node_state
    node_routes = base_node_state(topo, topo.nodes[0]).routes
    assert [(r.dst, r.gateway) for r in node_routes] == [("0.0.0.0/0", "192.168.56.1")]
    assert base_node_state(loads(BASE), topo.nodes[0]).routes == ()


def test_flannel_masquerade_rules() -> None:
    text = masq.render("10.244.0.0/16", "10.244.1.0/24", set())
    lines = text.splitlines()
    assert '-I POSTROUTING 1 -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG' in lines
    rules = [ln for ln in lines if ln.startswith("-A FLANNEL-POSTRTG")]
    assert [r.split(" -m comment")[0].replace("-A FLANNEL-POSTRTG ", "") for r in rules] == [
        "-m mark --mark 0x4000/0x4000", "-s 10.244.0.0/16 -d 10.244.0.0/16", "-s 10.244.0.0/16 ! -d 224.0.0.0/4",
        "! -s 10.244.0.0/16 -d 10.244.1.0/24", "! -s 10.244.0.0/16 -d 10.244.0.0/16"]
    assert [r.split("-j ")[1] for r in rules] == ["RETURN", "RETURN", "MASQUERADE --random-fully", "RETURN",
                                                 "MASQUERADE --random-fully"]
    again = masq.render("10.244.0.0/16", "10.244.1.0/24", {("nat", "POSTROUTING", "FLANNEL-POSTRTG"),
                                                           ("filter", "FORWARD", "FLANNEL-FWD")})
    assert "-I " not in again
