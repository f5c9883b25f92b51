"""The built-in portmap plugin's rules (pure): the reference plugin's chains, names and order; DEL finds the pod's
rules by its ID; the kubelet's portMappings from a pod's hostPorts; portmap chained in every conflist."""
from __future__ import annotations

import hashlib

from emulator.agent.pods import capability_args
from emulator.cni import portmap
from emulator.cni.spec import bridge_conflist

CID = "c4ebb3f29a1571d560601f2a27486b44b4c9020c4a2f2ff435ca313c715122d5"


def test_chain_name_is_the_reference_plugins():
    want = ("CNI-DN-" + hashlib.sha512(("cbr0" + CID).encode()).hexdigest())[:28]
    assert portmap.chain_name("cbr0", CID) == want and len(want) == 28


def test_add_rules_and_their_order():
    text = portmap.render_add("cbr0", CID, "10.244.1.2", "10.244.1.0/24", [(8081, 8080, "tcp"), (53, 53, "udp")])
    lines = text.splitlines()
    own = portmap.chain_name("cbr0", CID)
    assert lines[0] == "*nat" and lines[-1] == "COMMIT"
    for line in ("-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT",
                 "-A OUTPUT -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT",
                 '-A POSTROUTING -m comment --comment "CNI portfwd requiring masquerade" -j CNI-HOSTPORT-MASQ',
                 "-A CNI-HOSTPORT-MASQ -m mark --mark 0x2000/0x2000 -j MASQUERADE",
                 f"-A {own} -s 10.244.1.0/24 -p tcp -m tcp --dport 8081 -j CNI-HOSTPORT-SETMARK",
                 f"-A {own} -s 127.0.0.1/32 -p tcp -m tcp --dport 8081 -j CNI-HOSTPORT-SETMARK",
                 f"-A {own} -p tcp -m tcp --dport 8081 -j DNAT --to-destination 10.244.1.2:8080",
                 f"-A {own} -p udp -m udp --dport 53 -j DNAT --to-destination 10.244.1.2:53"):
        assert line in lines, line
    jumps = [l for l in lines if l.startswith("-A CNI-HOSTPORT-DNAT")]
    assert [j.split(" -p ")[1].split()[0] for j in jumps] == ["tcp", "udp"]
    assert f'id: \\"{CID}\\"' in jumps[0] and jumps[0].endswith(f"--dports 8081 -j {own}")


def test_add_again_adds_no_shared_rule_twice_and_keeps_other_pods():
    first = portmap.render_add("cbr0", CID, "10.244.1.2", "10.244.1.0/24", [(8081, 8080, "tcp")])
    save = first.replace(":CNI-HOSTPORT", ":CNI-HOSTPORT")  # what iptables-save would show now
    again = portmap.render_add("cbr0", "other", "10.244.1.3", "10.244.1.0/24", [(9090, 80, "tcp")], save)
    assert ":CNI-HOSTPORT-DNAT" not in again  # not declared, so not flushed: hp-1's jump stays
    assert "-A PREROUTING" not in again and "-A CNI-HOSTPORT-MASQ" not in again
    assert portmap.chain_name("cbr0", "other") in again


def test_del_removes_the_pods_jumps_and_chain_only():
    a = portmap.render_add("cbr0", CID, "10.244.1.2", "10.244.1.0/24", [(8081, 8080, "tcp")])
    b = portmap.render_add("cbr0", "other", "10.244.1.3", "10.244.1.0/24", [(9090, 80, "tcp")], a)
    save = "\n".join(l for l in (a + b).splitlines() if l not in ("COMMIT",)) + "\nCOMMIT\n"
    text = portmap.render_del("cbr0", CID, save)
    own, other = portmap.chain_name("cbr0", CID), portmap.chain_name("cbr0", "other")
    assert f"-X {own}" in text and other not in text
    assert [l for l in text.splitlines() if l.startswith("-D ")] == [
        l.replace("-A", "-D", 1) for l in a.splitlines() if l.startswith("-A CNI-HOSTPORT-DNAT")]
    assert portmap.render_del("cbr0", "gone", save) == ""


def test_kubelet_hands_hostports_as_port_mappings():
    pod = {"metadata": {"name": "p"}, "spec": {"containers": [
        {"name": "c", "ports": [{"containerPort": 8080, "hostPort": 8081, "protocol": "TCP"},
                                {"containerPort": 9000}]}]}}
    assert capability_args(pod) == {"portMappings": [{"hostPort": 8081, "containerPort": 8080, "protocol": "tcp"}]}
    assert capability_args({"metadata": {"name": "q"}, "spec": {"containers": [{"name": "c"}]}}) == {}


def test_portmap_is_chained_in_the_conflist():
    conf = bridge_conflist("cbr0", "cni0", "10.244.1.0/24", 1450, "/x")
    assert [p["type"] for p in conf["plugins"]] == ["bridge", "podlab-link", "portmap"]
    assert conf["plugins"][-1]["capabilities"] == {"portMappings": True}
