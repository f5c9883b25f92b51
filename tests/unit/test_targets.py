"""The one target grammar (``emulator.lab.targets``): parsing, and resolution against a lab's records."""
from __future__ import annotations

from pathlib import Path

import pytest

from emulator.errors import NotFoundError, PodNotFoundError, TargetError
from emulator.lab import targets
from emulator.lab.targets import Target
from emulator.tools import targets as tool_targets
from tests.unit.fakelab import fake_lab


@pytest.mark.parametrize("text,expected", [
    ("web-1", Target(None, "web-1")), ("web-1:veth", Target(None, "web-1", "veth")),
    ("pod/web-1:eth0", Target("pod", "web-1", "eth0")), ("po/web-1", Target("pod", "web-1")),
    ("node/node-1:flannel.1", Target("node", "node-1", "flannel.1")), ("no/node-2", Target("node", "node-2")),
    ("nodes/node-2", Target("node", "node-2")), ("node-1", Target(None, "node-1")),
    ("underlay", Target("underlay", "underlay")), ("underlay:node-2", Target("underlay", "underlay", "node-2")),
    ("external", Target("external", "external")), ("external:eth0", Target("external", "external", "eth0")),
])
def test_grammar(text: str, expected: Target) -> None:
    assert targets.parse(text) == expected


@pytest.mark.parametrize("text", ["", ":eth0", "svc/web:80", "node/", "web-1:"])
def test_bad_targets(text: str) -> None:
    with pytest.raises(TargetError) as info:
        targets.parse(text)
    assert info.value.exit_code == 4


def test_interface_refused_where_a_namespace_is_meant() -> None:
    with pytest.raises(TargetError, match="acts on a whole namespace: write 'web-1'"):
        targets.parse("web-1:eth0", iface=False)


def test_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lab = fake_lab(tmp_path, monkeypatch)
    assert lab.target_ns("web-1") == "clig-unit-web-1"
    assert lab.target_ns("pod/web-2") == "clig-unit-web-2"
    assert lab.target_ns("node-1") == "clig-unit-node-1"  # a bare node name, as capture always took it
    assert lab.target_ns("node/node-2") == "clig-unit-node-2"
    assert lab.target_ns("underlay") == "clig-unit-underlay"
    place = lab.target("node-1:cni0")
    assert (place.kind, place.name, place.ns, place.iface) == ("node", "node-1", "clig-unit-node-1", "cni0")


def test_resolution_errors_are_not_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lab = fake_lab(tmp_path, monkeypatch)
    with pytest.raises(TargetError, match=r"'web-9' is neither a pod nor a node of lab clig-unit \(pods: web-1, "
                                          r"web-2; nodes: node-1, node-2\)"):
        lab.target_ns("web-9")
    with pytest.raises(PodNotFoundError, match='pod "node-1" not found in lab clig-unit'):
        lab.target_ns("pod/node-1")
    with pytest.raises(NotFoundError, match=r'node "web-1" not found in lab clig-unit \(nodes: node-1, node-2\)'):
        lab.target_ns("node/web-1")
    with pytest.raises(TargetError, match="has no external network"):  # no such namespace on this machine
        lab.target_ns("external")


def test_tool_points_use_the_same_grammar(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lab = fake_lab(tmp_path, monkeypatch)
    p = tool_targets.resolve(lab, "node-1", check=False)
    assert (p.kind, p.owner, p.ns, p.iface) == ("node", "node-1", "clig-unit-node-1", "eth0")
    p = tool_targets.resolve(lab, "underlay:node-2", check=False)
    assert (p.kind, p.ns, p.iface, p.label) == ("underlay", "clig-unit-underlay", "node-2", "underlay:node-2")
    assert tool_targets.resolve(lab, "pod/web-1", check=False).iface == "eth0"


def test_docker_containers_in_the_grammar(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lab = fake_lab(tmp_path, monkeypatch)
    assert targets.parse("container/node-3/web") == Target("container", "node-3/web")
    assert targets.parse("containers/db:eth0") == Target("container", "db", "eth0")
    (lab.store.root / "containers").mkdir(parents=True, exist_ok=True)
    for key in ("node-3.web", "node-4.web", "node-4.db"):
        node, _, name = key.partition(".")
        lab.store.put("containers", key, {"metadata": {"name": name, "node": node}})
    place = lab.target("container/node-3/web")
    assert (place.kind, place.name, place.ns) == ("container", "node-3.web", "clig-unit-node-3.web")
    assert lab.target_ns("db") == "clig-unit-node-4.db"  # a bare name one node has
    assert lab.target_ns("container/db") == "clig-unit-node-4.db"
    with pytest.raises(TargetError, match="used on 2 nodes .* container/node-3/web or container/node-4/web"):
        lab.target_ns("container/web")
    with pytest.raises(NotFoundError, match='container "node-9/web" not found'):
        lab.target_ns("container/node-9/web")
    p = tool_targets.resolve(lab, "container/node-4/db", check=False)
    assert (p.kind, p.iface, p.description.split(" (")[0]) == ("container", "eth0", "eth0 of container node-4/db")
