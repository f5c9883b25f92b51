"""The node agent: the pod lifecycle (sidecars, crashing containers, real manifests, bad input, IP reuse, /etc/netns
files), CNI (none installed yet, an exhausted slice, built-in and reference plugins side by side) and its own
failures (killed in the middle of its work, stopped and started)."""
from __future__ import annotations

import ipaddress
import json
import os
import random
import shutil
import time

import pytest

from emulator.check import probes as probe
from emulator.lab.api import Lab
from emulator.netlink import netns
from emulator.proc.lifecycle import alive
from emulator.topology import names
from tests.integration.conftest import lab_fixture, podlab

TWO_NODES = """
version: 1
name: x
nodes: [{name: node-1}, {name: node-2}]
pods:
  - {name: web, node: node-2, containers: [{name: c, image: netexec}]}
"""


def wait_for(cond, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


lab = lab_fixture(TWO_NODES)


def test_sidecar_reaches_app_on_localhost(lab: Lab) -> None:
    lab.apply_pod({"name": "side", "node": "node-1", "containers": [
        {"name": "app", "image": "netexec", "args": ["--http-port=8080"]},
        {"name": "sidecar", "image": "busybox", "command": [
            "sh", "-c", "until curl -s localhost:8080/hostname; do sleep 0.1; done; echo; exec sleep 3600"]}]})
    try:
        lab.wait_pod("side")
        log = lab.paths.container_log("side", "sidecar")
        assert wait_for(lambda: log.exists() and "side" in log.read_text(), what="sidecar output") 
        st = lab.pod("side").status
        assert [c["ready"] for c in st["containerStatuses"]] == [True, True]
    finally:
        lab.delete_pod("side")


def test_two_containers_on_one_port_the_second_fails_with_a_reason(lab: Lab) -> None:
    lab.apply_pod({"name": "clash", "node": "node-1", "containers": [
        {"name": "first", "image": "netexec", "args": ["--http-port=9090", "--udp-port=-1"],
         "ports": [{"containerPort": 9090}]},
        {"name": "second", "image": "netexec", "args": ["--http-port=9090", "--udp-port=-1"]}]})
    try:
        lab.wait_pod("clash")

        def crashed():  # whichever binds second fails (they start microseconds apart, as in a real pod)
            cs = lab.pod("clash").status["containerStatuses"]
            failed = [c for c in cs if (c.get("lastState") or {}).get("terminated")]
            return failed[0] if failed and any(c["ready"] for c in cs) else None
        loser = wait_for(crashed, what="one container to fail")
        assert "Address already in use" in loser["lastState"]["terminated"]["message"]
        assert loser["state"].get("waiting", {}).get("reason") == "CrashLoopBackOff" or loser["restartCount"] >= 1
        out = podlab("describe", "pod", "clash", lab=lab).stdout
        assert "Address already in use" in out and "BackOff" in out
    finally:
        lab.delete_pod("clash")


def test_real_e2e_manifest_and_unknown_image(lab: Lab, tmp_path) -> None:
    manifest = tmp_path / "pods.yaml"
    manifest.write_text("""
apiVersion: v1
kind: Pod
metadata: {name: netserver-0, labels: {selector: netserver}}
spec:
  nodeName: node-1
  containers:
  - name: webserver
    image: registry.k8s.io/e2e-test-images/agnhost:2.47
    imagePullPolicy: IfNotPresent
    args: [netexec, --http-port=8083, --udp-port=8081]
    ports: [{containerPort: 8083, name: http}, {containerPort: 8081, name: udp, protocol: UDP}]
    livenessProbe: {httpGet: {path: /healthz, port: 8083}}
---
apiVersion: v1
kind: Pod
metadata: {name: nginx}
spec:
  containers: [{name: nginx, image: "nginx:1.27", ports: [{containerPort: 80}]}]
""")
    r = podlab("apply", "-f", str(manifest), lab=lab)
    assert r.returncode == 0 and "pod/netserver-0 created" in r.stdout and "pod/nginx created" in r.stdout, r.stderr
    try:
        ip = lab.wait_pod("netserver-0")["podIP"]
        nginx = lab.wait_pod("nginx")["podIP"]
        assert probe.wait_http(lab, "web", ip, 8083)
        assert probe.http(lab, "web", f"http://{ip}:8083/hostname").body == "netserver-0"
        out = lab.exec("web", ["sh", "-c", f"echo hostname | nc -u -w1 {ip} 8081"]).stdout
        assert out.strip() == "netserver-0"
        got = wait_for(lambda: lab.exec("web", ["curl", "-s", "--max-time", "2", f"http://{nginx}:80/"]).stdout,
                       what="nginx stand-in")
        assert "nginx port 80/TCP" in got
    finally:
        lab.delete_pod("netserver-0")
        lab.delete_pod("nginx")


def test_bad_input_changes_nothing(lab: Lab, tmp_path) -> None:
    before = sorted(lab.store.names("pods"))
    cases = {
        "malformed.yaml": ("kind: Pod\napiVersion: v1\nmetadata: {name: [x\n", "YAML syntax error at line"),
        "node.yaml": ("{name: p1, node: node-9}", "unknown node 'node-9'"),
        "dup.yaml": ("{name: web, node: node-1}", "already exists"),
        "field.yaml": ("apiVersion: v1\nkind: Pod\nmetadata: {name: p2}\nspec:\n  hostIPC: true\n"
                       "  containers: [{name: c}]\n", "spec.hostIPC"),
        "mixed.yaml": ("{name: ok-1, node: node-1}\n---\n{name: bad_name}", "pod name 'bad_name'"),
    }
    for fname, (text, _) in cases.items():
        (tmp_path / fname).write_text(text)
    runs = probe.matrix(cases, lambda fname: podlab("apply", "-f", str(tmp_path / fname), lab=lab))  # side by side
    for fname, r in runs:
        expect = cases[fname][1]
        assert r.returncode == 2 and expect in r.stderr and fname in r.stderr and "fix:" in r.stderr, (fname, r.stderr)
    assert sorted(lab.store.names("pods")) == before


def test_recreated_pod_gets_a_new_ip(lab: Lab) -> None:
    lab.apply_pod({"name": "again", "node": "node-1"})
    first = lab.wait_pod("again")["podIP"]
    lab.delete_pod("again")
    assert not netns.exists(names.pod_ns(lab.name, "again"))
    files = {f.name for f in (lab.paths.ipam_dir("node-1") / "cbr0").iterdir()}
    assert first not in files  # released
    lab.apply_pod({"name": "again", "node": "node-1"})
    try:
        second = lab.wait_pod("again")["podIP"]
        assert second != first and ipaddress.ip_address(second) > ipaddress.ip_address(first)
    finally:
        lab.delete_pod("again")


def test_deleted_pod_leaves_no_process_its_containers_started(lab: Lab) -> None:
    """busybox's container is a shell looping on ``sleep``: deleting the pod ends the sleep too (the container's
    process group), not only the shell, which would leave the sleep to init, outside any record, until reboot."""
    lab.apply_pod({"name": "shell", "node": "node-1", "containers": [{"name": "c", "image": "busybox"}]})
    lab.wait_pod("shell")
    log = str(lab.paths.container_log("shell", "c"))

    def writers() -> list[int]:  # the processes whose stdout is the container's log: its shell and its sleep
        out = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                if os.readlink(f"/proc/{pid}/fd/1").startswith(log):
                    out.append(int(pid))
            except OSError:
                pass
        return out
    assert len(wait_for(lambda: len(writers()) >= 2 and writers(), what="the shell and its sleep")) >= 2
    lab.delete_pod("shell")
    wait_for(lambda: not writers(), timeout=3, what="no process of the deleted pod left (its sleep)")


def test_an_exited_container_leaves_nothing_it_started(lab: Lab) -> None:
    """A container whose first process exits ends with what it started (a real one's PID namespace dies with it)."""
    lab.apply_pod({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "quitter"}, "spec": {
        "nodeName": "node-1", "restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox", "command": [
            "sh", "-c", "sleep 300 & echo started; sleep 0.5; exit 1"]}]}})
    try:
        log = str(lab.paths.container_log("quitter", "c"))
        wait_for(lambda: (lab.pod("quitter").obj.get("status") or {}).get("phase") == "Failed", what="the exit")
        left = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                if os.readlink(f"/proc/{pid}/fd/1").startswith(log):
                    left.append(pid)
            except OSError:
                pass
        assert left == [], left  # the background sleep ended with the container
    finally:
        lab.delete_pod("quitter")


def test_pod_honours_etc_netns_files(lab: Lab) -> None:
    d = f"/etc/netns/{names.pod_ns(lab.name, 'dnsy')}"
    os.makedirs(d, exist_ok=True)
    try:
        with open(f"{d}/resolv.conf", "w") as f:
            f.write("nameserver 10.96.0.10\nsearch default.svc.cluster.local\noptions ndots:5\n")
        lab.apply_pod({"name": "dnsy", "node": "node-1", "containers": [
            {"name": "c", "image": "busybox", "command": ["sh", "-c", "cat /etc/resolv.conf; exec sleep 3600"]}]})
        lab.wait_pod("dnsy")
        log = lab.paths.container_log("dnsy", "c")
        assert wait_for(lambda: log.exists() and "ndots:5" in log.read_text(), what="resolv.conf in the pod")
    finally:
        lab.delete_pod("dnsy")
        shutil.rmtree(d, ignore_errors=True)


CNI_NONE = """
version: 1
name: x
nodes: [{name: node-1}, {name: node-2, cni: none}]
pods:
  - {name: p1, node: node-1}
  - {name: p2, node: node-2}
"""


def test_node_without_cni_config_then_install(make_lab) -> None:
    """A node without CNI configuration is NotReady (as a kubelet reports it before a network add-on is
    installed): a pod bound to it stays ContainerCreating, and the scheduler puts the cluster's coredns pods on
    the Ready node only; once the configuration is installed the node is Ready and the pod starts."""
    lab = make_lab(CNI_NONE)
    st = lab.pod("p2").status
    assert st["phase"] == "Pending" and "network plugin not ready: cni config uninitialized" in st["message"]
    out = podlab("get", "pods", lab=lab).stdout
    assert any(line.split()[:3] == ["p2", "0/1", "ContainerCreating"] for line in out.splitlines()), out
    nodes = {line.split()[0]: line.split()[1] for line in podlab("get", "nodes", lab=lab).stdout.splitlines()[1:]}
    assert nodes == {"node-1": "Ready", "node-2": "NotReady"}, nodes
    dns = [p for p in lab.pods if p.namespace == "kube-system"]
    assert len(dns) == 2 and {(p.node, p.status["phase"]) for p in dns} == {("node-1", "Running")}
    uid = lab.pod("p2").obj["metadata"]["uid"]
    r = podlab("cni", "install", "node-2", lab=lab)
    assert r.returncode == 0, r.stderr
    st = lab.wait_pod("p2", timeout=10)
    assert lab.pod("p2").obj["metadata"]["uid"] == uid and probe.ping(lab, "p1", st["podIP"])
    assert lab.node("node-2").ready


EXHAUST = """
version: 1
name: x
cluster: {nodeCIDRMaskSize: 29}
nodes: [{name: node-1}]
pods: [{name: p1}, {name: p2}, {name: p3}]
"""


def test_exhausted_slice_then_freed(make_lab) -> None:
    """A /29 slice holds 5 pod IPs (less network, broadcast and the bridge's gateway): the cluster's 2 coredns
    pods take two of them, as in a cluster (where they also hold pod IPs of their node's slice), the topology's 3
    pods the rest; a 6th pod waits for an IP with host-local's message until one is freed."""
    lab = make_lab(EXHAUST)
    slice_ = ipaddress.ip_network(lab.node("node-1").pod_cidr)
    every = [str(a) for a in slice_.hosts()]  # host-local's range set (it skips the gateway it is given)
    hosts = every[1:]  # the first is cbr0's gateway
    ips = {f"{p.namespace}/{p.name}": p.ip for p in lab.pods}
    assert len(ips) == 5 and sorted(ips.values(), key=ipaddress.ip_address) == hosts, ips
    assert sum(1 for k in ips if k.startswith("kube-system/coredns-")) == 2, ips
    lab.apply_pod({"name": "p6", "node": "node-1"})
    st = wait_for(lambda: (lab.store.get_status("pods", "p6") or {}).get("message"), what="p6 pending")
    assert f"no IP addresses available in range set: {every[0]}-{every[-1]}" in st, st
    assert lab.pod("p6").status["phase"] == "Pending"
    lab.delete_pod("p3")
    assert lab.wait_pod("p6", timeout=10)["podIP"] == ips["default/p3"]


MIXED = """
version: 1
name: x
nodes: [{name: node-1}, {name: node-2, cni: reference}, {name: node-3}]
pods:
  - {name: a, node: node-1, containers: [{name: c, image: netexec}]}
  - {name: b, node: node-2, containers: [{name: c, image: netexec}]}
  - {name: b2, node: node-2, containers: [{name: c, image: netexec}]}
  - {name: c, node: node-3, containers: [{name: c, image: netexec}]}
"""


@pytest.mark.skipif(not os.path.exists("/usr/lib/cni/bridge"), reason="containernetworking-plugins not installed")
def test_mixed_builtin_and_reference_plugins(make_lab) -> None:
    lab = make_lab(MIXED)
    mine = [p for p in lab.pods if p.namespace == "default"]  # the netexec pods (not kube-system's coredns pods)
    pods = {p.name: p.ip for p in mine}
    for p in mine:
        assert probe.wait_http(lab, f"node/{p.node}", p.ip)
    pairs = [(a, b) for a in pods for b in pods if a != b]
    seen = probe.matrix(pairs, lambda pr: probe.observed_source(lab, pr[0], pods[pr[1]]))
    assert all(s == pods[a] for (a, _), s in seen), seen
    for node, pod in (("node-1", "a"), ("node-2", "b")):
        f = lab.paths.ipam_dir(node) / "cbr0" / pods[pod]
        cid, ifname = f.read_bytes().decode().split("\r\n")
        assert cid == lab.pod(pod).status["sandbox"]["id"] and ifname == "eth0"
    conf = json.loads((lab.paths.cni_conf_dir("node-2") / "10-flannel.conflist").read_text())
    assert conf["plugins"][0]["type"] == "bridge" and conf["name"] == "cbr0"
    # node-2's bridge is the real plugin (podlab's own is not in its CNI path): a random veth<8 hex>, which
    # podlab's tools find through the plugin's result
    assert not (lab.paths.cni_bin_dir("node-2") / "bridge").exists() and (lab.paths.cni_bin_dir("node-1") /
                                                                           "bridge").exists()
    sb = lab.pod("b").status["sandbox"]
    veth = next(i["name"] for i in sb["cniResult"]["interfaces"] if not i.get("sandbox") and i["name"] != "cni0")
    assert veth != names.host_veth(sb["id"]) and len(veth) == 12, veth
    r = podlab("trace", "a", "b", lab=lab)
    assert r.returncode == 0 and f"cni0 → {veth} → b eth0" in r.stdout, r.stdout + r.stderr
    lab.delete_pod("b2")  # real CNI DEL
    assert not (lab.paths.ipam_dir("node-2") / "cbr0" / pods["b2"]).exists()


def invariants(lab: Lab) -> list[str]:
    """Everything that must hold whatever happened to the agents, for every pod the agents run: the topology's
    and the cluster's own (kube-system's coredns pods)."""
    problems = []
    spec = {(ns, n) for ns, n in lab.store.keys("pods")
            if "podlab.io/process" not in ((lab.store.get("pods", n, ns) or {"metadata": {}})["metadata"]
                                           .get("annotations") or {})}
    # the agents' pods (not the API server's mirror pods of the lab's own processes, which run in the nodes)
    sts = {(s.get("namespace") or "default", s["name"]): s for s in lab.store.list("pods", status=True)
           if not (s.get("sandbox") or {}).get("mirror")}
    running = {n: s for n, s in sts.items() if s.get("phase") == "Running"}
    ips = [s["podIP"] for s in running.values()]
    if len(ips) != len(set(ips)):
        problems.append(f"duplicate IPs {sorted(ips)}")
    for node in ("node-1", "node-2"):
        files = {f.name for f in (lab.paths.ipam_dir(node) / "cbr0").iterdir()} - {"lock", "last_reserved_ip.0"}
        mine = {s["podIP"] for s in running.values() if s["nodeName"] == node}
        if files != mine:
            problems.append(f"{node}: IPAM files {sorted(files)} != running pod IPs {sorted(mine)}")
        links = json.loads(lab.exec(f"node/{node}", ["ip", "-j", "link", "show", "type", "veth"]).stdout)
        veths = {l["ifname"] for l in links} - {"eth0"}
        want = {names.host_veth(s["sandbox"]["id"]) for s in running.values() if s["nodeName"] == node}
        if veths != want:
            problems.append(f"{node}: veths {sorted(veths)} != pods' {sorted(want)}")
    pod_ns = {n for n in netns.list_names() if n.startswith(f"{lab.name}-")} - set(lab.record["namespaces"])
    want_ns = {names.pod_ns(lab.name, n, ns) for ns, n in running}
    if pod_ns != want_ns:
        problems.append(f"namespaces {sorted(pod_ns)} != running pods' {sorted(want_ns)}")
    if set(running) != spec:
        problems.append(f"running {sorted(running)} != wanted {sorted(spec)}")
    return problems


def test_agent_kill_loop_keeps_invariants(make_lab) -> None:
    lab = make_lab(TWO_NODES.replace("image: netexec", "image: pause"))
    rng = random.Random(7)
    counter = 0
    for step in range(24):
        action = rng.choice(["add", "add", "delete", "kill"])
        if action == "add":
            counter += 1
            lab.apply_pod({"name": f"r{counter}", "node": rng.choice(["node-1", "node-2"])})
        elif action == "delete" and len(lab.store.names("pods")) > 1:
            lab.delete_pod(rng.choice([n for n in lab.store.names("pods")]), wait=False)
        elif action == "kill":
            node = rng.choice(["node-1", "node-2"])
            time.sleep(rng.uniform(0, 0.05))  # land the kill in the middle of the agent's work
            lab.agent_stop(node, kill=True)
            lab.agent_start(node)
    try:
        wait_for(lambda: not invariants(lab), timeout=20, what="invariants")
    except AssertionError:
        logs = {n: lab.paths.agent_log(n).read_text()[-1500:] for n in ("node-1", "node-2")}
        agents = {n: lab.agent_pid(n) for n in ("node-1", "node-2")}
        raise AssertionError(f"invariants broken: {invariants(lab)}; agents {agents}; logs {logs}") from None
    # a plain restart touches no healthy container
    pids = {s["name"]: [c["pid"] for c in s["containerStatuses"]] for s in lab.store.list("pods", status=True)
            if not (s.get("sandbox") or {}).get("mirror")}
    for node in ("node-1", "node-2"):
        lab.agent_stop(node)
        lab.agent_start(node)
    for node in ("node-1", "node-2"):  # an agent's pass visits pods by name: these come last, after every other
        lab.apply_pod({"name": f"zz-{node}", "node": node})
    for node in ("node-1", "node-2"):
        lab.wait_pod(f"zz-{node}")
    after = {s["name"]: [c["pid"] for c in s["containerStatuses"]] for s in lab.store.list("pods", status=True)
             if not s["name"].startswith("zz-") and not (s.get("sandbox") or {}).get("mirror")}
    assert after == pids and not invariants(lab)
    assert all(alive(p, None) for ps in after.values() for p in ps)


def test_agent_stop_leaves_pods_running_and_start_reconciles(lab: Lab) -> None:
    lab.agent_stop("node-1")
    try:
        lab.apply_pod({"name": "late", "node": "node-1"})
        out = podlab("get", "nodes", lab=lab).stdout
        assert "NotReady" in out
        assert lab.store.get_status("pods", "late") is None  # no kubelet, no pod (looked at after the CLI ran)
        assert podlab("agent", "start", "node-1", lab=lab).returncode == 0
        assert lab.wait_pod("late", timeout=10)["nodeName"] == "node-1"
    finally:
        lab.agent_start("node-1")  # the module's next tests need it (a no-op when it runs)
        lab.delete_pod("late")
