"""YAML that PyYAML cannot load safely: one error line naming the file, never a traceback or a hang.

Deep nesting (5,000 ``[``: PyYAML's composer recursed into ``RecursionError``), an alias-expansion bomb (loading
is cheap but any walk over the data is exponential), binary bytes, values a tag cannot read (``!!int abc``:
``ValueError``), line breaks in quoted values. Both readers are covered: ``topology.loader.load`` and the
manifests of ``podlab apply -f`` (``cli.apply_cmds.load_documents``).
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from emulator.cli.apply_cmds import load_documents
from emulator.errors import ManifestError, TopologyError
from emulator.topology import yamlsafe
from emulator.topology.loader import load, loads


def bomb(levels: int = 9, width: int = 10, under: str = "services") -> str:
    """A billion laughs: each anchor lists the previous one ``width`` times."""
    lines = ["version: 1", "name: clig", "nodes: [{name: node-1}]", f"{under}:",
             "- &a0 [" + ", ".join(["lol"] * width) + "]"]
    lines += [f"- &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def refusal(path: Path, *words: str) -> str:
    t0 = time.monotonic()
    with pytest.raises(TopologyError) as info:
        load(path)
    assert time.monotonic() - t0 < 10, "refused, but only after a long walk"
    text = str(info.value)
    assert "\n" not in text and text.startswith(f"{path}: <file>: "), text
    for w in words:
        assert w in text, text
    return text


def test_deep_flow_nesting_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("[" * 5000)
    refusal(path, "nested more than 64 levels", "line 1, column 65")


@pytest.mark.parametrize("text", ["{a: " * 3000, "- " * 3000 + "x", "".join(" " * i + "a:\n" for i in range(2000))],
                         ids=["flow-mapping", "block-sequence", "block-mapping"])
def test_other_deep_nestings(tmp_path: Path, text: str) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text(text)
    refusal(path, "nested more than")


def test_nesting_within_the_limit_is_read() -> None:
    want: list = []
    for _ in range(59):
        want = [want]
    assert yamlsafe.load("a: " + "[" * 60 + "]" * 60, "f") == {"a": want}


@pytest.mark.parametrize("under", ["services", "deployments"])
def test_alias_bomb_is_refused_quickly(tmp_path: Path, under: str) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(bomb(under=under))
    refusal(path, "alias-expansion bomb", "&a8")


def test_bomb_inside_a_checked_field(tmp_path: Path) -> None:
    """Before: the pod's labels were quoted in the message with repr() of a 10^9-element list (a hang)."""
    path = tmp_path / "bomb.yaml"
    path.write_text("version: 1\nname: clig\nnodes: [{name: node-1}]\npods:\n"
                    "- {name: a, labels: {x: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]}}\n"
                    + "".join(f"- {{name: p{i}, labels: {{x: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]}}}}\n"
                              for i in range(1, 9)))
    refusal(path, "alias-expansion bomb")


def test_recursive_alias_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "loop.yaml"
    path.write_text("version: 1\nservices: &s [*s]\n")
    refusal(path, "refers to its own anchor")


def test_aliases_used_as_intended_are_fine() -> None:
    text = ("version: 1\nname: clig\nnodes: [{name: node-1}, {name: node-2}]\n"
            "x-app: &app {name: app, image: netexec, ports: [{containerPort: 8080}]}\n")
    with pytest.raises(TopologyError, match="unknown key 'x-app'"):  # the alias is read; the key is not podlab's
        loads(text, "f.yaml")
    pods = "".join(f"- {{name: web-{i}, containers: [*app]}}\n" for i in range(1, 201))
    topo = loads("version: 1\nname: clig\nnodes: [{name: node-1}, {name: node-2}]\npods:\n"
                 "- {name: web-0, containers: [&app {name: app, image: netexec}]}\n" + pods, "f.yaml")
    assert len(topo.pods) == 201 and topo.pods[-1].containers[0].image == "netexec"


def test_binary_file(tmp_path: Path) -> None:
    path = tmp_path / "lab.yaml"
    path.write_bytes(b"version: 1\n\x7fELF\x02\x01\x01\x00\x00\x00")
    refusal(path, "binary file", "line 2")


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "lab.yaml"
    path.write_bytes(b"version: 1\nname: \xff\xfe\n")
    refusal(path, "not UTF-8", "byte 0xff at line 2, column 7")


def test_control_character(tmp_path: Path) -> None:
    path = tmp_path / "lab.yaml"
    path.write_text("version: 1\nname: a\x01b\n")
    refusal(path, "U+0001 at line 2, column 8")


@pytest.mark.parametrize("value", ["!!int abc", "!!float x", "!!timestamp 2020-13-45"])
def test_value_a_tag_cannot_read(tmp_path: Path, value: str) -> None:
    path = tmp_path / "lab.yaml"
    path.write_text(f"version: 1\nname: {value}\n")
    refusal(path, "line 2, column 7", "cannot be read")


def test_quoted_line_breaks_stay_on_one_line(tmp_path: Path) -> None:
    path = tmp_path / "lab.yaml"
    path.write_text('version: 1\nname: "a\\nb"\nnodes: [{name: n}]\n')
    with pytest.raises(TopologyError) as info:
        load(path)
    assert "\n" not in str(info.value) and "'a\\nb'" in str(info.value)


# -- podlab apply -f ------------------------------------------------------------------------------------------
def manifest_refusal(path: Path, *words: str) -> None:
    with pytest.raises(ManifestError) as info:
        load_documents(str(path))
    text = str(info.value)
    assert "\n" not in text and text.startswith(f"{path}: <file>: "), text
    for w in words:
        assert w in text, text


def test_apply_deep_nesting(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("kind: Pod\n---\n" + "[" * 5000)
    manifest_refusal(path, "nested more than")


def test_apply_bomb(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(bomb(under="items").replace("version: 1\nname: clig\nnodes: [{name: node-1}]\n", "kind: List\n"))
    manifest_refusal(path, "alias-expansion bomb")


def test_apply_binary(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    manifest_refusal(path, "binary file")


def test_apply_duplicate_key(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("kind: Pod\nname: a\nname: b\n")
    manifest_refusal(path, "'name' appears twice", "lines 2 and 3")


def test_apply_reads_several_documents(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("name: a\n---\n---\nkind: List\nitems: [{name: b}, {name: c}]\n")
    assert [d["name"] for d in load_documents(str(path))] == ["a", "b", "c"]
