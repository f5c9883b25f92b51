"""The suite's own selection: ``pytest -m "not integration" tests`` collects the unit tests alone (they need no
root), and what it leaves out is exactly every test under tests/integration. Collection runs in a fresh pytest,
as CI runs it, and as an unprivileged user when this runs as root."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: a plugin for the child pytest: names what ``-m`` left out
REPORTER = '''
import os


def pytest_deselected(items):
    for item in items:
        print("DESELECTED", item.nodeid)


def pytest_collection_finish(session):
    print("EUID", os.geteuid())
'''


def test_not_integration_collects_the_unit_tests_only_and_needs_no_root() -> None:
    with tempfile.TemporaryDirectory() as d:
        os.chmod(d, 0o755)  # readable by the unprivileged child
        Path(d, "deselected_reporter.py").write_text(REPORTER)
        argv = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "-p",
                "deselected_reporter", "-m", "not integration", "tests"]
        drop = os.geteuid() == 0 and shutil.which("setpriv") is not None
        if drop:
            argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *argv]
        env = {**os.environ, "PYTHONPATH": f"{ROOT}:{d}", "PYTHONDONTWRITEBYTECODE": "1"}
        r = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    if drop:
        assert "EUID 65534" in r.stdout.splitlines(), r.stdout[-500:]  # the selection was made without root
    left_out = [line.split()[1] for line in r.stdout.splitlines() if line.startswith("DESELECTED ")]
    selected = [line for line in r.stdout.splitlines() if "::" in line and not line.startswith("DESELECTED ")]
    assert selected and all(i.startswith("tests/unit/") for i in selected), [
        i for i in selected if not i.startswith("tests/unit/")]
    assert any(i.startswith("tests/unit/test_suite_markers.py::") for i in selected)
    assert left_out and all(i.startswith("tests/integration/") for i in left_out), left_out[:5]
    files = {i.split("::")[0] for i in left_out}
    assert files == {str(p.relative_to(ROOT)) for p in (ROOT / "tests/integration").glob("test_*.py")}
