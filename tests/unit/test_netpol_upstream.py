"""The engine reproduces every truth table of the upstream e2e suite (TCP, UDP and SCTP cases) on the 9-pod
x/y/z × a/b/c model, step by step (policy updates, deletions, pod and namespace label changes)."""
from __future__ import annotations

import pytest

from emulator.netpol import engine, upstream
from emulator.netpol.engine import Cluster


def model() -> tuple[Cluster, dict[str, str]]:
    return upstream.model_cluster()


def run(case: upstream.Case) -> list[str]:
    cluster, ips = model()
    failures = []
    for k, step in enumerate(case.steps):
        upstream.apply_step(cluster, step, ips)
        for probe in step.probes:
            want = probe.table()
            got = engine.table(cluster, probe.port, probe.protocol)
            diff = [(f, t) for f, t in want.differences(got) if f != t]  # loopback is not probed upstream
            if diff:
                failures.append(f"step {k} {probe.port}/{probe.protocol}: {diff}\nexpected:\n{want.pretty()}\n"
                                f"computed:\n{got.pretty(marks=set(diff))}")
    return failures


@pytest.mark.parametrize("case", upstream.CASES, ids=lambda c: f"{c.number:02d}")
def test_upstream_case(case: upstream.Case) -> None:
    assert not run(case), "\n".join(run(case))


def test_every_case_is_encoded() -> None:
    numbers = [c.number for c in upstream.CASES]
    assert numbers == list(range(1, 49))
    assert {c.number for c in upstream.CASES if "UDP" in c.probed_protocols} == {30, 43, 44, 45}
    assert {c.number for c in upstream.CASES if c.probed_protocols == {"SCTP"}} == {46, 47, 48}


def test_sctp_only_policies_still_isolate_for_tcp() -> None:
    """#38/#39: an SCTP rule opens nothing for TCP, yet selects (isolates) the pod."""
    cluster, ips = model()
    upstream.apply_step(cluster, upstream.case(39).steps[0], ips)
    t = engine.table(cluster, 80, "TCP")
    assert not any(t.get(f, "x/a") for f in upstream.REFS)
    sctp = engine.table(cluster, 80, "SCTP")
    assert all(sctp.get(f, "x/a") for f in upstream.REFS)


def test_pretty_print_is_the_upstream_shape() -> None:
    cluster, ips = model()
    upstream.apply_step(cluster, upstream.case(3).steps[0], ips)
    text = engine.table(cluster, 80).pretty()
    lines = text.splitlines()
    assert lines[0].split() == ["-", *upstream.REFS]
    assert lines[1].split() == ["x/a", "X", ".", ".", ".", ".", ".", ".", ".", "."]
    assert lines[2].split() == ["x/b", "."] + ["."] * 8
