"""podlab's pytest plugin (entry point ``pytest11``): real pod-network labs as fixtures, per routing mode.

    import pytest

    @pytest.mark.podlab(topology="topologies/vxlan-3node.yaml", routing=["vxlan", "host-gw", "bgp"])
    def test_flat_network(podlab_lab):
        podlab_lab.assert_reachable("web-1", "web-4")
        podlab_lab.assert_no_nat("web-1", "web-4")

``podlab_lab`` brings the topology up once per module and routing mode (tests of a module that share the
topology and mode share the lab) and tears it down at the end of the module, even when tests fail. A test marked
with several modes runs once per mode (ids ``[vxlan]``, ``[host-gw]``, ...). The topology path is taken relative
to the test file's directory, then to the rootdir. Needs root; without it the tests are skipped with the reason.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from emulator.testing import LabUnderTest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "podlab(topology, routing=None): run the test against a podlab lab "
                                       "built from `topology`, once per routing mode listed")


def _resolve(topology: str, test_file: Path, rootdir: Path) -> str:
    for base in (test_file.parent, rootdir, Path.cwd()):
        p = (base / topology)
        if p.exists():
            return str(p)
    raise pytest.UsageError(f"podlab marker: topology file {topology!r} not found next to {test_file} or in "
                            f"{rootdir}")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "podlab_lab" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("podlab")
    if marker is None:
        raise pytest.UsageError(f"{metafunc.definition.nodeid} uses podlab_lab without @pytest.mark.podlab("
                                "topology=...)")
    topology = marker.kwargs.get("topology") or (marker.args[0] if marker.args else None)
    if not topology:
        raise pytest.UsageError("@pytest.mark.podlab needs topology=PATH")
    modes = marker.kwargs.get("routing")
    modes = [modes] if isinstance(modes, str) else list(modes or [None])
    path = _resolve(topology, Path(str(metafunc.definition.fspath)), Path(str(metafunc.config.rootpath)))
    metafunc.parametrize("podlab_lab", [(path, m) for m in modes], indirect=True,
                         ids=[m or "file" for m in modes], scope="module")


@pytest.fixture(scope="module")
def podlab_lab(request: pytest.FixtureRequest):
    if os.geteuid() != 0:
        pytest.skip("podlab labs need root (network namespaces)")
    path, mode = request.param
    if mode == "bgp":
        from emulator import routing
        from emulator.errors import MissingDependencyError
        try:
            routing.get("bgp").check_available()
        except MissingDependencyError as e:
            pytest.skip(str(e))
    lab = LabUnderTest.up(path, routing=mode)
    try:
        yield lab
    finally:
        lab.down()
