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

A module that wants its lab under its own fixture name, from YAML text, or made ready in its own way (every
netexec answering, say) declares it with ``lab_fixture``; it is the same fixture as ``podlab_lab``::

    from emulator.pytest_plugin import lab_fixture

    lab = lab_fixture(TOPOLOGY_TEXT, routing=["vxlan", "host-gw"], ready=lambda lab: lab.wait_serving())

    def test_something(lab): ...
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

import pytest

from emulator.testing import LabUnderTest

Ready = Callable[[LabUnderTest], object]


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


def _modes(routing: str | Sequence[str] | None) -> list[str | None]:
    return [routing] if isinstance(routing, str) or routing is None else list(routing)


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
    modes = _modes(marker.kwargs.get("routing"))
    path = _resolve(topology, Path(str(metafunc.definition.fspath)), Path(str(metafunc.config.rootpath)))
    metafunc.parametrize("podlab_lab", [(path, m) for m in modes], indirect=True,
                         ids=[m or "file" for m in modes], scope="module")


def lab_session(topology: str | Path, routing: str | None = None, ready: Ready | None = None,
                prefix: str = "pt") -> Iterator[LabUnderTest]:
    """The life of one fixture lab: skip without root (or without BIRD for bgp), bring the topology up under a
    unique name, make it ready, yield it, and remove it at the end — also when ``up``, ``ready`` or a test fails."""
    if os.geteuid() != 0:
        pytest.skip("podlab labs need root (network namespaces)")
    if routing == "bgp":
        from emulator import routing as modes
        from emulator.errors import MissingDependencyError
        try:
            modes.get("bgp").check_available()
        except MissingDependencyError as e:
            pytest.skip(str(e))
    lab = LabUnderTest.up(topology, routing=routing, prefix=prefix)
    try:
        if ready is not None:
            ready(lab)
        yield lab
    finally:
        lab.down()


@pytest.fixture(scope="module")
def podlab_lab(request: pytest.FixtureRequest) -> Iterator[LabUnderTest]:
    path, mode = request.param
    yield from lab_session(path, mode)


def lab_fixture(topology: str | Path | Mapping[str, tuple[str | Path, str | None]],
                routing: str | Sequence[str] | None = None, *, name: str = "lab", scope: str = "module",
                ready: Ready | None = None, prefix: str = "pt"):
    """A fixture called ``name`` (assign it to a module-level variable of that name): ``topology`` (a file or YAML
    text) up once per ``scope`` and routing mode, made ready by ``ready(lab)`` before its first test, always
    removed at the end. One mode (``None``: the file's own) gives one lab; a list of modes runs each test once per
    mode (ids ``[vxlan]``, ``[host-gw]``, ...). Labs that differ by more than the mode are given as a mapping
    ``{id: (topology, routing)}``."""
    if isinstance(topology, Mapping):
        if routing is not None:
            raise pytest.UsageError("lab_fixture: give the routing modes inside the mapping of labs")
        labs = dict(topology)
    else:
        labs = {m or "file": (topology, m) for m in _modes(routing)}
    several = len(labs) > 1

    def fixture(request: pytest.FixtureRequest) -> Iterator[LabUnderTest]:
        source, mode = labs[request.param if several else next(iter(labs))]
        yield from lab_session(source, mode, ready, prefix)
    fixture.__name__ = name
    return pytest.fixture(scope=scope, name=name, params=list(labs) if several else None)(fixture)
