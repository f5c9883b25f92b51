"""Issue 7 acceptance: `podlab check <example> --routing all` passes on every shipped example topology."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.integration.conftest import PODLAB, ROOT

EXAMPLES = sorted((ROOT / "topologies").glob("*.yaml"))


@pytest.mark.parametrize("topology", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_passes_in_every_routing_mode(topology: Path) -> None:
    r = subprocess.run([*PODLAB, "check", str(topology), "--routing", "all", "-o", "json"], capture_output=True,
                       text=True, timeout=300)
    report = json.loads(r.stdout)
    assert r.returncode == 0 and report["ok"], r.stdout[-4000:] + r.stderr[-2000:]
    assert [m["routing"] for m in report["modes"]] == ["vxlan", "host-gw", "bgp"]
    for mode in report["modes"]:
        names = {c["name"] for c in mode["checks"] if c["status"] == "PASS"}
        assert {"unique-pod-ips", "pod-to-pod", "no-nat", "path-mtu", "node-to-pod"} <= names
        if "services" in topology.stem:
            assert {"service-clusterip", "service-nodeport", "cluster-dns", "snat-to-external"} <= names
