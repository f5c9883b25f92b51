"""The lab lifecycle: up/down are idempotent, a failed up rolls back completely, labs do not interfere, and the
machine's root namespace is never touched."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from emulator.check import probes as probe
from emulator.proc.lifecycle import alive, start_time
from emulator.errors import BuildError
from emulator.lab import builder, teardown
from emulator.state import record
from emulator.state.paths import LabPaths
from emulator.netlink import netns
from emulator.topology.loader import loads
from tests.integration.conftest import ROOT, podlab, three_node_text, unique_name

SMALL = """
version: 1
name: x
routing: vxlan
nodes: [{name: node-1}, {name: node-2}]
pods:
  - {name: a, node: node-1}
  - {name: b, node: node-2}
"""


def lab_namespaces(name: str) -> list[str]:
    return [n for n in netns.list_names() if n.startswith(f"{name}-")]


def processes_of(name: str) -> list[int]:
    """PIDs the lab recorded (agents and containers) that are still alive."""
    paths = LabPaths(name)
    pids = []
    for f in paths.root.glob("nodes/*/run/podlab-agent.pid"):
        rec = json.loads(f.read_text())
        pids.append((rec["pid"], rec["start"]))
    for f in paths.store.glob("status/pods/*/*.json"):
        for c in json.loads(f.read_text()).get("containerStatuses", []):
            if c.get("pid"):
                pids.append((c["pid"], c.get("pidStart")))
    return [p for p, s in pids if alive(p, s)]


def test_cli_up_twice_down_twice(tmp_path) -> None:
    name = unique_name("c")
    topo_file = tmp_path / "lab.yaml"
    topo_file.write_text(SMALL)
    try:
        r = podlab("up", str(topo_file), "--name", name, "--routing", "host-gw")
        assert r.returncode == 0, r.stderr
        assert "pods Running: 2/2" in r.stderr
        inodes = {n: netns.inode(n) for n in lab_namespaces(name)}
        pids = processes_of(name)
        # underlay + 2 nodes + 2 pods + kube-system's 2 coredns pods (every lab runs kube-proxy, the controllers
        # and cluster DNS as pods); 2 agents + 2 pause + the 2 coredns pods' servers
        assert len(inodes) == 7 and len(pids) == 6, (sorted(inodes), pids)
        assert sum(".kube-system" in n and "-coredns-" in n for n in inodes) == 2, sorted(inodes)

        again = podlab("up", str(topo_file), "--name", name, "--routing", "host-gw")
        assert again.returncode == 0 and "already up; nothing changed" in again.stdout
        assert {n: netns.inode(n) for n in lab_namespaces(name)} == inodes
        assert processes_of(name) == pids

        other = podlab("up", str(topo_file), "--name", name, "--routing", "vxlan")
        assert other.returncode == 3 and "different topology" in other.stderr

        nodes = json.loads(podlab("--lab", name, "get", "nodes", "-o", "json").stdout)["items"]
        assert [n["spec"]["podCIDR"] for n in nodes] == ["10.244.1.0/24", "10.244.2.0/24"]
        assert nodes[0]["status"]["addresses"][0] == {"type": "InternalIP", "address": "192.168.56.11"}
        pods = json.loads(podlab("get", "pods", "-o", "json", "--lab", name).stdout)["items"]
        assert {p["metadata"]["name"]: p["spec"]["nodeName"] for p in pods} == {"a": "node-1", "b": "node-2"}
        assert all(p["status"]["phase"] == "Running" and p["status"]["podIP"] and p["status"]["hostIP"]
                   for p in pods)
        wide = podlab("--lab", name, "get", "pods", "-o", "wide").stdout.splitlines()
        assert wide[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"]
        assert wide[1].split()[:3] == ["a", "1/1", "Running"] and wide[1].split()[-1] == "node-1"
        b_ip = pods[1]["status"]["podIP"]
        ex = podlab("--lab", name, "exec", "a", "--", "ping", "-c1", "-W2", b_ip)
        assert ex.returncode == 0 and "1 received" in ex.stdout
        assert podlab("--lab", name, "exec", "a", "--", "sh", "-c", "exit 7").returncode == 7
        bg = podlab("--lab", name, "exec", "a", "--", "sh", "-c", "sleep 307 >/dev/null 2>&1 & echo $!")
        left = (int(bg.stdout), start_time(int(bg.stdout)))  # a background job the exec'd shell left in the pod
        assert alive(*left)
        route = podlab("--lab", name, "exec", "node/node-1", "--", "ip", "route").stdout
        assert "10.244.2.0/24 via 192.168.56.12 dev eth0" in route
        ls = json.loads(podlab("ls", "-o", "json").stdout)["items"]
        assert any(i["name"] == name and i["status"] == "ready" for i in ls)
    finally:
        first = podlab("down", name)
        second = podlab("down", name)
    assert first.returncode == 0 and "removed" in first.stdout
    assert second.returncode == 0 and "not present" in second.stdout
    assert lab_namespaces(name) == []
    assert not any(alive(p, None) for p in pids)
    assert not alive(*left), "down left the exec'd shell's background job running"
    assert not LabPaths(name).root.exists()


@pytest.mark.parametrize("fail_at", ["write_node_files", "wait_pods"])
def test_failure_half_way_rolls_back(monkeypatch, fail_at: str) -> None:
    name = unique_name("f")
    topo = loads(three_node_text(1, "pause"), source="<test>", name=name)
    spawned: list[str] = []
    agent_pids: list[tuple[int, int | None]] = []
    real_spawn = builder.agent_launcher.Launcher.spawn

    def count_spawn(self, nodes: list[str]) -> list[int]:
        spawned.extend(nodes)
        pids = real_spawn(self, nodes)
        agent_pids.extend((p, start_time(p)) for p in pids)
        return pids

    calls = {"n": 0}
    real = getattr(builder, fail_at)

    def boom(*a, **kw):
        calls["n"] += 1
        if fail_at == "wait_pods" or calls["n"] == 2:
            raise OSError(28, "No space left on device (injected)")
        return real(*a, **kw)

    monkeypatch.setattr(builder.agent_launcher.Launcher, "spawn", count_spawn)
    monkeypatch.setattr(builder, fail_at, boom)
    with pytest.raises(BuildError) as exc:
        builder.up(topo)
    assert name in str(exc.value) and "everything it created was removed" in str(exc.value)
    assert lab_namespaces(name) == []
    assert record.load(name) is None and not LabPaths(name).root.exists()
    if fail_at == "wait_pods":
        assert spawned == ["node-1", "node-2", "node-3"]  # agents had started (the failure came at once)...
        assert not any(alive(p, st) for p, st in agent_pids)  # ...and were stopped, pidfile written or not


def test_two_labs_side_by_side(make_lab) -> None:
    a = make_lab(SMALL)
    b = make_lab(SMALL, routing="host-gw")
    for lab in (a, b):
        assert probe.ping(lab, "a", lab.pod("b").ip)
    # same addresses in both labs, yet separate networks
    assert a.pod("a").ip == b.pod("a").ip
    teardown.destroy(a.name)
    assert lab_namespaces(a.name) == []
    assert probe.ping(b, "a", b.pod("b").ip)


def test_root_namespace_untouched(make_lab) -> None:
    def snapshot() -> tuple[str, str, str, str]:
        run = lambda *c: subprocess.run(c, capture_output=True, text=True).stdout  # noqa: E731
        return (run("ip", "-o", "link"), run("ip", "-o", "addr"), run("ip", "route", "show", "table", "all"),
                run("nft", "list", "ruleset"))
    before = snapshot()
    lab = make_lab(SMALL)
    assert probe.ping(lab, "a", lab.pod("b").ip)
    during = snapshot()
    lab.down()
    after = snapshot()
    strip = lambda s: [tuple(x.split("\n")) for x in s]  # noqa: E731
    assert strip(during) == strip(before) == strip(after)


def test_namespace_conflict_touches_nothing() -> None:
    name = unique_name("k")
    netns.create(f"{name}-node-2")
    try:
        with pytest.raises(Exception) as exc:
            builder.up(loads(SMALL, source="<test>", name=name))
        assert f"{name}-node-2" in str(exc.value) and "does not own" in str(exc.value)
        assert lab_namespaces(name) == [f"{name}-node-2"] and record.load(name) is None
    finally:
        netns.delete(f"{name}-node-2")


def test_agents_run_inside_their_node_namespace(make_lab) -> None:
    lab = make_lab(SMALL)
    for node in ("node-1", "node-2"):
        pid = json.loads(lab.paths.agent_pid(node).read_text())["pid"]
        assert os.stat(f"/proc/{pid}/ns/net").st_ino == netns.inode(f"{lab.name}-{node}")


def test_cleanup_removes_a_crashed_up(tmp_path, private_state) -> None:
    """`up` killed half-way leaves a record owned by a dead process; `cleanup` removes exactly that lab (in a
    state tree of the test's own, so cleanup never sees another run's labs)."""
    import signal
    import time
    from emulator.lab.api import Lab
    name = unique_name("z")
    lines = ["version: 1", f"name: {name}", "nodes: [{name: node-1}, {name: node-2}]", "pods:"]
    lines += [f"  - {{name: p{i}, node: node-{1 + i % 2}}}" for i in range(120)]
    f = tmp_path / "big.yaml"
    f.write_text("\n".join(lines) + "\n")
    bystander = unique_name("y")
    Lab.up(loads(SMALL, source="<test>", name=bystander))
    try:
        proc = subprocess.Popen([sys.executable, "-m", "emulator", "up", str(f)], cwd=ROOT, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while not any(n.startswith(f"{name}-p") for n in netns.list_names()):  # pods are being created
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        rec = record.load(name)
        assert rec["status"] == "creating" and record.crashed(rec)
        # the agents (forked by the dead `up`) are still running; cleanup ends them by their recorded PIDs
        left = processes_of(name)
        assert left, "the crashed lab should still have live agents/containers"
        r = podlab("cleanup")
        assert r.returncode == 0 and f"lab {name}" in r.stdout, r.stdout + r.stderr
        assert lab_namespaces(name) == [] and record.load(name) is None and not LabPaths(name).root.exists()
        assert not any(alive(p, None) for p in left)
        assert probe.ping(Lab(bystander), "a", Lab(bystander).pod("b").ip)  # a healthy lab is left alone
        assert podlab("cleanup").stdout.startswith("nothing to clean up")
    finally:
        teardown.destroy(name)
        teardown.destroy(bystander)


def test_cleanup_removes_an_old_state_directory_without_record(private_state) -> None:
    """In a state tree of the test's own: cleanup never sees another run's directories."""
    name = unique_name("o")
    d = LabPaths(name).root / "nodes" / "node-3" / "etc"
    d.mkdir(parents=True)
    young = podlab("cleanup")
    assert LabPaths(name).root.exists(), young.stdout  # may be a lab whose record is being written
    old = time.time() - 120
    for p in (d, d.parent, d.parent.parent, LabPaths(name).root):
        os.utime(p, (old, old))
    r = podlab("cleanup")
    assert r.returncode == 0 and f"state directory of lab {name}" in r.stdout, r.stdout + r.stderr
    assert not LabPaths(name).root.exists()
