"""Cluster DNS as kube-system's ``coredns`` pods: their Corefile, the answer cache that follows the store, the
Deployment's shape and how its replicas spread over nodes, the image that runs the server."""
from __future__ import annotations

import random
import sys
from pathlib import Path

import dns.message
import dns.rcode
import pytest

from emulator.agent import images
from emulator.services import coredns, deployments, dnsserver
from emulator.services.dnsserver import Answers, Corefile, CorefileError
from emulator.services.endpoints import compute
from emulator.services.model import Service, ServicePort
from emulator.state.paths import LabPaths
from emulator.state.store import Store


def test_the_corefile_is_read_back_and_other_plugins_are_refused() -> None:
    text = dnsserver.render(Path("/run/podlab/labs/x/store"))
    conf = Corefile.parse(text)
    assert conf == Corefile(port=53, zone="cluster.local", store="/run/podlab/labs/x/store", ttl=5, metrics_port=9153)
    assert text.startswith(".:53 {\n    errors\n    kubernetes cluster.local {")
    with pytest.raises(CorefileError, match="plugin 'forward' is not implemented"):
        Corefile.parse(text.replace("    errors\n", "    errors\n    forward . /etc/resolv.conf\n"))
    with pytest.raises(CorefileError, match="option 'fallthrough'"):
        Corefile.parse(text.replace("pods insecure", "fallthrough"))
    with pytest.raises(CorefileError, match="`.:PORT` only"):
        Corefile.parse(text.replace(".:53", "cluster.local:53"))


def query(name: str, qid: int, rdtype: str = "A") -> bytes:
    q = dns.message.make_query(name, rdtype)
    q.id = qid
    return q.to_wire()


def test_answers_are_cached_per_question_and_follow_the_store(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.put("services", "web", Service("web", ports=(ServicePort(80, 80),), cluster_ip="10.96.3.4").manifest())
    ans = Answers(store, "cluster.local")
    first = dns.message.from_wire(ans.respond(query("web.default.svc.cluster.local", 7)))
    assert first.id == 7 and [r.to_text() for rr in first.answer for r in rr] == ["10.96.3.4"]
    assert len(ans.cache) == 1
    again = dns.message.from_wire(ans.respond(query("web.default.svc.cluster.local", 4242)))
    assert again.id == 4242 and again.answer == first.answer and len(ans.cache) == 1  # from the cache, its own ID
    assert dns.message.from_wire(ans.respond(query("db.default.svc.cluster.local", 1))).rcode() == dns.rcode.NXDOMAIN
    store.put("services", "db", Service("db", ports=(ServicePort(5432, 5432),), cluster_ip="10.96.3.5").manifest())
    ans.next_check = 0  # the 10 ms between looks at the store have passed
    now = dns.message.from_wire(ans.respond(query("db.default.svc.cluster.local", 2)))
    assert [r.to_text() for rr in now.answer for r in rr] == ["10.96.3.5"]  # the cached NXDOMAIN went with the zone
    assert ans.respond(b"\x00\x01garbage") is None


def test_kube_dns_selects_the_coredns_pods_and_the_replicas_spread() -> None:
    paths = LabPaths("core-x")
    dep = coredns.deployment(paths)
    tmpl = dep["spec"]["template"]
    assert dep["metadata"]["labels"] == {"k8s-app": "kube-dns"} and dep["spec"]["replicas"] == 2
    c = tmpl["spec"]["containers"][0]
    assert (c["name"], c["image"]) == ("coredns", "registry.k8s.io/coredns/coredns:v1.11.3")
    assert [(p["name"], p["containerPort"], p["protocol"]) for p in c["ports"]] == [
        ("dns", 53, "UDP"), ("dns-tcp", 53, "TCP"), ("metrics", 9153, "TCP")]
    assert c["args"] == ["-conf", str(paths.root / "coredns" / "Corefile")]
    counts = {"node-1": 0, "node-2": 7}  # the scheduler's anti-affinity wins over the pod count
    plan = deployments.plan(dep, [], {}, ["node-1", "node-2"], counts, random.Random(3))
    pods = plan.create
    assert sorted(p["spec"]["nodeName"] for p in pods) == ["node-1", "node-2"]
    rs = plan.replicasets[0]["metadata"]["name"]
    assert rs.startswith("coredns-") and len(rs) == len("coredns-") + 10
    assert all(p["metadata"]["name"].startswith(rs + "-") and len(p["metadata"]["name"]) == len(rs) + 6 for p in pods)
    assert pods[0]["spec"]["dnsPolicy"] == "Default" and pods[0]["metadata"]["namespace"] == "kube-system"
    svc = coredns.service("10.96.0.10").manifest()
    assert svc["spec"]["selector"] == {"k8s-app": "kube-dns"}
    statuses = {("kube-system", p["metadata"]["name"]): {"podIP": f"10.244.{i}.2", "phase": "Running",
                                                        "uid": p["metadata"]["uid"]} for i, p in enumerate(pods, 1)}
    ep = compute(svc, pods, statuses)
    assert ep is not None and [a["ip"] for a in ep["subsets"][0]["addresses"]] == ["10.244.1.2", "10.244.2.2"]
    assert [(p["name"], p["port"], p["protocol"]) for p in ep["subsets"][0]["ports"]] == [
        ("dns", 53, "UDP"), ("dns-tcp", 53, "TCP"), ("metrics", 9153, "TCP")]


def test_a_deployment_without_anti_affinity_still_fills_the_emptiest_node() -> None:
    dep = coredns.deployment(LabPaths("core-x"))
    del dep["spec"]["template"]["spec"]["affinity"]
    plan = deployments.plan(dep, [], {}, ["node-1", "node-2"], {"node-1": 0, "node-2": 7}, random.Random(3))
    assert [p["spec"]["nodeName"] for p in plan.create] == ["node-1", "node-1"]


def test_the_coredns_image_runs_podlabs_server() -> None:
    argv = images.resolve(coredns.IMAGE, [], ["-conf", "/x/Corefile"], [])
    assert argv == ["env", f"PYTHONPATH={Path(images.__file__).resolve().parents[2]}", sys.executable, "-m",
                    "emulator.services.dnsserver", "-conf", "/x/Corefile"]


def test_kube_dns_endpoints_are_printed_port_by_port_as_the_real_server_does() -> None:
    from emulator.apiserver import tables
    ep = {"metadata": {"name": "kube-dns"}, "subsets": [{
        "addresses": [{"ip": "10.244.1.4"}, {"ip": "10.244.2.2"}],
        "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
                  {"name": "metrics", "port": 9153, "protocol": "TCP"}]}]}
    assert tables._endpoints(ep)[1] == "10.244.1.4:53,10.244.2.2:53,10.244.1.4:53 + 3 more..."
