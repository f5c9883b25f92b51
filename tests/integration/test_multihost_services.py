"""Services across hosts; ``apply``/``delete``, ``fail``/``heal``, ``graph``, ``trace`` on the right hosts: 3
emulated hosts (as in ``test_multihost``: own network, mount and pid namespaces, own sshd; the CLI in a controller
namespace).

Proven from what the pods see and the hosts' stores hold: a ClusterIP reached from a pod on mhs1 lands on
endpoints on mhs2 and mhs3, whose server sees the client's pod IP (no NAT across hosts); a NodePort on a node of
another host answers; the cluster DNS (on mhs1, the host of node-1) answers a pod on mhs3; every host's store
holds the same Services and Endpoints, and every node runs a kube-proxy. ``apply`` of a pod puts it on the host of
its node and into the Endpoints on every host; ``delete`` removes it there; a Service applied later answers on
every host, and once deleted is gone from all of them. ``fail``/``heal`` act on the node's host (a link across
hosts is refused), ``graph`` merges every host's part, ``trace`` walks host by host through the stretch. Nothing
is left on any host afterwards.
"""
from __future__ import annotations

import json
import signal
import subprocess
import time
from typing import Iterator

import pytest

from emulator.hosts.emulated import EmulatedHosts
from tests.integration.conftest import ROOT
from tests.integration.test_multihost import COMMAND, PY, controller_records, ctl, lab_store_view, module_lab

LAB = "mhs-svc"
NETEXEC = "containers: [{name: web, image: netexec, ports: [{containerPort: 8080}]}]"
TOPOLOGY = f"""version: 1
name: {LAB}
routing: vxlan
nodes: [{{name: node-1}}, {{name: node-2}}, {{name: node-3}}, {{name: node-4}}, {{name: node-5}}, {{name: node-6}}]
pods:
  - {{name: client, node: node-1, labels: {{app: client}}, {NETEXEC}}}
  - {{name: back-2, node: node-2, labels: {{app: back}}, {NETEXEC}}}
  - {{name: back-3, node: node-3, labels: {{app: back}}, {NETEXEC}}}
services:
  - name: back
    selector: {{app: back}}
    ports: [{{port: 80, targetPort: 8080}}]
  - name: back-np
    type: NodePort
    selector: {{app: back}}
    ports: [{{port: 80, targetPort: 8080, nodePort: 30080}}]
"""
RESOLVE = "import socket,sys; print(socket.gethostbyname(sys.argv[1]))"


@pytest.fixture(scope="module")
def hosts() -> Iterator[EmulatedHosts]:
    with EmulatedHosts(3, prefix="mhs") as hs:
        yield hs


@pytest.fixture(scope="module")
def lab(hosts: EmulatedHosts, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    with module_lab(hosts, tmp_path_factory.mktemp("mhs"), TOPOLOGY, LAB) as made:
        yield made


def pods(hosts: EmulatedHosts) -> dict[str, dict]:
    return {p["name"]: p for p in json.loads(ctl(hosts, "get", "pods", "-o", "json").stdout)["items"]}


def cluster_ip(hosts: EmulatedHosts, name: str) -> str:
    return json.loads(ctl(hosts, "get", "svc", name, "-o", "json").stdout)["spec"]["clusterIP"]


def curl(hosts: EmulatedHosts, pod: str, url: str) -> str:
    r = ctl(hosts, "exec", pod, "--", "curl", "-sS", "--max-time", "3", url)
    assert r.returncode == 0, (url, r.stdout + r.stderr)
    return r.stdout.strip()


def answers(hosts: EmulatedHosts, pod: str, url: str, want: set[str], tries: int = 40) -> set[str]:
    """The hostnames a Service's endpoints answer with, until all of ``want`` answered (or ``tries`` ran out): one
    exec running the requests in a loop."""
    script = f"for i in $(seq {tries}); do curl -sS --max-time 3 {url}; echo; done"
    r = ctl(hosts, "exec", pod, "--", "sh", "-c", script)
    assert r.returncode == 0, r.stdout + r.stderr
    return {line.strip() for line in r.stdout.splitlines() if line.strip()}


def store_view(hosts: EmulatedHosts, host: str, kind: str) -> dict[str, object]:
    return lab_store_view(hosts, host, LAB, kind)


def test_up_pushes_services_and_endpoints_to_every_host(hosts: EmulatedHosts, lab: dict) -> None:
    err = lab["up"].stderr
    assert "3 Services, their Endpoints from the pods of 3 hosts, pushed to every host; kube-proxy synced on 6 " \
           "nodes" in err, err
    ips = {n: p["ip"] for n, p in pods(hosts).items()}
    ep = json.loads(ctl(hosts, "get", "ep", "back", "-o", "json").stdout)
    assert sorted(a["ip"] for s in ep["subsets"] for a in s["addresses"]) == sorted([ips["back-2"], ips["back-3"]])
    r = ctl(hosts, "host", "sync")
    assert r.returncode == 0 and "3 Services and their Endpoints pushed to 3 hosts" in r.stdout, r.stdout + r.stderr
    c = ctl(hosts, "check")
    assert c.returncode == 0 and "pod-to-pod: 9/9 pairs answer" in c.stdout, c.stdout + c.stderr
    table = ctl(hosts, "get", "svc").stdout
    assert "back-np" in table and "NodePort" in table and "80:30080/TCP" in table, table
    assert "192.168.56.2:53" in ctl(hosts, "get", "ep", "-A").stdout  # kube-dns: the DNS host
    svcs = [store_view(hosts, h, "services") for h in hosts.names]
    eps = [store_view(hosts, h, "endpoints") for h in hosts.names]
    assert svcs[0] == svcs[1] == svcs[2] and {"default/back", "default/back-np", "kube-system/kube-dns"} <= set(svcs[0])
    assert eps[0] == eps[1] == eps[2] and "default/back" in eps[0]
    for h in hosts.names:  # a kube-proxy on every node of every host, and the DNS only on node-1's host
        ps = hosts.host_run(h, ["ps", "-eo", "comm="]).stdout.split()
        assert ps.count("kube-proxy") == 2 and ("coredns" in ps) == (h == "mhs1"), (h, ps)
        ns = hosts.host_run(h, ["ip", "netns", "list"]).stdout
        assert (f"{LAB}-dns" in ns) == (h == "mhs1"), (h, ns)


def test_cluster_ip_across_hosts_keeps_the_client_ip(hosts: EmulatedHosts, lab: dict) -> None:
    ip = cluster_ip(hosts, "back")
    client_ip = pods(hosts)["client"]["ip"]
    assert answers(hosts, "client", f"{ip}/hostname", {"back-2", "back-3"}) == {"back-2", "back-3"}
    assert curl(hosts, "client", f"{ip}/clientip").split(":")[0] == client_ip


def test_node_port_on_a_node_of_another_host(hosts: EmulatedHosts, lab: dict) -> None:
    node3 = next(n for n in json.loads(ctl(hosts, "get", "nodes", "-o", "json").stdout)["items"]
                 if n["name"] == "node-3")
    assert node3["host"] == "mhs3"
    rec = json.loads(subprocess.run(hosts.controller_argv(["cat", f"/run/podlab/multihost/{LAB}.json"]),
                                    capture_output=True, text=True, check=True).stdout)
    assert answers(hosts, "client", f"{rec['nodeIPs']['node-3']}:30080/hostname", {"back-2", "back-3"}) == \
        {"back-2", "back-3"}


def test_cluster_dns_answers_a_pod_on_another_host(hosts: EmulatedHosts, lab: dict) -> None:
    ip = cluster_ip(hosts, "back")
    r = ctl(hosts, "exec", "back-3", "--", "ip", "netns", "exec", f"{LAB}-back-3", PY, "-c", RESOLVE,
            "back.default.svc.cluster.local")
    assert r.returncode == 0 and r.stdout.strip() == ip, r.stdout + r.stderr


def test_fail_and_heal_act_on_the_host_of_the_node(hosts: EmulatedHosts, lab: dict) -> None:
    r = ctl(hosts, "fail", "node", "node-5")
    assert r.returncode == 0 and "node node-5 failed" in r.stdout, r.stdout + r.stderr
    port = hosts.host_run("mhs2", ["ip", "-n", f"{LAB}-underlay", "-o", "link", "show", "node-5"]).stdout
    assert "state DOWN" in port or ",UP" not in port, port
    r = ctl(hosts, "fail", "link", "node-2", "node-5")  # both on mhs2: rules on its bridge
    assert r.returncode == 0 and "link node-2 <-> node-5 cut" in r.stdout, r.stdout + r.stderr
    found = json.loads(ctl(hosts, "faults", "-o", "json").stdout)["items"]
    assert {(f["kind"], tuple(f["nodes"]), f["host"]) for f in found} == {("node", ("node-5",), "mhs2"),
                                                                        ("link", ("node-2", "node-5"), "mhs2")}
    ips = {n: p["ip"] for n, p in pods(hosts).items()}
    r = ctl(hosts, "fail", "link", "node-2", "node-1")  # across hosts: cut at node-1's port on mhs1
    assert r.returncode == 0 and "link node-2 <-> node-1 cut" in r.stdout, r.stdout + r.stderr
    cut = ctl(hosts, "exec", "client", "--", "curl", "-sS", "--max-time", "2", f"{ips['back-2']}:8080/hostname")
    assert cut.returncode != 0, cut.stdout  # node-1 ↔ node-2 only: node-1 ↔ node-3 still talks
    assert curl(hosts, "client", f"{ips['back-3']}:8080/hostname") == "back-3"
    found = json.loads(ctl(hosts, "faults", "-o", "json").stdout)["items"]
    assert ("link", ("node-1", "node-2"), "mhs1") in {(f["kind"], tuple(f["nodes"]), f["host"]) for f in found}
    assert next(f for f in found if f["host"] == "mhs1")["droppedPackets"] > 0
    r = ctl(hosts, "heal", "all")
    assert r.returncode == 0 and "healed 3 faults" in r.stdout, r.stdout + r.stderr
    assert curl(hosts, "client", f"{ips['back-2']}:8080/hostname") == "back-2"
    assert "node node-5 healed" not in r.stdout and "no faults" in ctl(hosts, "faults").stdout
    assert ",UP" in hosts.host_run("mhs2", ["ip", "-n", f"{LAB}-underlay", "-o", "link", "show", "node-5"]).stdout


def test_graph_merges_every_hosts_part(hosts: EmulatedHosts, lab: dict) -> None:
    r = ctl(hosts, "graph", "-o", "json")
    assert r.returncode == 0, r.stderr
    g = json.loads(r.stdout)
    assert "across 3 hosts" in g["title"]
    assert {n: label.rsplit("host ", 1)[1] for n, label in g["groups"].items()} == {
        "node-1": "mhs1", "node-2": "mhs2", "node-3": "mhs3", "node-4": "mhs1", "node-5": "mhs2", "node-6": "mhs3"}
    assert sum(1 for b in g["boxes"] if b["kind"] == "underlay") == 1
    assert "stretch0" in next(b["label"] for b in g["boxes"] if b["kind"] == "underlay")
    tunnels = {tuple(sorted((ln["a"].split("/")[0], ln["b"].split("/")[0]))) for ln in g["lines"]
               if ln["kind"] == "tunnel"}
    assert len(tunnels) == 15 and ("node-1", "node-2") in tunnels, tunnels  # every pair once, across hosts too
    assert {b["id"] for b in g["boxes"] if b["kind"] == "pod"} == {"pod/client", "pod/back-2", "pod/back-3"}


def test_trace_goes_host_by_host(hosts: EmulatedHosts, lab: dict) -> None:
    """client (mhs1) → back-3 (mhs3), then through the ClusterIP to back-2 (mhs2): each host walks its part."""
    r = ctl(hosts, "trace", "client", "back-3:8080")
    assert r.returncode == 0, r.stdout + r.stderr
    path = r.stdout.split("path: ", 1)[1]
    assert path.startswith("mhs1/client eth0") and "mhs1/underlay node-1 → lan0 → stretch0 → mhs3/underlay " \
        "stretch0 → lan0 → mhs3/node-3 eth0" in path and path.strip().endswith("mhs3/back-3 eth0"), path
    assert "mhs3/node-3" in path and "mhs2/" not in path
    ips = {n: p["ip"] for n, p in pods(hosts).items()}
    ip = cluster_ip(hosts, "back")
    r = ctl(hosts, "trace", "client", f"{ip}:80", "--endpoint", f"{ips['back-2']}:8080", "-o", "json")
    assert r.returncode == 0, r.stdout + r.stderr
    res = json.loads(r.stdout)
    assert res["ok"] and res["hops"][-1]["at"] == "mhs2/back-2" and res["hops"][-1]["action"] == "deliver"
    assert any(h["action"] == "nat" and h["at"] == "mhs1/node-1" and "DNAT" in h["text"] for h in res["hops"])
    r = ctl(hosts, "trace", "client", "back-3", "--verify")
    assert r.returncode == 2 and "trace --verify is not available across hosts yet" in r.stderr, r.stderr


def test_what_one_machine_does_only_says_so(hosts: EmulatedHosts, lab: dict) -> None:
    r = ctl(hosts, "cli")
    assert r.returncode == 2 and "podlab cli is not available across hosts yet" in r.stderr, r.stderr


def test_run_starts_a_pod_on_any_host_and_runs_a_command_there(hosts: EmulatedHosts, lab: dict) -> None:
    back = pods(hosts)["back-2"]["ip"]
    r = ctl(hosts, "run", "probe", "--node", "node-6", "--rm", "--", "sh", "-c",
            f"curl -sS --max-time 3 {back}:8080/clientip; exit 3")
    assert r.returncode == 3, r.stdout + r.stderr  # the command's own exit status, from host mhs3
    assert r.stdout.startswith("10.244.6."), r.stdout  # the pod's IP in node-6's slice: no NAT across hosts
    assert "pod/probe created on node-6 (host mhs3)" in r.stderr and 'pod "probe" deleted' in r.stderr, r.stderr
    assert "probe" not in pods(hosts)
    r = ctl(hosts, "run", "idle", "--image", "pause")
    assert r.returncode == 0 and "pod idle is Running with IP 10.244." in r.stdout, r.stdout + r.stderr
    host = r.stdout.split("(host ")[1].rstrip(")\n")
    assert "default/idle" in store_view(hosts, host, "pods")  # on the host the placement chose, and only there
    assert not any("default/idle" in store_view(hosts, h, "pods") for h in hosts.names if h != host)
    assert ctl(hosts, "delete", "pod", "idle").returncode == 0


def test_apply_and_delete_act_on_the_right_host(hosts: EmulatedHosts, lab: dict) -> None:
    f = lab["dir"] / "more.yaml"
    f.write_text(f"name: back-6\nnode: node-6\nlabels: {{app: back}}\n{NETEXEC}\n")
    r = ctl(hosts, "apply", "-f", str(f))
    assert r.returncode == 0 and "pod/back-6 created on node-6 (host mhs3)" in r.stdout, r.stdout + r.stderr
    p = pods(hosts)["back-6"]
    assert p["host"] == "mhs3" and p["phase"] == "Running"
    r = ctl(hosts, "apply", "-f", str(f))  # again: its host answers, no second pod anywhere
    assert r.returncode == 0 and "pod/back-6 unchanged on node-6 (host mhs3)" in r.stdout, r.stdout + r.stderr
    assert any(f"{LAB}-back-6" == line.split()[0] for line in
               hosts.host_run("mhs3", ["ip", "netns", "list"]).stdout.splitlines())
    ip = cluster_ip(hosts, "back")
    for h in hosts.names:
        assert p["ip"] in json.dumps(store_view(hosts, h, "endpoints")["default/back"]), h
    assert "back-6" in answers(hosts, "client", f"{ip}/hostname", {"back-2", "back-3", "back-6"})

    r = ctl(hosts, "delete", "pod", "back-2")
    assert r.returncode == 0 and 'pod "back-2" deleted' in r.stdout, r.stdout + r.stderr
    assert "back-2" not in pods(hosts)
    assert not any(f"{LAB}-back-2" in line for line in hosts.host_run("mhs2", ["ip", "netns", "list"]).stdout.split())
    assert answers(hosts, "client", f"{ip}/hostname", set(), tries=15) == {"back-3", "back-6"}


def test_service_applied_later_reaches_every_host_and_deleted_leaves_all(hosts: EmulatedHosts, lab: dict) -> None:
    f = lab["dir"] / "svc.yaml"
    f.write_text("apiVersion: v1\nkind: Service\nmetadata: {name: to-client}\nspec:\n  selector: {app: client}\n"
                 "  ports: [{port: 8000, targetPort: 8080}]\n")
    r = ctl(hosts, "apply", "-f", str(f))
    assert r.returncode == 0 and "service/to-client created" in r.stdout, r.stdout + r.stderr
    ip = cluster_ip(hosts, "to-client")
    assert curl(hosts, "back-3", f"{ip}:8000/hostname") == "client"  # mhs3 to a pod on mhs1
    assert curl(hosts, "back-3", f"{ip}:8000/clientip").split(":")[0] == pods(hosts)["back-3"]["ip"]
    r = ctl(hosts, "delete", "svc", "to-client")
    assert r.returncode == 0 and 'service "to-client" deleted' in r.stdout, r.stdout + r.stderr
    for h in hosts.names:
        assert "default/to-client" not in store_view(hosts, h, "services"), h
        assert "default/to-client" not in store_view(hosts, h, "endpoints"), h
    assert ctl(hosts, "get", "svc", "to-client").returncode == 4


def test_namespace_pod_and_service_applied_together(hosts: EmulatedHosts, lab: dict) -> None:
    f = lab["dir"] / "shop.yaml"
    f.write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n---\n"
                 f"name: cart\nnamespace: shop\nnode: node-5\nlabels: {{app: cart}}\n{NETEXEC}\n---\n"
                 "apiVersion: v1\nkind: Service\nmetadata: {name: cart, namespace: shop}\nspec:\n"
                 "  selector: {app: cart}\n  ports: [{port: 80, targetPort: 8080}]\n")
    r = ctl(hosts, "apply", "-f", str(f))
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.splitlines() == ["namespace/shop created on 3 hosts", "pod/cart created on node-5 (host mhs2)",
                                     "service/cart created"], r.stdout
    svc = json.loads(ctl(hosts, "get", "svc", "cart", "-n", "shop", "-o", "json").stdout)
    assert curl(hosts, "back-3", f"{svc['spec']['clusterIP']}/hostname") == "cart"
    r = ctl(hosts, "exec", "back-3", "--", "ip", "netns", "exec", f"{LAB}-back-3", PY, "-c", RESOLVE,
            "cart.shop.svc.cluster.local")
    assert r.stdout.strip() == svc["spec"]["clusterIP"], r.stdout + r.stderr
    r = ctl(hosts, "delete", "pod", "cart", "-n", "shop")
    assert r.returncode == 0 and 'pod "cart" deleted' in r.stdout, r.stdout + r.stderr
    ep = json.loads(ctl(hosts, "get", "ep", "cart", "-n", "shop", "-o", "json").stdout)
    assert ep["subsets"] == []


def test_what_is_not_available_across_hosts_says_so(hosts: EmulatedHosts, lab: dict) -> None:
    f = lab["dir"] / "ds.yaml"
    f.write_text("apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: d}\nspec: {}\n")
    r = ctl(hosts, "apply", "-f", str(f))
    assert r.returncode != 0 and "apply of a DaemonSet" in r.stderr and "not available across hosts yet" in r.stderr
    t = lab["dir"] / "docker-topo.yaml"
    t.write_text(TOPOLOGY.replace(f"name: {LAB}", "name: mhs-dk").replace("{name: node-6}", "{name: node-6, "
                 "runtime: docker}") + "containers: [{name: web, node: node-6}]\n")
    r = ctl(hosts, "up", str(t), "--hosts", str(hosts.inventory(COMMAND)))
    assert r.returncode != 0 and "docker is not available across hosts yet" in r.stderr, r.stderr
    assert not any("mhs-dk" in hosts.host_run(h, ["ip", "netns", "list"]).stdout for h in hosts.names)
    assert "mhs-dk.json" not in controller_records(hosts)


def qdisc_kinds(shown: str) -> list[str]:
    return [q["kind"] for t in json.loads(shown)["items"] for q in t["qdiscs"]]


def test_verbs_about_one_object_run_on_its_host(hosts: EmulatedHosts, lab: dict) -> None:
    """``describe``, ``logs``, ``agent``, ``link`` of a pod or node on another host act there, from the controller
    (what they print is the host's own output)."""
    ps = pods(hosts)
    d = ctl(hosts, "describe", "pod", "back-3")
    assert d.returncode == 0, d.stdout + d.stderr
    assert "node-3" in d.stdout and ps["back-3"]["ip"] in d.stdout
    n = ctl(hosts, "describe", "node", "node-2", "-o", "json")
    assert n.returncode == 0, n.stdout + n.stderr
    assert "node-2" in json.dumps(json.loads(n.stdout))
    url = f"http://{ps['back-3']['ip']}:8080/echo?msg=from-client"
    for _ in range(20):  # netexec binds its port a moment after its pod is Running
        r = ctl(hosts, "exec", "client", "--", "curl", "-sS", "--max-time", "3", url)
        if r.returncode == 0:
            break
        time.sleep(0.25)
    assert r.stdout.strip() == "from-client", r.stdout + r.stderr
    lg = ctl(hosts, "logs", "back-3")  # netexec logs every request: the client's pod IP, on back-3's host
    assert lg.returncode == 0 and ps["client"]["ip"] in lg.stdout, lg.stdout + lg.stderr
    ag = ctl(hosts, "agent", "status", "node-3", "-o", "json")
    assert ag.returncode == 0, ag.stdout + ag.stderr
    assert "node-3" in ag.stdout
    # back-3's cable (on mhs3) shaped from the controller: the tbf qdisc is in mhs3's kernel, then gone again
    sh = ctl(hosts, "link", "set", "back-3", "--rate", "10mbit")
    assert sh.returncode == 0, sh.stdout + sh.stderr
    try:
        shown = ctl(hosts, "link", "show", "back-3", "-o", "json")
        assert shown.returncode == 0, shown.stdout + shown.stderr
        assert "tbf" in qdisc_kinds(shown.stdout), shown.stdout
    finally:
        cl = ctl(hosts, "link", "clear", "back-3")
        assert cl.returncode == 0, cl.stdout + cl.stderr
    after = ctl(hosts, "link", "show", "back-3", "-o", "json")
    assert "tbf" not in qdisc_kinds(after.stdout), after.stdout
    # logs -f follows over a channel of its own (test_multihost_streams): what was logged comes at once, Ctrl-C ends it
    follow = subprocess.Popen(hosts.controller_argv(["env", f"PYTHONPATH={ROOT}", PY, "-m", "emulator", "logs", "-f",
                                                     "back-3"]), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              cwd=ROOT)
    try:
        assert follow.stdout is not None
        seen = [follow.stdout.readline().decode() for _ in range(lg.stdout.count("\n"))]  # what `logs` showed
        assert "".join(seen) == lg.stdout, (seen, lg.stdout)
        follow.send_signal(signal.SIGINT)
        assert follow.wait(timeout=10) == 130
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.wait()
        for f in (follow.stdout, follow.stderr):
            f and f.close()
    missing = ctl(hosts, "describe", "pod", "nosuch")
    assert missing.returncode == 2 and "nosuch" in missing.stderr, missing.stderr


def test_endpoints_follow_a_pod_that_changes_ip_on_its_own(hosts: EmulatedHosts, lab: dict) -> None:
    """back-3's sandbox broken on its host and its agent restarted there: the agent makes the sandbox again with a
    new IP, and with no podlab change at the controller the Endpoints on every host follow it (the API server's
    mirror sees the pod move and pushes)."""
    old = pods(hosts)["back-3"]["ip"]
    hosts.host_run("mhs3", ["ip", "-n", f"{LAB}-back-3", "link", "del", "eth0"], check=True)
    r = ctl(hosts, "agent", "restart", "node-3")
    assert r.returncode == 0, r.stdout + r.stderr
    deadline, new = time.monotonic() + 60, None
    while time.monotonic() < deadline:
        new = pods(hosts).get("back-3", {}).get("ip")
        if new and new != old:
            break
        time.sleep(0.5)
    assert new and new != old, (old, new)

    def addresses(host: str) -> list[str]:
        subsets = store_view(hosts, host, "endpoints").get("default/back") or []
        return sorted(a["ip"] for s in subsets for a in s.get("addresses", []))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not all(new in addresses(h) for h in hosts.names):
        time.sleep(0.5)
    assert all(new in addresses(h) and old not in addresses(h) for h in hosts.names), \
        {h: addresses(h) for h in hosts.names}
    # the client's node's kube-proxy (on mhs1) sends to the new address: back-3 answers through the ClusterIP
    assert "back-3" in answers(hosts, "client", f"http://{cluster_ip(hosts, 'back')}/hostname", {"back-3"})
