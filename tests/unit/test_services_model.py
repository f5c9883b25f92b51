"""Services and Deployments: both input forms, every rule's error (file, field, value, fix), allocation, admission."""
from __future__ import annotations

import ipaddress

import pytest
import yaml

from emulator.errors import ManifestError, TopologyError
from emulator.services import alloc, config, registry
from emulator.services.alloc import AllocationError
from emulator.services.model import Service, ServicePort, deployment_from_manifest, service_from_manifest
from emulator.services.parse import ServiceParser, from_topology
from emulator.state.store import Store
from emulator.topology.loader import loads
from emulator.topology.sections import has_gateway, kube_proxy_runs

CIDR = ipaddress.IPv4Network("10.96.0.0/12")


def parser() -> ServiceParser:
    return ServiceParser("svc.yaml", ManifestError, CIDR)


def fails(obj: object, field: str, *words: str, kind: str = "service") -> ManifestError:
    with pytest.raises(ManifestError) as e:
        getattr(parser(), kind)(obj, "")
    assert e.value.field == field, str(e.value)
    assert e.value.file == "svc.yaml" and e.value.fix
    for w in words:
        assert w in str(e.value)
    return e.value


def test_podlab_and_kubernetes_forms_give_the_same_service() -> None:
    flat = parser().service({"name": "web", "selector": {"app": "web"}, "type": "NodePort",
                             "sessionAffinity": "ClientIP", "sessionAffinityTimeout": 60,
                             "ports": [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080}]}, "")
    k8s = parser().service(yaml.safe_load("""
        apiVersion: v1
        kind: Service
        metadata: {name: web, annotations: {a: b}}
        spec:
          type: NodePort
          selector: {app: web}
          ipFamilies: [IPv4]
          sessionAffinity: ClientIP
          sessionAffinityConfig: {clientIP: {timeoutSeconds: 60}}
          ports: [{name: http, port: 80, targetPort: 8080, nodePort: 30080}]
    """), "")
    assert flat == k8s
    assert flat.ports[0] == ServicePort(80, 8080, "TCP", "http", 30080) and flat.affinity_timeout == 60


def test_manifest_round_trip_keeps_everything_kube_proxy_reads() -> None:
    svc = Service("web", "default", "NodePort", (ServicePort(80, "http", "TCP", "http", 30080),
                                                 ServicePort(53, 5353, "UDP", "dns")),
                  (("app", "web"),), "10.96.5.5", "ClientIP", 99)
    m = svc.manifest()
    assert m["apiVersion"] == "v1" and m["kind"] == "Service" and m["spec"]["clusterIPs"] == ["10.96.5.5"]
    assert m["spec"]["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 99}}
    assert service_from_manifest(m) == svc


@pytest.mark.parametrize("obj, field, words", [
    ({"name": "Web", "ports": [{"port": 80}]}, "name", ["DNS-1035"]),
    ({"name": "1web", "ports": [{"port": 80}]}, "name", ["starting with a letter"]),
    ({"name": "web", "type": "LoadBalancer", "ports": [{"port": 80}]}, "type", ["LoadBalancer"]),
    ({"name": "web", "ports": []}, "ports", ["at least one port"]),
    ({"name": "web", "ports": [{"port": 0}]}, "ports[0].port", ["1 to 65535"]),
    ({"name": "web", "ports": [{"port": 80, "protocol": "tcp"}]}, "ports[0].protocol", ["'tcp'"]),
    ({"name": "web", "ports": [{"port": 80, "targetPort": "HTTP!"}]}, "ports[0].targetPort", ["port name"]),
    ({"name": "web", "ports": [{"port": 80}, {"port": 81}]}, "ports[0].name", ["name every port"]),
    ({"name": "web", "ports": [{"name": "a", "port": 80}, {"name": "a", "port": 81}]}, "ports[1].name", ["already"]),
    ({"name": "web", "ports": [{"name": "a", "port": 80}, {"name": "b", "port": 80}]}, "ports[1].port", ["already"]),
    ({"name": "web", "ports": [{"port": 80, "nodePort": 30080}]}, "ports[0].nodePort", ["NodePort service"]),
    ({"name": "web", "type": "NodePort", "ports": [{"port": 80, "nodePort": 80}]}, "ports[0].nodePort",
     ["30000-32767"]),
    ({"name": "web", "clusterIP": "10.0.0.1", "ports": [{"port": 80}]}, "clusterIP", ["service CIDR"]),
    ({"name": "web", "clusterIP": "10.96.0.0", "ports": [{"port": 80}]}, "clusterIP", ["usable"]),
    ({"name": "web", "selector": {}, "ports": [{"port": 80}]}, "selector", ["empty selector"]),
    ({"name": "web", "sessionAffinity": "Cookie", "ports": [{"port": 80}]}, "sessionAffinity", ["Cookie"]),
    ({"name": "web", "sessionAffinityTimeout": 0, "ports": [{"port": 80}]}, "sessionAffinityTimeout", ["1 to"]),
    ({"name": "web", "prots": [{"port": 80}]}, "prots", ["did you mean 'ports'"]),
    ({"name": "web", "type": "NodePort", "clusterIP": "None", "ports": [{"port": 80}]}, "clusterIP", ["headless"]),
])
def test_service_rules(obj: dict, field: str, words: list[str]) -> None:
    fails(obj, field, *words)


def test_kubernetes_form_errors_name_the_spec_field() -> None:
    fails({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "w"}, "spec": {"externalIPs": ["1.2.3.4"]}},
          "spec.externalIPs", "unknown key")
    fails({"apiVersion": "v2", "kind": "Service", "metadata": {"name": "w"}, "spec": {}}, "apiVersion", "'v2'")


def test_headless_service_may_have_no_ports() -> None:
    svc = parser().service({"name": "db", "clusterIP": "None", "selector": {"app": "db"}}, "")
    assert svc.headless and svc.ports == ()


def test_deployment_forms_and_rules() -> None:
    flat = parser().deployment({"name": "web", "replicas": 3, "labels": {"app": "web"},
                                "containers": [{"name": "c", "image": "netexec"}]}, "")
    k8s = parser().deployment(yaml.safe_load("""
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: web}
        spec:
          replicas: 3
          selector: {matchLabels: {app: web}}
          strategy: {type: RollingUpdate}
          template:
            metadata: {labels: {app: web}}
            spec:
              restartPolicy: Always
              containers: [{name: c, image: netexec, imagePullPolicy: IfNotPresent}]
    """), "")
    assert flat == k8s
    assert deployment_from_manifest(flat.manifest()) == flat
    fails({"name": "web", "replicas": -1, "labels": {"a": "b"}}, "replicas", "0 to 1000", kind="deployment")
    fails({"name": "web"}, "labels", "needs labels", kind="deployment")
    fails({"name": "x" * 48, "labels": {"a": "b"}}, "name", "at most 47", kind="deployment")
    fails({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "w"},
           "spec": {"selector": {"matchLabels": {"app": "a"}}, "template": {"metadata": {"labels": {"app": "b"}},
                                                                           "spec": {"containers": []}}}},
          "spec.template.metadata.labels", "do not match", kind="deployment")
    fails({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "w"},
           "spec": {"selector": {"matchLabels": {"app": "a"}},
                    "template": {"metadata": {"labels": {"app": "a"}}, "spec": {"hostNetwork": True}}}},
          "spec.template.spec.hostNetwork", "not supported", kind="deployment")


TOPO = """
version: 1
name: t
nodes: [{name: node-1}, {name: node-2}]
kubeProxy: {mode: nftables}
services:
  - {name: web, selector: {app: web}, ports: [{port: 80, targetPort: 8080}]}
deployments:
  - {name: web, replicas: 2, labels: {app: web}}
"""


def test_topology_sections_are_validated_with_their_paths() -> None:
    topo = loads(TOPO, "lab.yaml")
    cfg = config.settings(topo)
    assert cfg is not None and cfg.proxy_mode == "nftables" and cfg.dns_ip == "10.96.0.10"
    assert [s.name for s in cfg.services] == ["web"]
    bad = loads(TOPO.replace("port: 80,", "port: 80, nodePort: 31000,"), "lab.yaml")
    with pytest.raises(TopologyError) as e:
        config.settings(bad)
    assert e.value.field == "services[0].ports[0].nodePort" and e.value.file == "lab.yaml"
    with pytest.raises(TopologyError) as e:
        config.settings(loads(TOPO.replace("nftables", "ipvs"), "lab.yaml"))
    assert e.value.field == "kubeProxy.mode"
    with pytest.raises(TopologyError) as e:
        from_topology([{"name": "a", "ports": [{"port": 1}]}, {"name": "a", "ports": [{"port": 1}]}], None, "f",
                      TopologyError, CIDR)
    assert e.value.field == "services[1].name"


PLAIN = "version: 1\nname: t\nnodes: [{name: n1}]\n"


def test_kube_proxy_runs_by_default_and_none_turns_it_off() -> None:
    cfg = config.settings(loads(PLAIN, "x"))  # no services, deployments or kubeProxy: on, as a real cluster
    assert cfg is not None and cfg.proxy_mode == "iptables" and cfg.services == () and cfg.dns_ip == "10.96.0.10"
    assert config.enabled(loads(PLAIN, "x")) and kube_proxy_runs({})
    off = loads(PLAIN + "kubeProxy: none\n", "x")
    assert config.settings(off) is None and not config.enabled(off) and not kube_proxy_runs(dict(off.extra))
    assert config.settings(loads(PLAIN + "kubeProxy: {mode: nftables}\n", "x")).proxy_mode == "nftables"
    assert config.settings(loads(PLAIN + "kubeProxy: {}\n", "x")).proxy_mode == "iptables"
    # only declared Services give a lab its external network: kube-proxy by default or none does not
    assert not has_gateway(loads(PLAIN, "x")) and not has_gateway(off)
    assert has_gateway(loads(PLAIN + "kubeProxy: {mode: iptables}\n", "x"))


@pytest.mark.parametrize("value, hint", [("None", "lower case"), ("off", "kubeProxy: none"), ("false", "none"),
                                         ("[iptables]", "mode: iptables"), ("iptables", "mode: iptables"),
                                         ("0", "kubeProxy: none")])
def test_a_bad_kube_proxy_value_names_file_field_and_fix(value: str, hint: str) -> None:
    with pytest.raises(TopologyError) as e:
        config.settings(loads(PLAIN + f"kubeProxy: {value}\n", "lab.yaml"))
    assert e.value.file == "lab.yaml" and e.value.field == "kubeProxy"
    assert "is not a kube-proxy setting" in str(e.value) and hint in str(e.value)


@pytest.mark.parametrize("section", ["services: []", "deployments: []",
                                     "services:\n  - {name: web, ports: [{port: 80}]}"])
def test_services_beside_kube_proxy_none_are_refused(section: str) -> None:
    with pytest.raises(TopologyError) as e:
        config.settings(loads(PLAIN + "kubeProxy: none\n" + section + "\n", "lab.yaml"))
    key = section.split(":")[0]
    assert e.value.field == key and "kubeProxy: none" in str(e.value) and f"remove the {key} section" in str(e.value)


def test_allocation_is_reproducible_avoids_reserved_and_taken() -> None:
    a = alloc.allocate_ip("default/web", CIDR, [])
    assert a == alloc.allocate_ip("default/web", CIDR, [])
    assert ipaddress.IPv4Address(a) in CIDR and ipaddress.IPv4Address(a) >= CIDR.network_address + 256
    assert alloc.allocate_ip("default/web", CIDR, [a]) != a
    small = ipaddress.IPv4Network("10.96.0.0/29")  # 8 addresses: .0 .1 .7 and .10 (outside) reserved
    got = {alloc.allocate_ip(f"s{i}", small, []) for i in range(3)}
    taken: list[str] = []
    for i in range(5):
        taken.append(alloc.allocate_ip(f"s{i}", small, taken))
    assert len(set(taken)) == 5 and not {"10.96.0.0", "10.96.0.1", "10.96.0.7"} & set(taken) and got
    with pytest.raises(AllocationError):
        alloc.allocate_ip("s6", small, taken)
    p = alloc.allocate_node_port("default/web:http", [])
    assert 30086 <= p <= 32767 and alloc.allocate_node_port("default/web:http", [p]) != p


def test_admission_keeps_allocations_and_refuses_conflicts(tmp_path) -> None:
    store = Store(tmp_path)
    store.init()
    web = Service("web", ports=(ServicePort(80, 8080, name="http"),), type="NodePort", selector=(("a", "b"),))
    m, word = registry.put_service(store, web, CIDR)
    assert word == "created" and m["spec"]["ports"][0]["nodePort"] >= 30000
    again, word = registry.put_service(store, web, CIDR)
    assert word == "unchanged" and again["spec"]["clusterIP"] == m["spec"]["clusterIP"]
    with pytest.raises(AllocationError, match="immutable"):
        registry.put_service(store, Service("web", ports=web.ports, cluster_ip="10.96.9.9"), CIDR)
    with pytest.raises(AllocationError, match="already the clusterIP of default/web"):
        registry.put_service(store, Service("other", ports=web.ports, cluster_ip=m["spec"]["clusterIP"]), CIDR)
    with pytest.raises(AllocationError, match="nodePort"):
        registry.put_service(store, Service("np", type="NodePort", ports=(
            ServicePort(80, 80, node_port=m["spec"]["ports"][0]["nodePort"]),)), CIDR)
    other, word = registry.put_service(store, Service("web", namespace="other", ports=web.ports), CIDR)
    assert word == "created" and other["spec"]["clusterIP"] != m["spec"]["clusterIP"]  # same name, other namespace
    assert store.get("services", "web", "other")["metadata"]["namespace"] == "other"
    kube_dns = Service("kube-dns", "kube-system", ports=(ServicePort(53, 53, "UDP", "dns"),), cluster_ip="10.96.0.10")
    assert registry.put_service(store, kube_dns, CIDR)[1] == "created"
    with pytest.raises(AllocationError, match="reserved"):
        registry.put_service(store, Service("api", ports=web.ports, cluster_ip="10.96.0.1"), CIDR)
