"""BIRD config rendering, the bgp topology section, the missing-BIRD check and the control-socket client (no root)."""
from __future__ import annotations

import shutil
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from emulator import routing
from emulator.errors import MissingDependencyError, TopologyError
from emulator.routing import bird
from emulator.topology.loader import loads

BASE = """version: 1
name: t
routing: bgp
nodes: [{name: node-1}, {name: node-2}, {name: node-3}]
pods: []
"""


def topo(extra: str = ""):
    return loads(BASE + extra, source="t.yaml")


def conf(t, node: str) -> str:
    return bird.render(t, t.node(node), bird.settings(t))


def neighbors(text: str) -> list[str]:
    return [line.split("neighbor ")[1].split()[0] for line in text.splitlines() if "neighbor " in line]


# -- rendering -------------------------------------------------------------------------------------------------

def test_mesh_config_peers_with_every_other_node_and_announces_only_its_slice() -> None:
    t = topo()
    text = conf(t, "node-1")
    assert "router id 192.168.56.11;" in text
    assert "local 192.168.56.11 as 64512;" in text
    assert neighbors(text) == ["192.168.56.12", "192.168.56.13"]
    assert "protocol bgp Mesh_192_168_56_12 " in text and "protocol bgp Mesh_192_168_56_13 " in text
    assert "route 10.244.1.0/24 unreachable;" in text
    assert "10.244.2.0/24" not in text and "10.244.3.0/24" not in text
    assert 'export where proto = "pod_cidr";' in text
    assert "export where source = RTS_BGP;" in text  # only learned routes reach the kernel


def test_mesh_config_has_lab_timers_direct_and_no_graceful_restart() -> None:
    text = conf(topo(), "node-2")
    for line in ("direct;", "check link on;", "graceful restart off;", "hold time 3;", "startup hold time 3;",
                 "keepalive time 1;", "connect retry time 1;", "error wait time 0, 1;", "persist off;",
                 "connect delay time 0;"):
        assert line in text, line
    assert "rr client" not in text and "rr cluster id" not in text


def test_asn_from_the_topology() -> None:
    text = conf(topo("bgp: {asn: 65010}\n"), "node-3")
    assert "local 192.168.56.13 as 65010;" in text
    assert text.count("as 65010;") == 3  # local + two neighbours


def test_reflector_layout() -> None:
    t = topo("bgp: {mode: reflector, reflectors: [node-2]}\n")
    rr, client = conf(t, "node-2"), conf(t, "node-1")
    assert neighbors(rr) == ["192.168.56.11", "192.168.56.13"]
    assert rr.count("rr client;") == 2 and f"rr cluster id {bird.RR_CLUSTER_ID};" in rr
    assert "export all;" in rr  # reflects what it learned, next hop unchanged (iBGP)
    assert neighbors(client) == ["192.168.56.12"] and "rr client" not in client
    assert "protocol bgp Rr_192_168_56_12 " in client
    assert 'export where proto = "pod_cidr";' in client


def test_two_reflectors_peer_with_each_other_as_non_clients() -> None:
    t = topo("bgp: {mode: reflector, reflectors: [node-1, node-2]}\n")
    p = {x.node: x for x in bird.peers(t, t.node("node-1"), bird.settings(t))}
    assert not p["node-2"].rr_client and p["node-3"].rr_client
    assert [x.node for x in bird.peers(t, t.node("node-3"), bird.settings(t))] == ["node-1", "node-2"]


def test_reflector_defaults_to_the_first_node() -> None:
    s = bird.settings(topo("bgp: {mode: reflector}\n"))
    assert s.mode == "reflector" and s.reflectors == ("node-1",)
    assert bird.settings(topo()) == bird.BgpSettings()


@pytest.mark.skipif(shutil.which("bird", path="/usr/sbin:/usr/bin:/sbin") is None, reason="BIRD not installed")
@pytest.mark.parametrize("extra", ["", "bgp: {mode: reflector}\n", "bgp: {asn: 4200000001}\n"])
def test_bird_accepts_the_rendered_config(tmp_path: Path, extra: str) -> None:
    t = topo(extra)
    for n in t.nodes:
        f = tmp_path / f"{n.name}.conf"
        f.write_text(conf(t, n.name))
        r = subprocess.run([bird.find_bird(), "-p", "-c", str(f)], capture_output=True, text=True)
        assert r.returncode == 0, (n.name, r.stderr)


def test_bgp_mode_installs_no_route_and_keeps_the_managed_scope() -> None:
    t = topo()
    state = routing.get("bgp").node_state(t, t.node("node-1"))
    assert state.routes == () and state.managed_prefixes == ("10.244.0.0/16",)
    assert routing.full_node_state(t, t.node("node-1")).routes == ()


# -- the bgp: section ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("section,field,words", [
    ("bgp: {asm: 1}\n", "bgp.asm", "did you mean 'asn'"),
    ("bgp: {asn: 0}\n", "bgp.asn", "64512"),
    ("bgp: {asn: '64512'}\n", "bgp.asn", "integer"),
    ("bgp: {mode: full}\n", "bgp.mode", "mesh, reflector"),
    ("bgp: {reflectors: [node-1]}\n", "bgp.reflectors", "mode: reflector"),
    ("bgp: {mode: reflector, reflectors: [node-9]}\n", "bgp.reflectors[0]", "known nodes"),
    ("bgp: {mode: reflector, reflectors: [node-1, node-1]}\n", "bgp.reflectors[1]", "twice"),
    ("bgp: {mode: reflector, reflectors: node-1}\n", "bgp.reflectors", "list"),
    ("bgp: [mesh]\n", "bgp", "mapping"),
])
def test_bgp_section_errors_name_the_field(section: str, field: str, words: str) -> None:
    with pytest.raises(TopologyError) as e:
        topo(section)
    assert e.value.field == field and e.value.file == "t.yaml"
    assert words in str(e.value), str(e.value)


def test_bgp_section_is_kept_for_other_modes() -> None:
    t = loads(BASE + "bgp: {asn: 65001}\n", source="t.yaml", routing="vxlan")
    assert t.routing == "vxlan" and dict(t.extra)["bgp"]["asn"] == 65001


# -- missing BIRD ----------------------------------------------------------------------------------------------

def test_missing_bird_names_the_install_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("PODLAB_BIRD", raising=False)
    monkeypatch.setattr(bird, "SEARCH_PATH", ())
    with pytest.raises(MissingDependencyError) as e:
        routing.get("bgp").check_available()
    assert "apt-get install bird2" in str(e.value) and e.value.exit_code == 5


def test_podlab_bird_override_must_be_executable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PODLAB_BIRD", "/nonexistent/bird")
    with pytest.raises(MissingDependencyError, match="apt-get install bird2"):
        bird.find_bird()


# -- control socket --------------------------------------------------------------------------------------------

PROTOCOLS = [
    "2002-Name       Proto      Table      State  Since         Info",
    "1002-device1    Device     ---        up     2026-11-22 05:10:43.175  ",
    " pod_cidr   Static     master4    up     2026-11-22 05:10:43.175  ",
    " kernel1    Kernel     master4    up     2026-11-22 05:10:43.175  ",
    " Mesh_192_168_56_12 BGP        ---        up     2026-11-22 05:10:43.951  Established   ",
    " Mesh_192_168_56_13 BGP        ---        start  2026-11-22 05:15:10.120  Connect       "
    "BGP Error: Hold timer expired",
    "0000 ",
]
ROUTES = [
    "1007-Table master4:",
    " 10.244.2.0/24        unicast [Mesh_192_168_56_12 2026-11-22 05:10:43.992] * (100) [i]",
    " \tvia 192.168.56.12 on eth0",
    " 10.244.3.0/24        unicast [Rr_192_168_56_11 2026-11-22 05:10:44.280] * (100) [i]",
    " \tvia 192.168.56.13 on eth0",
    "0000 ",
]


class FakeBird:
    """A Unix socket server speaking BIRD's reply format, replaying recorded replies."""

    def __init__(self, path: str, replies: dict[str, list[str]]) -> None:
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(path)
        self.srv.listen(1)
        self.replies = replies
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self) -> None:
        conn, _ = self.srv.accept()
        with conn:
            conn.sendall(b"0001 BIRD 2.0.12 ready.\n")
            buf = b""
            while True:
                data = conn.recv(4096)
                if not data:
                    return
                buf += data
                while b"\n" in buf:
                    cmd, buf = buf.split(b"\n", 1)
                    lines = self.replies.get(cmd.decode(), ["9001 syntax error, unexpected CF_SYM_UNDEFINED"])
                    conn.sendall("".join(line + "\n" for line in lines).encode())


def test_client_parses_protocols_and_routes(tmp_path: Path) -> None:
    path = str(tmp_path / "bird.ctl")
    FakeBird(path, {"show protocols": PROTOCOLS, "show route where source = RTS_BGP": ROUTES})
    with bird.BirdClient(path) as c:
        protos = c.protocols()
        routes = c.bgp_routes()
        with pytest.raises(bird.BirdError, match="syntax error"):
            c.command("show nonsense")
    assert [p.name for p in protos] == ["device1", "pod_cidr", "kernel1", "Mesh_192_168_56_12", "Mesh_192_168_56_13"]
    sessions = [p for p in protos if p.proto == "BGP"]
    assert [bird.bgp_state(p) for p in sessions] == ["Established", "Connect"]
    assert sessions[1].info.endswith("Hold timer expired") and sessions[0].since == "2026-11-22 05:10:43.951"
    assert routes == [bird.Route("10.244.2.0/24", "Mesh_192_168_56_12", True, "192.168.56.12", "eth0"),
                      bird.Route("10.244.3.0/24", "Rr_192_168_56_11", True, "192.168.56.13", "eth0")]


def test_client_on_a_dead_socket_says_so(tmp_path: Path) -> None:
    with pytest.raises(bird.BirdError, match="is BIRD running"):
        bird.BirdClient(str(tmp_path / "nothing.ctl"))


def test_since_is_parsed_as_local_time() -> None:
    t = bird.since_epoch("2026-11-22 05:10:43.500")
    assert t is not None and abs(t % 1 - 0.5) < 1e-6
    assert bird.since_epoch("05:10:43") is None
