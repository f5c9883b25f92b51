"""Pure parts of the tools: points, trace output, probe and tcpdump commands (the target grammar: test_targets)."""
from __future__ import annotations

from emulator.tools import capture, targets, trace_verify
from emulator.tools.trace_model import Check, Hop, Packet, TraceResult


def test_point_label_and_description() -> None:
    p = targets.Point("node", "node-1", "lab-node-1", "flannel.1", "lab")
    assert p.label == "node-1:flannel.1"
    assert "netns lab-node-1" in p.description and "node node-1" in p.description


def result() -> TraceResult:
    r = TraceResult("lab", "vxlan", "web-1", "web-3", Packet("10.244.1.2", "10.244.2.3"))
    r.hops = [Hop("web-1", "pod", "lab-web-1", "eth0", "route", "route default via 10.244.1.1 dev eth0"),
              Hop("web-1", "pod", "lab-web-1", "eth0", "out", "next hop", [Check("lab-web-1", "eth0", "tx")]),
              Hop("node-1", "node", "lab-node-1", "vethab", "in", "veth peer"),
              Hop("node-1", "node", "lab-node-1", "flannel.1", "vxlan", "VXLAN VNI 1"),
              Hop("node-1", "node", "lab-node-1", "eth0", "out", "outer"),
              Hop("node-2", "node", "lab-node-2", "flannel.1", "decap", "decap"),
              Hop("web-3", "pod", "lab-web-3", "eth0", "deliver", "delivered")]
    r.delivered = True
    return r


def test_path_line_marks_the_tunnel() -> None:
    assert result().path() == "web-1 eth0 → node-1 vethab → flannel.1 ⇒ eth0 → node-2 flannel.1"


def test_lines_and_ok() -> None:
    r = result()
    assert r.ok
    r.hops[1].verified = False
    assert not r.ok
    text = "\n".join(r.lines())
    assert "✗ web-1" in text and text.startswith("trace web-1 → web-3: icmp 10.244.1.2 → 10.244.2.3")
    r.problem = "node-1 has no route to 10.244.2.0/24"
    assert r.lines()[-1] == "PROBLEM: node-1 has no route to 10.244.2.0/24"
    assert r.as_dict()["ok"] is False


def test_probe_commands() -> None:
    assert trace_verify.probe_argv("icmp", "10.0.0.1", None)[:2] == ["ping", "-n"]
    assert trace_verify.probe_argv("tcp", "10.0.0.1", 8080)[-1] == "http://10.0.0.1:8080/"
    assert "/dev/udp/10.0.0.1/53" in trace_verify.probe_argv("udp", "10.0.0.1", 53)[-1]


def test_tcpdump_command() -> None:
    p = targets.Point("pod", "web-1", "lab-web-1", "eth0", "lab")
    argv = capture.tcpdump_argv(p, "icmp or udp port 8472", 2)
    assert argv[:3] == ["nsenter", "--net=/run/netns/lab-web-1", "--"]
    assert argv[3:6] == ["tcpdump", "-i", "eth0"] and "-Z" in argv and argv[-1] == "icmp or udp port 8472"
    assert argv[argv.index("-c") + 1] == "2" and argv[argv.index("-w") + 1] == "-"
