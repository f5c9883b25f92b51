"""podlab's pytest plugin without a lab: how the marker and ``lab_fixture`` parametrize tests, seen by collecting a
user's test files in a fresh pytest, which loads the plugin through its entry point as a user's does
(collection builds nothing, so this needs no root)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

MARKED = '''
import pytest

pytestmark = pytest.mark.podlab(topology="lab.yaml", routing=["vxlan", "host-gw", "bgp"])


def test_flat(podlab_lab):
    pass


@pytest.mark.podlab(topology="lab.yaml")
def test_file_mode(podlab_lab):
    pass
'''

FACTORY = '''
from emulator.pytest_plugin import lab_fixture

TEXT = "version: 1\\nname: x\\nnodes: [{name: n1}]\\n"
one = lab_fixture(TEXT, "host-gw", name="one")
modes = lab_fixture(TEXT, ["vxlan", "bgp"], name="modes")
labs = lab_fixture({"a-iptables": (TEXT, "vxlan"), "b-nftables": (TEXT, "host-gw")}, name="labs")


def test_one(one):
    pass


def test_modes(modes):
    pass


def test_labs(labs):
    pass
'''


def collect(tmp_path: Path) -> list[str]:
    (tmp_path / "lab.yaml").write_text("version: 1\nname: x\nnodes: [{name: n1}]\n")
    (tmp_path / "test_marked.py").write_text(MARKED)
    (tmp_path / "test_factory.py").write_text(FACTORY)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
    argv = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", str(tmp_path)]
    r = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return sorted(line.split("::", 1)[1] for line in r.stdout.splitlines() if "::" in line)


def test_one_test_per_routing_mode_and_lab(tmp_path: Path) -> None:
    assert collect(tmp_path) == sorted([
        "test_flat[vxlan]", "test_flat[host-gw]", "test_flat[bgp]", "test_file_mode[file]",
        "test_one", "test_modes[vxlan]", "test_modes[bgp]", "test_labs[a-iptables]", "test_labs[b-nftables]"])
