"""The lab picture from topology files: model content, Mermaid/DOT text, and real SVG/PNG from Graphviz."""
from __future__ import annotations

import shutil
import struct
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from emulator.tools import graph, graph_model
from emulator.errors import ToolError
from emulator.topology.loader import load

TOPOLOGIES = sorted((Path(__file__).resolve().parents[2] / "topologies").glob("*.yaml"))
needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz dot not installed")


def model(name: str) -> graph_model.GraphModel:
    return graph_model.from_topology(load(next(p for p in TOPOLOGIES if p.stem == name)))


def test_vxlan_model_has_devices_pods_and_tunnels() -> None:
    m = model("demo")
    kinds = {b.id: b.kind for b in m.boxes}
    assert kinds["node-1/flannel.1"] == "vxlan" and kinds["node-2/cni0"] == "bridge"
    assert kinds["underlay"] == "underlay" and kinds["pod/web-1"] == "pod"
    assert m.box("pod/web-1").group == "node-1"
    tunnels = [l for l in m.lines if l.kind == "tunnel"]
    assert len(tunnels) == 1 and "VNI 1" in tunnels[0].label and "192.168.56.11 ⇄ 192.168.56.12" in tunnels[0].label
    assert "10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink" in m.box("node-1/routes").label


def test_hostgw_model_lists_routes_and_no_tunnel() -> None:
    m = model("hostgw-3node")
    assert not [b for b in m.boxes if b.kind == "vxlan"]
    assert not [l for l in m.lines if l.kind == "tunnel"]
    routes = m.box("node-1/routes").label
    assert "10.244.2.0/24 via 192.168.56.12 dev eth0" in routes and "10.244.3.0/24 via 192.168.56.13" in routes


def test_bgp_model_has_a_session_per_pair() -> None:
    m = model("bgp-3node")
    assert len([l for l in m.lines if l.kind == "bgp"]) == 3


def test_mermaid_text() -> None:
    text = graph.to_mermaid(model("demo"))
    assert text.splitlines()[3] == "flowchart TB"
    assert 'n_pod_web_1("web-1<br/>not running")' in text
    assert "subgraph n_group_node_1" in text and text.count("end\n") == 2


def test_output_format() -> None:
    assert graph.output_format("lab.svg") == "svg" and graph.output_format("x/lab.PNG") == "png"
    assert graph.output_format("json") == "json" and graph.output_format("lab.mermaid") == "mmd"
    with pytest.raises(ToolError, match="cannot tell the format"):
        graph.output_format("lab.pdf")


def test_dot_source_names_every_box() -> None:
    m = model("vxlan-3node")
    src = graph.to_dot(m)
    assert "cluster_node-3" in src
    for b in m.boxes:
        assert f'"{b.id}"' in src or b.id in src


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@needs_dot
@pytest.mark.parametrize("path", TOPOLOGIES, ids=[p.stem for p in TOPOLOGIES])
def test_every_example_topology_renders_to_valid_svg_and_png(path: Path, tmp_path: Path) -> None:
    m = graph_model.from_topology(load(path))
    svg = ET.fromstring(graph.render(m, "svg"))
    assert svg.tag.endswith("svg")
    texts = {t.text for t in svg.iter("{http://www.w3.org/2000/svg}text")}
    assert "cni0" in texts and "underlay" in texts
    for b in m.boxes:
        assert b.label.split("\n")[0] in texts, b
    groups = [g for g in svg.iter("{http://www.w3.org/2000/svg}g") if g.get("class") == "cluster"]
    assert len(groups) == len(m.groups)
    w, h = png_size(graph.render(m, "png"))
    assert w > 300 and h > 200
