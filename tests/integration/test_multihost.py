"""Labs over several machines: 3 emulated hosts (``emulator.hosts.emulated``: own netns, mount and pid namespaces,
own sshd) on a LAN namespace, the podlab CLI run in a controller namespace, paramiko from there.

Proven from what the hosts' kernels and the pods show: the full pod matrix across hosts without NAT (`podlab
check` of the multi-host lab: each receiver reports the source IP it saw), the stretched underlay's MTU (a DF ping
at full size across every host pair), a killed host's nodes NotReady and `down` removing the rest while naming
it, and nothing left on any host. Each refusal (unreachable host, version mismatch, no sudo, an MTU the NICs or
the path cannot carry) is one error naming the host and the fix, with nothing created anywhere.
"""
from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from emulator.hosts.emulated import EmulatedHosts, podlab_command
from tests.integration.conftest import ROOT

PY = sys.executable
COMMAND = podlab_command(ROOT)
FEATURES = ("from pyroute2.ethtool.ioctl import IoctlEthtool as E; e = E('stretch0'); "
            "print(e.get_features()['rx-udp-gro-forwarding']); e.close(); "
            "[print(open('/proc/sys/net/bridge/bridge-nf-call-' + k).read().strip()) "
            "for k in ('iptables', 'ip6tables', 'arptables')]")


def topology(path: Path, name: str, routing: str = "vxlan", nodes: int = 9, mtu: int | None = None) -> Path:
    lines = ["version: 1", f"name: {name}", f"routing: {routing}"]
    if mtu is not None:
        lines.append(f"underlay: {{mtu: {mtu}}}")
    lines.append("nodes: [" + ", ".join(f"{{name: node-{i}}}" for i in range(1, nodes + 1)) + "]")
    lines.append("pods:")
    lines += [f"  - {{name: web-{i}, node: node-{i}, containers: [{{name: web, image: netexec, ports: "
              f"[{{containerPort: 8080}}]}}]}}" for i in range(1, nodes + 1)]
    path.write_text("\n".join(lines) + "\n")
    return path


def ctl(hs: EmulatedHosts, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """``podlab ARGS`` on the controller (inside its namespaces: paramiko connects from there)."""
    return subprocess.run(hs.controller_argv(["env", f"PYTHONPATH={ROOT}", PY, "-m", "emulator", *args]),
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def host_leftovers(hs: EmulatedHosts, names: list[str] | None = None, wait: float = 3.0) -> dict[str, list[str]]:
    """What a lab could leave on each host: named namespaces, lab state, tunnel devices, processes (all but the
    host's PID 1, its sshd and the ps looking). Waits up to ``wait`` s: a ``host serve`` whose channel the
    controller just closed may still be exiting."""
    deadline = time.monotonic() + wait
    while True:
        found = _leftovers(hs, names)
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def _leftovers(hs: EmulatedHosts, names: list[str] | None) -> dict[str, list[str]]:
    out = {}
    for n in names or hs.names:
        r = hs.host_run(n, ["sh", "-c", "ip netns list; ls /run/podlab/labs 2>/dev/null; ip -o link show type vxlan"])
        found = r.stdout.split()
        ps = hs.host_run(n, ["ps", "-eo", "pid=,comm=,args="]).stdout.split("\n")
        found += [line.strip() for line in ps if line.strip() and line.split()[0] != "1"
                  and line.split()[1] not in ("sshd", "ps")]
        if found:
            out[n] = found
    return out


@contextlib.contextmanager
def module_lab(hs: EmulatedHosts, d: Path, topology: str, lab: str) -> Iterator[dict]:
    """A test module's shared lab over ``hs``: up from ``topology`` (written into ``d``), yielded as {"up": the up's
    result, "dir": d}; then down, with nothing left on any host nor in the controller's records."""
    topo = d / "t.yaml"
    topo.write_text(topology)
    r = ctl(hs, "up", str(topo), "--hosts", str(hs.inventory(COMMAND)))
    try:
        assert r.returncode == 0, r.stdout + r.stderr
        yield {"up": r, "dir": d}
    finally:
        dn = ctl(hs, "down", lab)
        assert dn.returncode == 0, dn.stdout + dn.stderr
        assert host_leftovers(hs) == {} and controller_records(hs) == []


def lab_store_view(hs: EmulatedHosts, host: str, lab: str, kind: str) -> dict[str, object]:
    """What a host's own store holds for lab ``lab``: {ns/name: spec or subsets} of ``kind``."""
    code = (f"import json,sys; sys.path.insert(0, {str(ROOT)!r}); from emulator.state.store import Store; "
            f"from emulator.state.paths import LabPaths; s = Store(LabPaths({lab!r}).store); "
            f"print(json.dumps({{o['metadata']['namespace'] + '/' + o['metadata']['name']: "
            f"o.get('spec', o.get('subsets')) for o in s.list({kind!r})}}))")
    r = hs.host_run(host, [PY, "-c", code])
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def controller_records(hs: EmulatedHosts) -> list[str]:
    r = subprocess.run(hs.controller_argv(["ls", "/run/podlab/multihost"]), capture_output=True, text=True)
    return r.stdout.split()


@pytest.fixture(scope="module")
def hosts() -> Iterator[EmulatedHosts]:
    with EmulatedHosts(3, users=("student",)) as hs:
        yield hs


@pytest.fixture
def inventory(hosts: EmulatedHosts) -> Path:
    return hosts.inventory(COMMAND)


@pytest.mark.parametrize("routing", ["vxlan", "host-gw", "bgp"])
def test_three_hosts_full_matrix_without_nat(hosts: EmulatedHosts, inventory: Path, tmp_path: Path,
                                             routing: str) -> None:
    topo = topology(tmp_path / "t.yaml", f"mult-{routing}", routing)
    r = ctl(hosts, "host", "check", "--hosts", str(inventory))
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count(" ok") == 3 and "1450" in r.stdout
    r = ctl(hosts, "up", str(topo), "--hosts", str(inventory))
    try:
        assert r.returncode == 0, r.stderr
        assert "up on 3 hosts" in r.stdout and "underlay MTU 1450" in r.stdout
        assert "DF pings of 1422 bytes across all 6 host pairs" in r.stderr
        if routing == "bgp":
            assert "BGP converged across hosts: every node holds the other 8 slices" in r.stderr
        # each host holds its own part only: 3 nodes + the underlay, the tunnel port inside the underlay
        for n in hosts.names:
            ns = hosts.host_run(n, ["ip", "netns", "list"]).stdout
            assert sum(1 for line in ns.splitlines() if f"mult-{routing}-node-" in line) == 3, (n, ns)
            link = hosts.host_run(n, ["ip", "-n", f"mult-{routing}-underlay", "-d", "link", "show", "stretch0"]).stdout
            assert "vxlan id" in link and "dstport 14790" in link and "master lan0" in link and "mtu 1450" in link
            fdb = hosts.host_run(n, ["bridge", "-n", f"mult-{routing}-underlay", "fdb", "show", "dev",
                                     "stretch0"]).stdout
            assert sum(1 for line in fdb.splitlines() if line.startswith("00:00:00:00:00:00")) == 2, fdb
            assert not hosts.host_run(n, ["ip", "-o", "link", "show", "type", "vxlan"]).stdout.strip()
            # the underlay is a switch: no netfilter on its frames, UDP GRO forwarding on the stretch's port
            tuned = hosts.host_run(n, ["ip", "netns", "exec", f"mult-{routing}-underlay", "env", f"PYTHONPATH={ROOT}",
                                       PY, "-c", FEATURES]).stdout.split()
            assert tuned == ["True", "0", "0", "0"], (n, tuned)
        nodes = json.loads(ctl(hosts, "get", "nodes", "-o", "json").stdout)["items"]
        assert {(x["name"], x["status"]) for x in nodes} == {(f"node-{i}", "Ready") for i in range(1, 10)}
        assert {x["host"] for x in nodes} == set(hosts.names)
        r = ctl(hosts, "check")
        assert r.returncode == 0, r.stdout + r.stderr
        assert "pod-to-pod: 81/81 pairs answer" in r.stdout and "PASS" in r.stdout
        r = ctl(hosts, "exec", "web-1", "--", "curl", "-s", "10.244.9.2:8080/clientip")
        assert r.returncode == 0 and r.stdout.startswith("10.244.1.2:"), r.stdout + r.stderr
        if routing == "vxlan":
            pod_mtu = hosts.host_run("mult1", ["ip", "netns", "exec", f"mult-{routing}-web-1", "cat",
                                               "/sys/class/net/eth0/mtu"]).stdout.strip()
            assert pod_mtu == "1400"
    finally:
        d = ctl(hosts, "down", f"mult-{routing}")
    assert d.returncode == 0 and "removed from hosts mult1, mult2, mult3" in d.stdout, d.stdout + d.stderr
    assert host_leftovers(hosts) == {} and controller_records(hosts) == []


def test_controller_is_one_of_the_hosts(hosts: EmulatedHosts, inventory: Path, tmp_path: Path) -> None:
    """As in the Vagrant setup: podlab runs on mult1 and drives mult1 (over SSH to itself), mult2 and mult3."""
    topo = topology(tmp_path / "t.yaml", "mult-self", nodes=3)
    run = ["env", f"PYTHONPATH={ROOT}", PY, "-m", "emulator"]
    r = hosts.host_run("mult1", [*run, "up", str(topo), "--hosts", str(inventory)])
    try:
        assert r.returncode == 0, r.stderr
        c = hosts.host_run("mult1", [*run, "check"])
        assert c.returncode == 0 and "pod-to-pod: 9/9 pairs answer" in c.stdout, c.stdout + c.stderr
    finally:
        d = hosts.host_run("mult1", [*run, "down"])
    assert d.returncode == 0 and "removed from hosts mult1, mult2, mult3" in d.stdout, d.stdout + d.stderr
    assert host_leftovers(hosts) == {}
    assert not hosts.host_run("mult1", ["ls", "/run/podlab/multihost"]).stdout.strip()


def test_unreachable_host_refused_nothing_created(hosts: EmulatedHosts, tmp_path: Path) -> None:
    inv = hosts.inventory(COMMAND)
    data = json.loads(inv.read_text())
    data["hosts"].append({**data["hosts"][0], "name": "gone", "address": "192.168.57.99"})
    inv.write_text(json.dumps(data))
    r = ctl(hosts, "up", str(topology(tmp_path / "t.yaml", "mult-unr")), "--hosts", str(inv))
    assert r.returncode == 1 and "host gone" in r.stderr and "unreachable" in r.stderr and "fix:" in r.stderr
    assert host_leftovers(hosts) == {} and controller_records(hosts) == []
    r = ctl(hosts, "host", "check", "--hosts", str(inv))
    assert r.returncode == 1 and r.stdout.count(" ok") == 3 and "gone" in r.stdout


def test_version_mismatch_refused(hosts: EmulatedHosts, tmp_path: Path) -> None:
    old = tmp_path / "old"
    shutil.copytree(ROOT / "emulator", old / "emulator", ignore=shutil.ignore_patterns("__pycache__"))
    init = old / "emulator" / "__init__.py"
    init.write_text(init.read_text().replace('__version__ = "', '__version__ = "0.0.9-'))
    inv = hosts.inventory(COMMAND, extra={"mult3": {"command": f"env PYTHONPATH={old} {PY} -m emulator"}})
    r = ctl(hosts, "up", str(topology(tmp_path / "t.yaml", "mult-ver")), "--hosts", str(inv))
    assert r.returncode == 1 and "host mult3 runs podlab 0.0.9-" in r.stderr and "fix:" in r.stderr, r.stderr
    assert host_leftovers(hosts) == {} and controller_records(hosts) == []


def test_missing_sudo_refused(hosts: EmulatedHosts, tmp_path: Path) -> None:
    inv = hosts.inventory(COMMAND, extra={"mult2": {"user": "student"}})
    r = ctl(hosts, "up", str(topology(tmp_path / "t.yaml", "mult-sudo")), "--hosts", str(inv))
    assert r.returncode == 1 and "host mult2: user student cannot run podlab as root" in r.stderr, r.stderr
    assert "NOPASSWD" in r.stderr
    assert host_leftovers(hosts) == {} and controller_records(hosts) == []


def test_mtu_the_nics_cannot_carry_refused(hosts: EmulatedHosts, inventory: Path, tmp_path: Path) -> None:
    r = ctl(hosts, "up", str(topology(tmp_path / "t.yaml", "mult-mtu", mtu=1500)), "--hosts", str(inventory))
    assert r.returncode == 1 and "interface eth1 has MTU 1500" in r.stderr and "mtu: 1450" in r.stderr, r.stderr
    assert host_leftovers(hosts) == {} and controller_records(hosts) == []


def test_mtu_the_path_cannot_carry_is_found_by_the_df_ping(hosts: EmulatedHosts, inventory: Path,
                                                           tmp_path: Path) -> None:
    """The NICs say 1500 but the switch port to mult3 carries 1400: the proof fails, everything is removed."""
    hosts.set_port_mtu("mult3", 1400)
    try:
        r = ctl(hosts, "up", str(topology(tmp_path / "t.yaml", "mult-path", nodes=3)), "--hosts", str(inventory))
    finally:
        hosts.set_port_mtu("mult3", hosts.mtu)
    assert r.returncode == 1 and "don't-fragment ping of 1422 bytes" in r.stderr and "mult3" in r.stderr, r.stderr
    assert host_leftovers(hosts) == {} and controller_records(hosts) == []


def test_host_away_at_down_then_cleanup_finishes(hosts: EmulatedHosts, inventory: Path, tmp_path: Path) -> None:
    r = ctl(hosts, "up", str(topology(tmp_path / "t.yaml", "mult-away", nodes=3)), "--hosts", str(inventory))
    assert r.returncode == 0, r.stderr
    hosts.set_port_up("mult2", False)
    try:
        d = ctl(hosts, "down", "mult-away")
        assert d.returncode == 1 and "NOT from unreachable mult2" in d.stdout, d.stdout + d.stderr
        assert host_leftovers(hosts, ["mult1", "mult3"]) == {}
        assert host_leftovers(hosts, ["mult2"], wait=0)  # its part is still there, and still listed
        assert controller_records(hosts) == ["mult-away.json"]
    finally:
        hosts.set_port_up("mult2", True)
    c = ctl(hosts, "cleanup")
    assert c.returncode == 0 and "lab mult-away removed from hosts mult2" in c.stdout, c.stdout + c.stderr
    assert host_leftovers(hosts) == {} and controller_records(hosts) == []


def test_killed_host_nodes_not_ready_and_down_reports_it(tmp_path: Path) -> None:
    with EmulatedHosts(3) as hs:
        inv = hs.inventory(COMMAND)
        r = ctl(hs, "up", str(topology(tmp_path / "t.yaml", "mult-kill")), "--hosts", str(inv))
        assert r.returncode == 0, r.stderr
        hs.kill_host("mult3")
        nodes = json.loads(ctl(hs, "get", "nodes", "-o", "json").stdout)["items"]
        status = {x["name"]: x["status"] for x in nodes}
        assert {n for n, s in status.items() if s == "NotReady"} == {"node-3", "node-6", "node-9"}, status
        assert {n for n, s in status.items() if s == "Ready"} == {f"node-{i}" for i in (1, 2, 4, 5, 7, 8)}
        d = ctl(hs, "down", "mult-kill")
        assert d.returncode == 1 and "NOT from unreachable mult3" in d.stdout and "host mult3" in d.stderr
        assert host_leftovers(hs, ["mult1", "mult2"]) == {}
        ls = ctl(hs, "host", "ls").stdout
        assert "mult-kill" in ls and "mult3" in ls.split("mult-kill")[1]  # still listed: its part may come back


def test_capture_across_hosts_merges_one_pcapng(hosts: EmulatedHosts, inventory: Path, tmp_path: Path) -> None:
    """A ping from web-1 (mult1) to web-2 (mult2), captured at web-1, node-2's flannel.1 and web-2: each host
    captures its own points, the controller writes one pcapng whose interfaces carry the host, in time order."""
    r = ctl(hosts, "up", str(topology(tmp_path / "t.yaml", "mult-cap", nodes=3)), "--hosts", str(inventory))
    out = tmp_path / "cap.pcapng"
    try:
        assert r.returncode == 0, r.stderr
        ip2 = next(p["ip"] for p in json.loads(ctl(hosts, "get", "pods", "-o", "json").stdout)["items"]
                   if p["name"] == "web-2")
        cap = subprocess.Popen(hosts.controller_argv(["env", f"PYTHONPATH={ROOT}", PY, "-m", "emulator", "capture",
                                                      "web-1", "node-2:flannel.1", "web-2", "--filter", "icmp",
                                                      "-c", "2", "-d", "30", "-w", str(out)]),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        try:
            assert cap.stderr is not None
            started: set[str] = set()
            deadline = time.monotonic() + 60
            while started != {"mult1", "mult2"} and time.monotonic() < deadline:
                line = cap.stderr.readline()
                assert line, "capture ended before every host said it was capturing"
                if ": capturing on " in line:
                    started.add(line.split(":")[1].strip())
            p = ctl(hosts, "exec", "web-1", "--", "ping", "-c", "1", "-W", "5", ip2)
            assert p.returncode == 0, p.stdout + p.stderr
            stdout, stderr = cap.communicate(timeout=60)
        finally:
            if cap.poll() is None:
                cap.kill()
                cap.wait()
        assert cap.returncode == 0, stderr
        assert "6 packets (mult1/web-1:eth0 2, mult2/node-2:flannel.1 2, mult2/web-2:eth0 2)" in stdout, stdout
        assert "clock offsets against the controller" in stdout and "mult1 " in stdout and "mult2 " in stdout
        rows = subprocess.run(["tshark", "-r", str(out), "-T", "fields", "-e", "frame.interface_name", "-e",
                               "icmp.type"], capture_output=True, text=True, check=True).stdout.split("\n")
        seen = [tuple(row.split("\t")) for row in rows if row.strip()]
        # the request leaves web-1, crosses node-2's flannel.1 and reaches web-2; the reply goes back
        assert seen == [("mult1/web-1:eth0", "8"), ("mult2/node-2:flannel.1", "8"), ("mult2/web-2:eth0", "8"),
                        ("mult2/web-2:eth0", "0"), ("mult2/node-2:flannel.1", "0"), ("mult1/web-1:eth0", "0")], seen
        descr = subprocess.run(["tshark", "-r", str(out), "-c", "1", "-T", "fields", "-e",
                                "frame.interface_description"], capture_output=True, text=True).stdout
        assert "host mult1" in descr, descr
    finally:
        d = ctl(hosts, "down", "mult-cap")
    assert d.returncode == 0, d.stdout + d.stderr
    assert host_leftovers(hosts) == {} and controller_records(hosts) == []

