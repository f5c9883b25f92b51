"""NetworkPolicy: the upstream e2e NetworkPolicy suite's TCP and UDP cases on real namespaces.

One lab per routing mode for the module (vxlan with kube-proxy in iptables mode, host-gw with nftables, bgp with
iptables), holding the suite's model: namespaces x/y/z, pods a/b/c of each on node-1/2/3 (so every case has
same-node and cross-node pairs), serving 80 and 81 over TCP and UDP, one Service per pod. Every case runs its
steps on that one lab (policies created, updated, deleted; pod and namespace labels added), waits until every
node's enforcer has applied the step, and probes the full 9×9 matrix through the pod IPs and through each pod's
ClusterIP, all at once, against the suite's own expected table (not one computed by podlab). Between cases the
policies and added labels are removed again, so the lab is never rebuilt.
"""
from __future__ import annotations

import pytest

from emulator.lab.api import Lab
from emulator.netpol import cluster, component, kernel, matrix, names, nodestate, upstream
from emulator.netpol.parse import parse_manifest
from emulator.netpol.truthtable import TruthTable
from tests.integration.conftest import lab_fixture

MODES = [("vxlan", "iptables"), ("host-gw", "nftables"), ("bgp", "iptables")]
CASES = [c for c in upstream.CASES if c.probed_protocols <= {"TCP", "UDP"}]
ADDED_POD_LABELS = ("pod2", "target")
ADDED_NS_LABELS = ("ns2",)


def model_pods(lab: Lab) -> list:
    """The model's pods (x/y/z × a/b/c), not the cluster's own (the coredns pods of kube-system), as upstream's
    suite probes only its model."""
    return [p for p in matrix.pods_of(matrix.cluster_of(lab)) if p.namespace in upstream.NAMESPACES]


def model_ips(lab: Lab) -> dict[str, str]:
    return {f"{p.namespace}/{dict(p.labels)['pod']}": p.ip for p in model_pods(lab)}


def sync(lab: Lab) -> None:
    component.wait_synced(lab.paths, lab.store, [n.name for n in lab.nodes])


def reset(lab: Lab) -> None:
    cluster.delete_all_policies(lab.store)
    for m in list(lab.store.list("pods")):
        labels = m["metadata"].get("labels") or {}
        if any(k in labels for k in ADDED_POD_LABELS):
            cluster.set_pod_labels(lab.store, m["metadata"]["name"], dict.fromkeys(ADDED_POD_LABELS),
                                   m["metadata"]["namespace"])
    for m in list(lab.store.list(cluster.NAMESPACES)):
        if any(k in (m["metadata"].get("labels") or {}) for k in ADDED_NS_LABELS):
            cluster.set_namespace_labels(lab.store, m["metadata"]["name"], dict.fromkeys(ADDED_NS_LABELS))
    sync(lab)


def serving(lab: Lab) -> None:
    """Every pod answers every port with no policy in place (a Running pod's servers bind a moment later)."""
    pods = model_pods(lab)
    want = TruthTable.filled([p.ref for p in pods], [p.ref for p in pods], True)
    jobs = [matrix.Job(matrix.PortSpec(port, proto), "pod", want) for port in upstream.PORTS
            for proto in upstream.PROTOCOLS]
    for _ in range(10):
        if not any(want.differences(got) for got, _ in matrix.measure_many(lab, pods, jobs)):
            return
    pytest.fail("the model's servers never all answered with no policy in place")


lab = lab_fixture({f"{routing}-{mode}": (upstream.topology(routing=routing, proxy_mode=mode), routing)
                   for routing, mode in MODES}, ready=serving)


def run_case(lab: Lab, case: upstream.Case) -> list[str]:
    ips = model_ips(lab)
    pods = model_pods(lab)
    failures = []
    for k, step in enumerate(case.steps):
        if "*" in step.delete:
            cluster.delete_all_policies(lab.store)
        for ref in (r for r in step.delete if r != "*"):
            ns, name = ref.split("/")
            cluster.delete_policy(lab.store, ns, name)
        for m in step.put:
            cluster.put_policy(lab.store, parse_manifest(upstream.resolve(m, ips), f"case {case.number}"))
        for ref, labels in step.pod_labels:
            cluster.set_pod_labels(lab.store, upstream.lab_pod_name(*ref.split("/")), dict(labels))  # x/a
        for ns, labels in step.ns_labels:
            cluster.set_namespace_labels(lab.store, ns, dict(labels))
        sync(lab)  # live on every node before the probes
        jobs = [matrix.Job(matrix.PortSpec(p.port, p.protocol), via, p.table())
                for p in step.probes for via in ("pod", "service")]
        for job, (got, details) in zip(jobs, matrix.converge_many(lab, pods, jobs)):
            assert job.want is not None
            measured = sum(v is not None for v in got.values.values())
            assert measured == 72, f"{measured} cells probed via {job.via}"
            diff = job.want.differences(got)
            if diff:
                failures.append(
                    f"case {case.number} step {k} {job.spec} via {job.via}: {len(diff)} cells differ "
                    f"{[(f, t, details[(f, t)].detail) for f, t in diff]}\nexpected:\n{job.want.pretty('  ')}\n"
                    f"observed:\n{got.pretty('  ', set(diff))}")
    return failures


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.number:02d}")
def test_upstream_case(lab: Lab, case: upstream.Case) -> None:
    reset(lab)
    failures = run_case(lab, case)
    assert not failures, f"{case.title}:\n" + "\n".join(failures)


def test_every_node_enforces_only_its_pods(lab: Lab) -> None:
    """After the cases: the table on each node names only its own pods (kube-network-policies' podips-v4)."""
    reset(lab)
    cluster.put_policy(lab.store, parse_manifest(upstream.policy("deny-all", ingress=[], egress=[])))
    sync(lab)
    c = matrix.cluster_of(lab)
    for n in lab.nodes:
        kt = kernel.read(lab, n.name)
        mine = {p.ip for p in c.pods if p.node == n.name and p.namespace == "x"}
        assert kt.sets[names.PODIPS] == mine
        assert kernel.differences(kt, nodestate.build(c, n.name)) == []
    reset(lab)
