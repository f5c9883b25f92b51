"""The suite's own selection: ``-m "not integration"`` collects the unit tests alone (they need no root), and
``-m integration`` collects exactly the tests under tests/integration. Collection runs in a fresh pytest, as CI
runs it, and as an unprivileged user when this runs as root."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def collected(marker: str, as_nobody: bool = False) -> list[str]:
    argv = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "-m", marker, "tests"]
    if as_nobody:
        argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *argv]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
    r = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return [line for line in r.stdout.splitlines() if "::" in line]


def test_not_integration_collects_the_unit_tests_only_and_needs_no_root() -> None:
    unprivileged = os.geteuid() == 0 and shutil.which("setpriv") is not None
    ids = collected("not integration", as_nobody=unprivileged)
    assert ids and all(i.startswith("tests/unit/") for i in ids), [i for i in ids if not i.startswith("tests/unit/")]
    assert any(i.startswith("tests/unit/test_suite_markers.py::") for i in ids)


def test_integration_marker_selects_every_integration_test() -> None:
    ids = collected("integration")
    assert ids and all(i.startswith("tests/integration/") for i in ids), ids[:5]
    files = {i.split("::")[0] for i in ids}
    assert files == {str(p.relative_to(ROOT)) for p in (ROOT / "tests/integration").glob("test_*.py")}
