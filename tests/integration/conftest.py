"""Integration fixtures: real labs on real namespaces, always torn down, and a leftover check for the session.

Every lab a test builds gets a name from ``unique_name`` (``<prefix><pid>x<n>``: this session's tag) and is
downed when the test ends, pass or fail. The session fixture then looks for anything of *this session* left on
the machine — labs and namespaces carrying its tag, and any new interface in the root namespace — and fails the
run if it finds some (after removing leftover labs through their records). Labs of other sessions running on
the same machine at the same time are never touched.
"""
from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Callable, Iterator

import pytest

from emulator.state import record
from emulator.lab import teardown
from emulator.lab.api import Lab
from emulator.netlink import netns
from emulator.topology.loader import load, loads

ROOT = Path(__file__).resolve().parents[2]
#: The CLI of the code under test (not whatever `podlab` comes first in PATH).
PODLAB = [sys.executable, "-m", "emulator"]
TOPOLOGIES = ROOT / "topologies"
_counter = itertools.count(1)
SESSION_TAG = f"{os.getpid() % 100000}x"
_OURS = re.compile(rf"^[a-z]+{SESSION_TAG}\d+(-|$)")

pytestmark = pytest.mark.integration
#: Every lab merges a kubectl context into $KUBECONFIG (else ~/.kube/config): the test session gets a file of its
#: own, so the machine's kubeconfig is never touched by the tests.
KUBECONFIG = os.environ.setdefault("KUBECONFIG", f"/tmp/podlab-tests-{os.getpid()}.kubeconfig")


def pytest_collection_modifyitems(config, items):
    if os.geteuid() != 0:
        skip = pytest.mark.skip(reason="integration tests build network namespaces: run as root")
        for item in items:
            if "integration" in str(item.fspath):
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


def unique_name(prefix: str = "t") -> str:
    """A lab name tagged with this test session (never a name another session would use)."""
    return f"{prefix}{SESSION_TAG}{next(_counter)}"


@pytest.fixture
def make_lab() -> Iterator[Callable[..., Lab]]:
    """make_lab(text_or_path, routing=None, name=None) -> Lab, removed at the end of the test."""
    made: list[str] = []

    def make(source: str | Path, routing: str | None = None, name: str | None = None, **kw) -> Lab:
        name = name or unique_name()
        made.append(name)
        if isinstance(source, Path) or (isinstance(source, str) and source.endswith(".yaml")):
            topo = load(source, name=name, routing=routing)
        else:
            topo = loads(source, source="<test>", name=name, routing=routing)
        return Lab.up(topo, **kw)

    yield make
    for name in made:
        teardown.destroy(name)


def three_node_text(pods_per_node: int = 2, image: str = "netexec") -> str:
    lines = ["version: 1", "name: x", "nodes:", "  - name: node-1", "  - name: node-2", "  - name: node-3", "pods:"]
    for n in (1, 2, 3):
        for i in range(1, pods_per_node + 1):
            lines += [f"  - name: p{n}-{i}", f"    node: node-{n}", "    labels: {app: net}", "    containers:",
                      f"      - {{name: c, image: {image}, ports: [{{containerPort: 8080}}]}}"]
    return "\n".join(lines) + "\n"
