"""trace through Services: a ClusterIP from a pod on another node and a NodePort from the external host are DNATed
where the node's real rules say, to the endpoint they choose, and followed hop by hop to it; in both kube-proxy
modes (one lab per mode, one at a time: vxlan + iptables, host-gw + nftables). Every path is proven by ``--verify``
(interface counters of a real probe), and what the trace predicts is compared with what the kernel does (the
source address the endpoint sees, the REJECT a client gets, a rule changed by hand)."""
from __future__ import annotations

import json

from emulator.check import probes as probe
from emulator.lab.api import Lab
from emulator.services.proxy import names as chain_names
from emulator.services.proxy import state as proxy_state
from emulator.services.proxy.kubeproxy import status_path
from emulator.state.store import read_json
from emulator.tools.trace import trace
from emulator.tools.trace_verify import verify
from tests.integration.conftest import lab_fixture, podlab, serving
from tests.integration.test_tools_capture_trace import assert_hops_are_real, walk

WEB_IP, EMPTY_IP = "10.96.100.100", "10.96.100.103"
NETEXEC = "{name: c, image: netexec, ports: [{containerPort: 8080, name: http}]}"
TOPOLOGY = f"""
version: 1
name: x
kubeProxy: {{mode: MODE}}
nodes: [{{name: node-1}}, {{name: node-2}}]
pods:
  - {{name: client, node: node-1, containers: [{NETEXEC}]}}
  - {{name: web-a, node: node-2, labels: {{app: web}}, containers: [{NETEXEC}]}}
  - {{name: web-b, node: node-2, labels: {{app: web}}, containers: [{NETEXEC}]}}
services:
  - {{name: web, type: NodePort, clusterIP: {WEB_IP}, selector: {{app: web}},
     ports: [{{name: http, port: 80, targetPort: http, nodePort: 30080}}]}}
  - {{name: empty, clusterIP: {EMPTY_IP}, selector: {{app: nothing}}, ports: [{{port: 80, targetPort: 8080}}]}}
"""
MATRIX = [("vxlan", "iptables"), ("host-gw", "nftables")]


lab = lab_fixture({f"{routing}-{mode}": (TOPOLOGY.replace("MODE", mode), routing) for routing, mode in MATRIX},
                  ready=serving())


def web_ports(lab: Lab) -> proxy_state.SvcPort:
    """kube-proxy's model of default/web:http (for its chain names and endpoints)."""
    st = proxy_state.build(list(lab.store.list("services")), list(lab.store.list("endpoints")), "node-1",
                           lab.record["cluster"]["podCIDR"])
    return next(p for p in st.ports if p.name == "web")


def pod_by_ip(lab: Lab, ip: str) -> str:
    return next(p.name for p in lab.pods if p.ip == ip)


def nat_hops(res):
    return [h for h in res.hops if h.action == "nat"]


def mode_of(lab: Lab) -> tuple[str, str]:
    """(routing mode, kube-proxy mode) of the lab."""
    return lab.record["routing"], read_json(status_path(lab.paths, "node-1"))["mode"]


def test_clusterip_from_a_pod_on_another_node(lab: Lab) -> None:
    routing, mode = mode_of(lab)
    web = web_ports(lab)
    endpoints = {e.addr for e in web.endpoints}
    res = trace(lab, "client", WEB_IP)
    assert res.packet.proto == "tcp" and res.packet.port == 80  # the Service's port and protocol
    assert res.delivered and res.problem is None, "\n".join(res.lines())
    (dnat,) = nat_hops(res)
    assert (dnat.at, dnat.iface) == ("node-1", "cni0")  # the source pod's node, where the packet enters
    d = dnat.detail["decisions"][0]
    chosen = d["to"]["dst"]
    assert chosen in endpoints and {a["dst"] for a in d["alternatives"]} == endpoints - {chosen}
    assert dnat.text.startswith(f"DNAT {WEB_IP}:80 → {chosen} by ")
    assert d["chains"][-2] == (chain_names.svc_chain(web) if mode == "iptables" else chain_names.nft_service(web))
    target = pod_by_ip(lab, chosen.split(":")[0])
    middle = [("node-1", "flannel.1"), ("node-1", "eth0")] if routing == "vxlan" else [("node-1", "eth0")]
    head = walk(res)[:3]
    assert head[0] == ("client", "eth0") and head[2] == ("node-1", "cni0")
    assert walk(res)[3:3 + len(middle)] == middle and walk(res)[-1] == (target, "eth0")
    assert not any(h.action == "nat" and "SNAT" in h.text for h in res.hops)  # pod → Service: source kept
    assert_hops_are_real(res)
    assert verify(lab, res).ok, "\n".join(res.lines() + [res.probe or ""])
    other = next(iter(endpoints - {chosen}))
    res2 = trace(lab, "client", f"{WEB_IP}:80", endpoint=other)
    assert res2.delivered and walk(res2)[-1] == (pod_by_ip(lab, other.split(":")[0]), "eth0")


def test_nodeport_from_external(lab: Lab) -> None:
    routing, _ = mode_of(lab)
    n1 = lab.node("node-1").ip
    res = trace(lab, "external", f"{n1}:30080")
    assert res.delivered and res.problem is None, "\n".join(res.lines())
    assert walk(res)[:6] == [("external", "eth0"), ("gw", "eth1"), ("gw", "eth0"), ("underlay", "gw.lan"),
                             ("underlay", "lan0"), ("node-1", "eth0")]
    dnat, snat = nat_hops(res)
    assert dnat.at == "node-1" and dnat.text.startswith(f"DNAT {n1}:30080 → 10.244.2.")
    assert "marked 0x4000 for masquerade" in dnat.text
    masq_src = "10.244.1.0" if routing == "vxlan" else n1  # flannel.1's address, or eth0's
    assert snat.at == "node-1" and snat.text.startswith(f"SNAT 203.0.113.2 → {masq_src} (masquerade")
    assert_hops_are_real(res)
    assert verify(lab, res).ok, "\n".join(res.lines() + [res.probe or ""])
    seen = probe.http(lab, "external", f"http://{n1}:30080/clientip").body
    assert seen.rsplit(":", 1)[0] == masq_src  # the endpoint sees the source the trace predicted


def test_cli_json_and_a_service_without_endpoints(lab: Lab) -> None:
    r = podlab("trace", "client", f"{WEB_IP}:80", "-o", "json", lab=lab, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    d = json.loads(r.stdout)
    nat = [h for h in d["hops"] if h["action"] == "nat"]
    assert d["delivered"] and nat[0]["detail"]["decisions"][0]["nat"] == "dnat"
    r = podlab("trace", "client", EMPTY_IP, lab=lab)
    assert r.returncode == 1 and "PROBLEM: node-1 rejects tcp 10.244.1.2 → 10.96.100.103:80" in r.stdout, r.stdout
    assert "default/empty has no endpoints" in r.stdout
    refused = lab.exec("client", ["curl", "-sS", "--max-time", "3", f"http://{EMPTY_IP}/"])
    assert refused.returncode == 7, refused.stderr  # the kernel agrees: it fails to connect at once (no timeout)


def test_a_rule_changed_by_hand_is_what_the_trace_follows(lab: Lab) -> None:
    """A RETURN before kube-proxy's dispatch: the node no longer DNATs; the trace says so, and what kube-proxy
    wanted there. (kube-proxy's full sync, every 30 s, removes the rule: a run it overlaps is tried again.)"""
    _, mode = mode_of(lab)
    node = lab.node("node-1")
    if mode == "iptables":
        add = ["iptables", "-t", "nat", "-I", "KUBE-SERVICES", "1", "-d", WEB_IP, "-j", "RETURN"]
        show = ["iptables", "-t", "nat", "-S", "KUBE-SERVICES"]
        mark = f"-A KUBE-SERVICES -d {WEB_IP}/32 -j RETURN"
    else:
        add = ["nft", "insert", "rule", "ip", "kube-proxy", "services", "ip", "daddr", WEB_IP, "return"]
        show = ["nft", "-a", "list", "chain", "ip", "kube-proxy", "services"]
        mark = f"ip daddr {WEB_IP} return"

    def present() -> list[str]:
        return [line for line in node.exec(show, check=True).stdout.splitlines() if mark in line]
    try:
        for _ in range(3):
            node.exec(add, check=True)
            res = trace(lab, "client", WEB_IP)
            broken = not probe.http(lab, "client", f"http://{WEB_IP}/hostname", timeout=2).ok
            if present():
                break
        assert not res.delivered and res.problem is not None and broken  # the kernel does not DNAT it either
        assert res.problem.startswith("node-1 sends tcp ") and "still addressed to a Service" in res.problem
        assert "node-1's netfilter rules do not DNAT it, but kube-proxy's desired state" in res.problem
    finally:
        for line in present():
            if mode == "iptables":
                node.exec(["iptables", "-t", "nat", "-D", "KUBE-SERVICES", "-d", WEB_IP, "-j", "RETURN"])
            else:
                node.exec(["nft", "delete", "rule", "ip", "kube-proxy", "services", "handle",
                           line.rsplit("# handle ", 1)[1]])
    assert trace(lab, "client", WEB_IP).delivered


def test_pod_to_the_internet_and_to_kube_dns(lab: Lab) -> None:
    """Leaving the cluster: flannel's masquerade on the way to the external host (which sees the node's address);
    kube-dns's ClusterIP DNATed to one of the coredns pods of kube-system, which is followed to its eth0."""
    n1 = lab.node("node-1").ip
    res = trace(lab, "client", "external:80")
    assert res.delivered and walk(res)[-3:] == [("gw", "eth0"), ("gw", "eth1"), ("external", "eth0")], res.lines()
    (snat,) = nat_hops(res)
    assert snat.text.startswith(f"SNAT 10.244.1.2 → {n1} (masquerade") and "FLANNEL-POSTRTG" in snat.text
    assert verify(lab, res).ok, "\n".join(res.lines() + [res.probe or ""])
    assert probe.http(lab, "client", "http://203.0.113.2/clientip").body.rsplit(":", 1)[0] == n1
    res = trace(lab, "client", "10.96.0.10:53", "udp")
    dns_pods = {f"kube-system/{p['metadata']['name']}": lab.store.get_status("pods", p["metadata"]["name"],
                                                                          "kube-system")["podIP"]
                for p in lab.store.list("pods", ns="kube-system") if p["metadata"]["name"].startswith("coredns-")}
    assert len(dns_pods) == 2
    at, iface = walk(res)[-1]
    assert res.delivered and at in dns_pods and iface == "eth0", res.lines()
    assert nat_hops(res)[0].text.startswith(f"DNAT 10.96.0.10:53 → {dns_pods[at]}:53 by "), res.lines()
