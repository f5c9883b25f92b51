"""NetworkPolicy validation as the API server does it (field paths in the errors) and its defaulting."""
from __future__ import annotations

import pytest
import yaml

from emulator.errors import ManifestError, TopologyError
from emulator.netpol import parse
from emulator.netpol.model import EGRESS, INGRESS, IPBlock, LabelSelector, PolicyPort, Requirement


def manifest(spec: dict, name: str = "p", ns: str = "x") -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}


def err(spec: dict) -> ManifestError:
    with pytest.raises(ManifestError) as e:
        parse.parse_manifest(manifest(spec), "np.yaml")
    return e.value


@pytest.mark.parametrize("spec,field,words", [
    ({"podSelector": {"matchExpressions": [{"key": "pod", "operator": "in", "values": ["a"]}]}},
     "spec.podSelector.matchExpressions[0].operator", "not a valid selector operator"),
    ({"podSelector": {"matchExpressions": [{"key": "pod", "operator": "In"}]}},
     "spec.podSelector.matchExpressions[0].values", "must be specified"),
    ({"podSelector": {"matchExpressions": [{"key": "pod", "operator": "Exists", "values": ["a"]}]}},
     "spec.podSelector.matchExpressions[0].values", "may not be specified"),
    ({"podSelector": {"matchLabels": {"pod": "a b"}}}, "spec.podSelector.matchLabels.pod", "label value"),
    ({"podSelector": {"matchLabels": {"-bad": "a"}}}, "spec.podSelector.matchLabels.-bad", "label key"),
    ({"ingress": [{"from": [{"podSelector": {"matchExpressions": [{"key": "a/b/c", "operator": "Exists"}]}}]}]},
     "spec.ingress[0].from[0].podSelector.matchExpressions[0].key", "label key"),
    ({"ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.1/8"}}]}]}, "spec.ingress[0].from[0].ipBlock.cidr",
     "subnet form"),
    ({"ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0"}}]}]}, "spec.ingress[0].from[0].ipBlock.cidr",
     "not a valid CIDR"),
    ({"egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["11.0.0.0/16"]}}]}]},
     "spec.egress[0].to[0].ipBlock.except[0]", "strict subset"),
    ({"egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.0.0.0/8"]}}]}]},
     "spec.egress[0].to[0].ipBlock.except[0]", "strict subset"),
    ({"egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}]}]}, "spec.egress[0].to[0]",
     "both ipBlock and another peer"),
    ({"ingress": [{"from": [{}]}]}, "spec.ingress[0].from[0]", "must specify a peer"),
    ({"ingress": [{"ports": [{"protocol": "tcp", "port": 80}]}]}, "spec.ingress[0].ports[0].protocol",
     "Unsupported value"),
    ({"ingress": [{"ports": [{"protocol": "ICMP"}]}]}, "spec.ingress[0].ports[0].protocol", "Unsupported value"),
    ({"ingress": [{"ports": [{"port": "Serve_80"}]}]}, "spec.ingress[0].ports[0].port", "not a valid port name"),
    ({"ingress": [{"ports": [{"port": "serve-80-tcp-too-long"}]}]}, "spec.ingress[0].ports[0].port",
     "not a valid port name"),
    ({"ingress": [{"ports": [{"port": "80"}]}]}, "spec.ingress[0].ports[0].port", "quoted number"),
    ({"ingress": [{"ports": [{"port": 0}]}]}, "spec.ingress[0].ports[0].port", "between 1 and 65535"),
    ({"ingress": [{"ports": [{"port": 81, "endPort": 80}]}]}, "spec.ingress[0].ports[0].endPort",
     "greater than or equal"),
    ({"ingress": [{"ports": [{"port": "http", "endPort": 90}]}]}, "spec.ingress[0].ports[0].endPort",
     "non-numeric"),
    ({"ingress": [{"ports": [{"endPort": 90}]}]}, "spec.ingress[0].ports[0].endPort", "not specified"),
    ({"policyTypes": ["Ingress", "egress"]}, "spec.policyTypes[1]", "Unsupported value"),
    ({"policyTypes": ["Ingress", "Egress", "Ingress"]}, "spec.policyTypes", "more than two"),
    ({"ingress": [{"to": []}]}, "spec.ingress[0].to", "unknown key"),
    ({"podselector": {}}, "spec.podselector", "unknown key"),
])
def test_api_server_validation(spec: dict, field: str, words: str) -> None:
    e = err(spec)
    assert e.field == field, e
    assert words in str(e) and e.file == "np.yaml" and e.fix


def test_did_you_mean_and_names() -> None:
    assert "did you mean 'podSelector'" in err({"podselector": {}}).fix
    with pytest.raises(ManifestError) as e:
        parse.parse_manifest(manifest({}, name="Bad_Name"), "np.yaml")
    assert e.value.field == "metadata.name"
    with pytest.raises(ManifestError) as e:
        parse.parse_manifest({**manifest({}), "apiVersion": "extensions/v1beta1"}, "np.yaml")
    assert e.value.field == "apiVersion"


def test_policy_types_defaulting() -> None:
    p = parse.parse_manifest(manifest({"podSelector": {}}))
    assert p.policy_types == (INGRESS,)
    p = parse.parse_manifest(manifest({"egress": [{}]}))
    assert p.policy_types == (INGRESS, EGRESS)  # egress rules present: Egress added, Ingress still there
    p = parse.parse_manifest(manifest({"egress": []}))
    assert p.policy_types == (INGRESS,)  # an empty egress list adds nothing
    p = parse.parse_manifest(manifest({"policyTypes": ["Egress"], "ingress": [{}]}))
    assert p.policy_types == (EGRESS,) and p.ingress  # kept, but ignored by the semantics


def test_missing_and_empty_collapse_and_protocol_defaults() -> None:
    a = parse.parse_manifest(manifest({"ingress": [{"from": [], "ports": []}]}))
    b = parse.parse_manifest(manifest({"ingress": [{}]}))
    assert a.ingress == b.ingress and a.ingress[0].peers == () and a.ingress[0].ports == ()
    c = parse.parse_manifest(manifest({"ingress": [{"ports": [{}, {"port": 80}, {"port": 80, "endPort": 90,
                                                                                  "protocol": "UDP"}]}]}))
    assert c.ingress[0].ports == (PolicyPort("TCP"), PolicyPort("TCP", 80), PolicyPort("UDP", 80, 90))
    d = parse.parse_manifest(manifest({"ingress": []}))
    assert d.ingress == () and d.policy_types == (INGRESS,)


def test_selectors_and_blocks_parse() -> None:
    p = parse.parse_manifest(manifest({"podSelector": {"matchLabels": {"pod": "a"}, "matchExpressions": [
        {"key": "tier", "operator": "NotIn", "values": ["db"]}]}, "ingress": [{"from": [
            {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "web"}}},
            {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}},
            {"ipBlock": {"cidr": "fd00::/8"}}]}]}))
    assert p.pod_selector == LabelSelector((("pod", "a"),), (Requirement("tier", "NotIn", ("db",)),))
    assert p.pod_selector.text() == "pod=a,tier notin (db)"
    peers = p.ingress[0].peers
    assert peers[0].namespace_selector == LabelSelector() and peers[0].pod_selector.text() == "app=web"
    assert peers[1].ip_block == IPBlock("10.0.0.0/8", ("10.1.0.0/16",))
    assert peers[1].ip_block.contains("10.2.0.1") and not peers[1].ip_block.contains("10.1.0.1")
    assert not peers[2].ip_block.contains("10.2.0.1")  # an IPv6 block never matches an IPv4 address


def test_store_round_trip() -> None:
    p = parse.parse_manifest(manifest({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [
        {"from": [{"podSelector": {}}], "ports": [{"port": "serve-80-tcp"}]}], "egress": [{}]}))
    m = p.manifest()
    assert m["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert m["spec"]["ingress"][0]["ports"] == [{"protocol": "TCP", "port": "serve-80-tcp"}]
    assert parse.from_store(m) == p


def test_topology_section() -> None:
    text = """
networkPolicies:
  - name: deny
    namespace: x
    podSelector: {}
    ingress: []
  - apiVersion: networking.k8s.io/v1
    kind: NetworkPolicy
    metadata: {name: allow, namespace: x}
    spec: {ingress: [{from: [{namespaceSelector: {matchLabels: {team: a}}}]}]}
"""
    pols = parse.from_topology(yaml.safe_load(text)["networkPolicies"], "t.yaml")
    assert [p.ref for p in pols] == ["x/deny", "x/allow"]
    bad = yaml.safe_load(text)["networkPolicies"]
    bad[1]["spec"]["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"]["team"] = "a!"
    with pytest.raises(TopologyError) as e:
        parse.from_topology(bad, "t.yaml")
    assert e.value.field == "networkPolicies[1].spec.ingress[0].from[0].namespaceSelector.matchLabels.team"
    dup = yaml.safe_load(text)["networkPolicies"] + [{"name": "deny", "namespace": "x"}]
    with pytest.raises(TopologyError) as e:
        parse.from_topology(dup, "t.yaml")
    assert e.value.field == "networkPolicies[2].name" and "already defined" in str(e.value)


def test_unknown_namespace_is_accepted() -> None:
    p = parse.parse_manifest(manifest({}, ns="does-not-exist-yet"))
    assert p.namespace == "does-not-exist-yet"


def test_component_validates_the_topology_section_before_anything_is_made() -> None:
    from emulator.netpol.component import NetworkPolicyComponent
    from emulator.topology.loader import loads
    base = "version: 1\nnodes: [{name: node-1}]\n"
    assert not NetworkPolicyComponent().wanted(loads(base, "t.yaml"))
    assert NetworkPolicyComponent().wanted(loads(base + "networkPolicies: []\n", "t.yaml"))
    bad = loads(base + "networkPolicies: [{name: p, ingress: [{ports: [{protocol: tcp}]}]}]\n", "t.yaml")
    with pytest.raises(TopologyError) as e:
        NetworkPolicyComponent().wanted(bad)
    assert e.value.file == "t.yaml" and e.value.field == "networkPolicies[0].ingress[0].ports[0].protocol"
    assert "write 'TCP' (upper case)" in e.value.fix
