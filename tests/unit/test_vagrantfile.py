"""The Vagrantfile: single VM by default, PODLAB_HOSTS=N machines on 192.168.57.0/24 (`vagrant validate -p`
mocks the providers, so no VirtualBox, libvirt or box is needed; skipped where vagrant is not installed)."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_multi_machine_layout_in_the_file() -> None:
    text = (ROOT / "Vagrantfile").read_text()
    assert 'ENV["PODLAB_HOSTS"]' in text and "192.168.57.#{10 + i}" in text and "setup.sh --no-demo" in text
    assert "192.168.56." not in text.replace("192.168.56.0/24", "")  # never on the emulated underlay's range


@pytest.mark.skipif(shutil.which("vagrant") is None, reason="vagrant is not installed")
@pytest.mark.parametrize("hosts", ["", "3"])
def test_vagrant_validate(tmp_path: Path, hosts: str) -> None:
    shutil.copy(ROOT / "Vagrantfile", tmp_path / "Vagrantfile")
    env = {**os.environ, "PODLAB_HOSTS": hosts, "VAGRANT_HOME": str(tmp_path / "home")}
    r = subprocess.run(["vagrant", "validate", "-p"], cwd=tmp_path, capture_output=True, text=True, env=env,
                       timeout=120)
    assert r.returncode == 0 and "validated successfully" in r.stdout, r.stdout + r.stderr
    if hosts:
        known = (tmp_path / ".vagrant" / "podlab-hosts" / "known_hosts").read_text().splitlines()
        assert [line.split()[0] for line in known] == ["192.168.57.11", "192.168.57.12", "192.168.57.13"]
