"""The pytest plugin works for a user outside this repository: a fresh virtualenv, ``pip install`` of the package,
a test file that uses nothing but the plugin."""
from __future__ import annotations

import os
import subprocess
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

USER_TEST = '''
import pytest

pytestmark = pytest.mark.podlab(topology="lab.yaml", routing=["host-gw"])


def test_my_network(podlab_lab):
    podlab_lab.assert_reachable("a", "b")
    podlab_lab.assert_no_nat("a", "b")
'''

USER_LAB = """
version: 1
name: mylab
nodes: [{name: n1}, {name: n2}]
pods: [{name: a, node: n1}, {name: b, node: n2}]
"""


@pytest.mark.skipif(os.environ.get("PODLAB_OFFLINE") == "1", reason="needs the package index for dependencies")
def test_plugin_from_a_fresh_virtualenv(tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    pip = subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(ROOT), "pytest"],
                         capture_output=True, text=True, timeout=600)
    assert pip.returncode == 0, pip.stderr[-2000:]
    user = tmp_path / "user"
    user.mkdir()
    (user / "test_mine.py").write_text(USER_TEST)
    (user / "lab.yaml").write_text(USER_LAB)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTEST_ADDOPTS")}
    run = subprocess.run([str(py), "-m", "pytest", "-q", "-p", "no:cacheprovider", str(user)], cwd=user,
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0 and "1 passed" in run.stdout, run.stdout[-3000:] + run.stderr[-2000:]
    installed = subprocess.run([str(py), "-c", "import emulator; print(emulator.__file__)"], capture_output=True,
                               text=True, cwd=user, env=env).stdout
    assert str(env_dir) in installed  # the installed copy, not this checkout
