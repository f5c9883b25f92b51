"""`podlab check <example> --routing all` passes on the shipped example topologies, in every routing mode.

Each distinct cluster is checked once per mode: ``demo.yaml`` and ``services-demo.yaml`` here (the second with
its Service, DNS and SNAT checks). ``vxlan-3node.yaml``, ``hostgw-3node.yaml`` and ``bgp-3node.yaml`` are one
cluster that differs only in its mode (a unit test holds them to that); test_core_lab brings it up in every mode.
"""
from __future__ import annotations

import json

import pytest

from tests.integration.conftest import TOPOLOGIES, podlab

EXAMPLES = ["demo", "services-demo"]
MODEL = {"unique-pod-ips", "pod-to-pod", "no-nat", "path-mtu", "node-to-pod"}
SERVICES = {"service-clusterip", "service-nodeport", "cluster-dns", "snat-to-external"}


@pytest.mark.parametrize("example", EXAMPLES)
def test_example_passes_in_every_routing_mode(example: str) -> None:
    r = podlab("check", str(TOPOLOGIES / f"{example}.yaml"), "--routing", "all", "-o", "json", timeout=300)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    report = json.loads(r.stdout)
    assert report["ok"] and [m["routing"] for m in report["modes"]] == ["vxlan", "host-gw", "bgp"]
    for mode in report["modes"]:
        passed = {c["name"] for c in mode["checks"] if c["status"] == "PASS"}
        assert MODEL | (SERVICES if example == "services-demo" else set()) <= passed, (mode["routing"], passed)
