"""The Kubernetes e2e "Networking Granular Checks" on real namespaces, in both kube-proxy modes and both routing
modes (one module-scoped lab per combination, one netserver pod per node as the e2e framework runs it, probes
through agnhost-style netexec ``/dial`` from a test pod, answers observed at the receivers)."""
from __future__ import annotations

import json
import socket
import time
from urllib.parse import quote

from emulator.check import probes as probe
from emulator.lab.api import Lab, run_in
from emulator.netlink import netns
from emulator.services import registry
from emulator.services.component import wait_synced
from emulator.services.model import Service, ServicePort
from emulator.testing import LabUnderTest
from tests.integration.conftest import lab_fixture

HTTP, UDP = 8083, 8081
AGNHOST = "{name: c, image: 'registry.k8s.io/e2e-test-images/agnhost:2.47', args: [netexec, --http-port=8083, " \
          "--udp-port=8081], ports: [{containerPort: 8083, name: http}, {containerPort: 8081, protocol: UDP, name: udp}]}"
TOPOLOGY = f"""
version: 1
name: x
nodes: [{{name: node-1}}, {{name: node-2}}]
kubeProxy: {{mode: MODE}}
pods:
  - {{name: netserver-0, node: node-1, labels: {{selector: netserver}}, containers: [{AGNHOST}]}}
  - {{name: netserver-1, node: node-2, labels: {{selector: netserver}}, containers: [{AGNHOST}]}}
  - {{name: test-container-pod, node: node-1, labels: {{role: client}}, containers: [{AGNHOST}]}}
  - {{name: source-ip-server, node: node-1, labels: {{app: source-ip}}, containers: [{AGNHOST}]}}
services:
  - name: node-port-service
    type: NodePort
    selector: {{selector: netserver}}
    ports: [{{name: http, port: 80, targetPort: http}}, {{name: udp, port: 90, targetPort: udp, protocol: UDP}}]
  - name: session-affinity-service
    selector: {{selector: netserver}}
    sessionAffinity: ClientIP
    ports: [{{name: http, port: 80, targetPort: 8083}}, {{name: udp, port: 90, targetPort: 8081, protocol: UDP}}]
  - name: source-ip-test
    selector: {{app: source-ip}}
    ports: [{{port: 8080, targetPort: 8083}}]
  - name: web
    selector: {{app: web}}
    ports: [{{port: 80, targetPort: 8080}}]
  - name: no-endpoints
    type: NodePort
    selector: {{app: nothing}}
    ports: [{{name: http, port: 80, targetPort: 8080}}, {{name: udp, port: 90, targetPort: 8081, protocol: UDP}}]
deployments:
  - {{name: web, replicas: 3, labels: {{app: web}}, containers: [{{name: c, image: netexec}}]}}
"""
MATRIX = [("vxlan", "iptables"), ("host-gw", "nftables"), ("vxlan", "nftables"), ("host-gw", "iptables")]
NETSERVERS = {"netserver-0", "netserver-1"}


AGNHOST_PODS = NETSERVERS | {"test-container-pod", "source-ip-server"}


def ready(lab: LabUnderTest) -> None:
    """A Running pod's server binds a few ms later: agnhost's on HTTP, the deployment's netexec on 8080."""
    lab.wait_serving(HTTP, AGNHOST_PODS)
    lab.wait_serving(8080, [p.name for p in lab.pods if p.name not in AGNHOST_PODS and p.namespace != "kube-system"])


lab = lab_fixture({f"{routing}-{proxy}": (TOPOLOGY.replace("MODE", proxy), routing) for routing, proxy in MATRIX},
                  ready=ready)


# -- helpers ---------------------------------------------------------------------------------------------------------
def dial(lab: Lab, src: str, host: str, port: int, protocol: str = "http", request: str = "hostname",
         tries: int = 1) -> dict:
    """netexec's /dial from pod ``src`` (what the e2e framework's DialFromTestContainer does)."""
    url = (f"http://127.0.0.1:{HTTP}/dial?host={host}&port={port}&protocol={protocol}"
           f"&request={quote(request)}&tries={tries}")
    r = lab.exec(src, ["curl", "-sS", "--max-time", "90", url], timeout=100)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def responses(lab: Lab, src: str, host: str, port: int, protocol: str = "http", request: str = "hostname",
              tries: int = 1) -> list[str]:
    """What /dial got back. "Every endpoint seen" assertions use 60 tries: with 3 endpoints chosen at random the
    chance that one is never picked is 3·(2/3)^60 ≈ 1e-10 (20 tries would leave ~1e-3 per assertion)."""
    return dial(lab, src, host, port, protocol, request, tries).get("responses", [])


def svc(lab: Lab, name: str) -> dict:
    return lab.store.get("services", name)


def cluster_ip(lab: Lab, name: str) -> str:
    return svc(lab, name)["spec"]["clusterIP"]


def node_port(lab: Lab, name: str, port_name: str) -> int:
    return next(p["nodePort"] for p in svc(lab, name)["spec"]["ports"] if p.get("name") == port_name)


def udp_from(ns: str, ip: str, port: int, message: str, timeout: float = 2.0) -> str | None:
    """One datagram from inside namespace ``ns`` (the socket lives there) and its answer, or None. The socket is
    connected, as a client's is: the answer must come from ip:port (un-NATed), and a rejection (ICMP port
    unreachable) ends the wait at once instead of after ``timeout``."""
    with netns.entered(ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.settimeout(timeout)
        s.connect((ip, port))
        s.send(message.encode())
        return s.recv(65535).decode()
    except OSError:
        return None
    finally:
        s.close()


def udp_refused(ns: str, ip: str, port: int, timeout: float = 5.0) -> bool:
    """A datagram to ip:port from a connected socket in ``ns`` was refused: the kernel turned the ICMP port
    unreachable that came back into ECONNREFUSED (False: an answer, or silence until ``timeout``, a drop)."""
    with netns.entered(ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.settimeout(timeout)
        s.connect((ip, port))
        s.send(b"hostname")
        s.recv(65535)
        return False
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    finally:
        s.close()


def curl(ns: str, url: str, timeout: float = 3) -> probe.HttpResult:
    return probe.http_ns(ns, url, timeout)


def web_pods(lab: Lab) -> dict[str, str]:
    return {p.name: p.ip for p in lab.pods if p.name.startswith("web-")}


# -- pod to pod, node to pod -----------------------------------------------------------------------------------------
def test_pod_to_pod_http_and_udp_across_nodes_without_nat(lab: Lab) -> None:
    for src in ("test-container-pod", "netserver-1"):
        for target in sorted(NETSERVERS):
            ip = lab.pod(target).ip
            assert responses(lab, src, ip, HTTP) == [target], (src, target)
            assert responses(lab, src, ip, UDP, "udp") == [target], (src, target)
            seen = responses(lab, src, ip, HTTP, request="clientip")[0].rsplit(":", 1)[0]
            assert seen == lab.pod(src).ip, f"{src} -> {target}: the receiver saw {seen}"


def test_node_to_pod_http_and_udp(lab: Lab) -> None:
    for node in ("node-1", "node-2"):
        ns = lab.node(node).netns
        for target in sorted(NETSERVERS):
            ip = lab.pod(target).ip
            assert curl(ns, f"http://{ip}:{HTTP}/hostname").body == target
            assert udp_from(ns, ip, UDP, "hostname") == target


# -- pod/node to Service ---------------------------------------------------------------------------------------------
def test_pod_to_service_clusterip_and_nodeport_reach_every_endpoint(lab: Lab) -> None:
    cip = cluster_ip(lab, "node-port-service")
    assert set(responses(lab, "test-container-pod", cip, 80, tries=60)) == NETSERVERS
    assert set(responses(lab, "test-container-pod", cip, 90, "udp", tries=60)) == NETSERVERS
    for node in ("node-1", "node-2"):
        ip = lab.node(node).ip
        assert set(responses(lab, "test-container-pod", ip, node_port(lab, "node-port-service", "http"),
                             tries=60)) == NETSERVERS, node
        assert set(responses(lab, "test-container-pod", ip, node_port(lab, "node-port-service", "udp"), "udp",
                             tries=60)) == NETSERVERS, node


def test_node_to_service_clusterip_and_nodeport(lab: Lab) -> None:
    ns = lab.node("node-2").netns
    cip = cluster_ip(lab, "node-port-service")
    np_http, np_udp = node_port(lab, "node-port-service", "http"), node_port(lab, "node-port-service", "udp")
    seen_http = {curl(ns, f"http://{cip}/hostname").body for _ in range(20)}
    seen_udp = {udp_from(ns, cip, 90, "hostname") for _ in range(20)}
    seen_np = {curl(ns, f"http://{lab.node('node-1').ip}:{np_http}/hostname").body for _ in range(20)}
    seen_np_udp = {udp_from(ns, lab.node("node-1").ip, np_udp, "hostname") for _ in range(20)}
    assert seen_http == seen_udp == seen_np == seen_np_udp == NETSERVERS


def test_hairpin_endpoint_reaches_its_own_service(lab: Lab) -> None:
    cip = cluster_ip(lab, "node-port-service")
    for src in sorted(NETSERVERS):
        assert set(responses(lab, src, cip, 80, tries=60)) == NETSERVERS, src
        assert set(responses(lab, src, cip, 90, "udp", tries=60)) == NETSERVERS, src


def test_client_ip_session_affinity(lab: Lab) -> None:
    cip = cluster_ip(lab, "session-affinity-service")
    for src in ("test-container-pod", "netserver-1"):
        assert len(set(responses(lab, src, cip, 80, tries=10))) == 1, src
        assert len(set(responses(lab, src, cip, 90, "udp", tries=10))) == 1, src


def test_large_requests_pass(lab: Lab) -> None:
    cip = cluster_ip(lab, "node-port-service")
    msg = "42" * 1000
    assert set(responses(lab, "test-container-pod", cip, 80, request=f"echo?msg={msg}", tries=4)) == {msg}
    big = "a" * 2000
    assert set(responses(lab, "test-container-pod", cip, 90, "udp", request=f"echo {big}", tries=4)) == {big}


def test_source_ip_preserved_through_clusterip_from_two_nodes(lab: Lab) -> None:
    cip = cluster_ip(lab, "source-ip-test")  # one endpoint, on node-1
    for src in ("test-container-pod", "netserver-1"):  # node-1 (same node, bridged replies) and node-2
        seen = {r.rsplit(":", 1)[0] for r in responses(lab, src, cip, 8080, request="clientip", tries=3)}
        assert seen == {lab.pod(src).ip}, src


def test_service_without_endpoints_rejects_at_once(lab: Lab) -> None:
    """kube-proxy rejects what goes to a Service without endpoints (an ICMP port unreachable), it does not drop
    it. The proof is the kind of failure the client gets, not a clock (which would time three process starts
    on a loaded machine): curl's connect fails (exit 7) where a dropped SYN would run into ``--max-time`` (exit
    28), and a connected UDP socket gets ECONNREFUSED where a dropped datagram only meets silence."""
    cip = cluster_ip(lab, "no-endpoints")
    r = lab.exec("test-container-pod", ["curl", "-sS", "--max-time", "5", f"http://{cip}/"])
    assert r.returncode == 7, r.stderr  # "Failed to connect": refused, not timed out (28)
    assert udp_refused(lab.pod("test-container-pod").netns, cip, 90), "UDP must be refused (ICMP port " \
        "unreachable), not dropped"
    np = node_port(lab, "no-endpoints", "http")
    r2 = run_in(lab.node("node-2").netns, ["curl", "-sS", "--max-time", "5", f"http://{lab.node('node-1').ip}:{np}/"])
    assert r2.returncode == 7, r2.stderr


# -- external --------------------------------------------------------------------------------------------------------
def test_pod_to_external_is_snated_to_the_node_ip(lab: Lab) -> None:
    for src, node in (("test-container-pod", "node-1"), ("netserver-1", "node-2")):
        seen = responses(lab, src, "203.0.113.2", 80, request="clientip")[0].rsplit(":", 1)[0]
        assert seen == lab.node(node).ip, (src, seen)


def test_external_reaches_nodeport_on_every_node(lab: Lab) -> None:
    ext = f"{lab.name}-external"
    np_http, np_udp = node_port(lab, "node-port-service", "http"), node_port(lab, "node-port-service", "udp")
    for node in ("node-1", "node-2"):
        ip = lab.node(node).ip
        assert {curl(ext, f"http://{ip}:{np_http}/hostname").body for _ in range(10)} <= NETSERVERS
        assert udp_from(ext, ip, np_udp, "hostname") in NETSERVERS
    assert lab.exec("external", ["ip", "-4", "-o", "addr", "show", "eth0"]).stdout.count("203.0.113.2/24") == 1


# -- DNS -------------------------------------------------------------------------------------------------------------
def test_dns_short_and_full_names_resolve_and_answer(lab: Lab) -> None:
    ns = lab.pod("test-container-pod").netns
    py = "import socket,sys; print(socket.gethostbyname(sys.argv[1]))"
    cip = cluster_ip(lab, "web")
    for name in ("web", "web.default", "web.default.svc.cluster.local"):
        r = run_in(ns, ["ip", "netns", "exec", ns, "python3", "-c", py, name])  # ip netns exec: the pod's resolv.conf
        assert r.stdout.strip() == cip, (name, r.stderr)
    r = run_in(ns, ["ip", "netns", "exec", ns, "curl", "-sS", "--max-time", "3", "http://web/hostname"])
    assert r.stdout.strip() in web_pods(lab), r.stderr
    assert set(responses(lab, "test-container-pod", "web.default.svc.cluster.local", 80, tries=60)) == set(
        web_pods(lab))  # the pod's own process resolves (it was started with the pod's resolv.conf)


# -- changes: endpoints, Service deletion, kube-proxy repair (these modify the lab: they run last) --------------------
def test_deleted_endpoint_leaves_and_is_replaced(lab: Lab) -> None:
    before = web_pods(lab)
    victim = sorted(before)[0]
    lab.store.delete("pods", victim)
    deadline = time.monotonic() + 20
    while victim in web_pods(lab) or len(web_pods(lab)) < 3 or any(
            (lab.pod(p).status.get("phase") != "Running") for p in web_pods(lab)):
        assert time.monotonic() < deadline, "the deployment did not replace the deleted pod"
        time.sleep(0.05)
    wait_synced(lab.paths, lab.store, ["node-1", "node-2"])
    after = web_pods(lab)
    new = set(after) - set(before)
    assert len(new) == 1 and after[next(iter(new))] not in before.values()  # a new name and IP; the Service stays
    fresh = lab.pod(next(iter(new)))
    assert probe.wait_http(lab, f"node/{fresh.node}", fresh.ip, 8080)  # Running, then its server binds (no probes)
    got = set(responses(lab, "test-container-pod", cluster_ip(lab, "web"), 80, tries=60))
    assert got == set(after) and victim not in got


def test_deleted_nodeport_service_answers_nothing(lab: Lab) -> None:
    cidr = lab.record["cluster"]["serviceCIDR"]
    import ipaddress
    s = Service("tmp-np", type="NodePort", selector=(("selector", "netserver"),),
                ports=(ServicePort(80, 8083, "TCP", "http"), ServicePort(90, 8081, "UDP", "udp")))
    m, _ = registry.put_service(lab.store, s, ipaddress.IPv4Network(cidr))
    wait_synced(lab.paths, lab.store, ["node-1", "node-2"])
    np_http, np_udp = (p["nodePort"] for p in m["spec"]["ports"])
    ip = lab.node("node-2").ip
    assert responses(lab, "test-container-pod", ip, np_http, tries=2)
    lab.store.delete("services", "tmp-np")
    wait_synced(lab.paths, lab.store, ["node-1", "node-2"])
    assert responses(lab, "test-container-pod", ip, np_http, tries=5) == []
    assert responses(lab, "test-container-pod", ip, np_udp, "udp", tries=5) == []
    # an answer across the LAN takes milliseconds: a second of silence is "nothing"
    assert curl(f"{lab.name}-external", f"http://{ip}:{np_http}/hostname", timeout=1).ok is False


def test_kube_proxy_rules_deleted_by_hand_are_rebuilt(lab: Lab) -> None:
    ns = lab.node("node-1").netns
    mode = json.loads((lab.paths.node_root("node-1") / "var/lib/kube-proxy/status.json").read_text())["mode"]
    if mode == "iptables":
        save = run_in(ns, ["iptables-save", "-t", "nat"]).stdout
        assert ":KUBE-SVC-TCOU7JCQXEZGVUNU" in save and ":KUBE-SVC-ERIFXISQEP7F7OF4" in save  # kube-dns, as real
        chains = [ln[1:].split()[0] for ln in save.splitlines() if ln.startswith(":KUBE-")]
        wipe = ["*nat", '-D PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
                '-D OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
                '-D POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING']
        wipe += [f"-F {c}" for c in chains] + [f"-X {c}" for c in chains] + ["COMMIT"]
        r = run_in(ns, ["iptables-restore", "--noflush"], input="\n".join(wipe) + "\n")
        assert r.returncode == 0, r.stderr
        assert "KUBE-" not in run_in(ns, ["iptables-save", "-t", "nat"]).stdout
    else:
        assert "service-ips" in run_in(ns, ["nft", "list", "table", "ip", "kube-proxy"]).stdout
        assert run_in(ns, ["nft", "delete", "table", "ip", "kube-proxy"]).returncode == 0
    def rebuilt() -> bool:  # kube-proxy's health check (every 2 s) finds its rules gone and syncs in full
        if mode == "iptables":
            return ":KUBE-SVC-ERIFXISQEP7F7OF4" in run_in(ns, ["iptables-save", "-t", "nat"]).stdout
        return "service-ips" in run_in(ns, ["nft", "list", "table", "ip", "kube-proxy"]).stdout
    deadline = time.monotonic() + 10
    while not rebuilt():
        assert time.monotonic() < deadline, "kube-proxy did not rebuild its rules"
        time.sleep(0.1)
    cip = cluster_ip(lab, "node-port-service")
    assert set(responses(lab, "test-container-pod", cip, 80, tries=60)) == NETSERVERS
