"""The findings of ``pod-to-pod`` and ``no-nat`` carry the trace of the failing pair (no root: the matrix is given
and the tracer is replaced by one returning hand-built results; the integration test traces a real lab)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from emulator.check import core
from emulator.check.context import PodInfo, Result
from emulator.errors import TargetError
from emulator.tools.trace_model import Hop, Packet, TraceResult

PODS = [PodInfo("a", "10.244.1.2", "node-1", "lab-a"), PodInfo("b", "10.244.1.3", "node-1", "lab-b"),
        PodInfo("c", "10.244.2.2", "node-2", "lab-c")]
NODES = [SimpleNamespace(name="node-1", ip="192.168.56.11", pod_cidr="10.244.1.0/24"),
         SimpleNamespace(name="node-2", ip="192.168.56.12", pod_cidr="10.244.2.0/24")]


def ctx(matrix: dict) -> SimpleNamespace:
    """What the two checks read of ``check.context.Context``: pods, matrix (results as the prober's dicts), the
    probe port, the plan's description, whether the neighbour table overflowed, the lab's nodes."""
    return SimpleNamespace(pods=PODS, matrix={k: Result.of(v) for k, v in matrix.items()}, port=41234,
                           overflowed=False, plan=SimpleNamespace(describe=lambda: "every pair"),
                           lab=SimpleNamespace(name="lab", nodes=NODES))


def result(src: str, dst: str, *, delivered: bool, problem: str | None = None, hops: list[Hop] | None = None):
    return TraceResult("lab", "vxlan", src, dst, Packet("10.0.0.1", "10.0.0.2", "tcp", 41234), hops or [],
                       delivered, problem)


@pytest.fixture
def traced(monkeypatch):
    calls: list[tuple] = []
    answers: dict[tuple[str, str], TraceResult] = {}

    def fake(lab, src, dst, proto=None, port=None, **kw):
        calls.append((src, dst, proto, port))
        ans = answers[(src, dst)]
        if isinstance(ans, Exception):
            raise ans
        return ans
    monkeypatch.setattr(core, "trace", fake)
    return calls, answers


def test_pod_to_pod_finding_carries_both_ways_when_the_way_there_is_whole(traced) -> None:
    calls, answers = traced
    answers[("a", "b")] = result("a", "b", delivered=True)
    answers[("b", "a")] = result("b", "a", delivered=False, problem="node-1: port vethx leads to no running pod")
    matrix = {("a", "b"): {"connected": False, "error": "timed out"}, ("b", "a"): {"connected": True}}
    r = core.pod_to_pod(ctx(matrix))
    assert r.status == "FAIL"
    (f,) = r.findings
    assert f.subject == "a → b (10.244.1.3)" and f.observed == "timed out"
    assert f.trace.splitlines()[0].startswith("trace a → b: tcp")
    assert "trace b → a: tcp" in f.trace and f.trace.endswith("PROBLEM: node-1: port vethx leads to no running pod")
    assert calls == [("a", "b", "tcp", 41234), ("b", "a", "tcp", 41234)]


def test_pod_to_pod_finding_stops_at_the_broken_way_there(traced) -> None:
    calls, answers = traced
    answers[("a", "b")] = result("a", "b", delivered=False, problem="node-1 bridge cni0: no port of cni0 leads to x")
    r = core.pod_to_pod(ctx({("a", "b"): {"connected": False}}))
    assert r.findings[0].trace.endswith("PROBLEM: node-1 bridge cni0: no port of cni0 leads to x")
    assert calls == [("a", "b", "tcp", 41234)]


def test_no_nat_finding_carries_the_trace_with_the_snat_hop(traced) -> None:
    calls, answers = traced
    snat = Hop("node-1", "node", "lab-node-1", "flannel.1", "nat",
               "SNAT 10.244.1.2 → 10.244.1.0 (masquerade: the address flannel.1 gives it) by iptables nat POSTROUTING")
    answers[("a", "c")] = result("a", "c", delivered=True, hops=[snat])
    matrix = {("a", "c"): {"connected": True, "seen": "10.244.1.0"}, ("c", "a"): {"connected": True,
                                                                                  "seen": "10.244.2.2"}}
    r = core.no_nat(ctx(matrix))
    (f,) = r.findings
    assert f.culprit.startswith("node-1") and "SNAT 10.244.1.2 → 10.244.1.0" in f.trace
    assert calls == [("a", "c", "tcp", 41234)]


def test_a_trace_that_fails_is_not_swallowed(traced) -> None:
    _, answers = traced
    answers[("a", "b")] = TargetError("pod b has no IP (phase Pending)", obj="b")
    with pytest.raises(TargetError):
        core.pod_to_pod(ctx({("a", "b"): {"connected": False}}))
