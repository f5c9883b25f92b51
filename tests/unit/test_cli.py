"""The CLI's one grammar, checked on the real parser and on a lab's records (no root, no kernel objects).

``--lab`` before and after the verb at every depth; ``-o`` only for the output format, ``-f`` only for a file
(kubectl's ``logs -f`` excepted); explicit kind tables; kubectl's forms (``get pod NAME -o json`` is one object,
lists are ``kind: List``); not found is exit 4 for every kind, a wrong command line exit 2.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Iterator

import pytest

from emulator.cli import apply_cmds, describe_cmds, fault_cmds, get_cmds
from emulator.cli.main import COMMAND_MODULES, parser
from tests.unit.fakelab import fake_lab, run

#: a value for each positional argument, by its dest, so that every leaf parses
POSITIONALS = {"file": "t.yaml", "labs": [], "kind": "pods", "names": [], "name": "x", "target": "web-1",
               "command": [], "pod": "web-1", "node": "node-1", "node1": "node-1", "node2": "node-2", "src": "web-1",
               "dst": "web-2", "points": "web-1", "targets": [], "topology": None, "fault": ["node-1"], "spec": "{}"}
#: kubectl's own exception to "-f is a file": ``kubectl logs -f`` follows
F_EXCEPTIONS = {("logs",): "follow"}


def subcommands(p: argparse.ArgumentParser) -> list[argparse._SubParsersAction]:
    return [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]


def leaves(p: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...],
                                                                                       argparse.ArgumentParser]]:
    subs = subcommands(p)
    if not subs:
        yield path, p
    for s in subs:
        for name, child in s.choices.items():
            yield from leaves(child, path + (name,))


def argv_for(path: tuple[str, ...], p: argparse.ArgumentParser) -> list[str]:
    argv = list(path)
    for a in p._actions:
        if a.option_strings or isinstance(a, argparse._SubParsersAction):
            if a.required:
                argv += [a.option_strings[0], "1"]
            continue
        value = POSITIONALS[a.dest]
        if value is not None and a.nargs not in ("*", "?"):
            argv += value if isinstance(value, list) else [value]
    return argv


ALL_LEAVES = list(leaves(parser()))


def test_the_tree_is_complete() -> None:
    paths = {p for p, _ in ALL_LEAVES}
    assert {("link", "show"), ("bgp", "status"), ("fail",), ("heal",), ("faults",), ("agent", "restart"),
            ("cni", "uninstall"), ("get",), ("exec",), ("graph",)} <= paths


@pytest.mark.parametrize("path,leaf", ALL_LEAVES, ids=[" ".join(p) for p, _ in ALL_LEAVES])
def test_lab_after_the_verb_at_every_depth(path: tuple[str, ...], leaf: argparse.ArgumentParser) -> None:
    argv = argv_for(path, leaf)
    assert parser().parse_args(argv + ["--lab", "clig-x"]).lab == "clig-x"
    assert parser().parse_args(["--lab", "clig-y"] + argv).lab == "clig-y"
    assert parser().parse_args(argv).lab is None


def test_link_show_takes_lab() -> None:
    """Before: ``podlab link show --lab x`` exited 2 (unrecognized arguments) while ``bgp status --lab x`` worked."""
    assert parser().parse_args(["link", "show", "--lab", "x"]).lab == "x"
    assert parser().parse_args(["link", "set", "web-1", "--rate", "1mbit", "--lab", "x"]).lab == "x"
    assert parser().parse_args(["bgp", "--lab", "y", "status"]).lab == "y"


@pytest.mark.parametrize("path,leaf", ALL_LEAVES, ids=[" ".join(p) for p, _ in ALL_LEAVES])
def test_letters_mean_one_thing(path: tuple[str, ...], leaf: argparse.ArgumentParser) -> None:
    for a in leaf._actions:
        if "-o" in a.option_strings:
            assert a.dest == "output", f"{' '.join(path)}: -o is {a.dest}"
        if "-f" in a.option_strings:
            assert a.dest in ("file", "filename") or F_EXCEPTIONS.get(path) == a.dest, \
                f"{' '.join(path)}: -f is {a.dest}"


def test_graph_writes_with_w_and_names_formats_with_o(capsys: pytest.CaptureFixture) -> None:
    a = parser().parse_args(["graph", "-o", "svg", "-w", "lab.svg"])
    assert (a.output, a.write) == ("svg", "lab.svg")
    with pytest.raises(SystemExit) as info:
        parser().parse_args(["graph", "-o", "lab.svg"])
    assert info.value.code == 2 and "to write a file use -w lab.svg" in capsys.readouterr().err
    assert parser().parse_args(["graph", "topologies/demo.yaml"]).topology == "topologies/demo.yaml"


def test_capture_filter_is_a_long_option() -> None:
    assert parser().parse_args(["capture", "web-1", "--filter", "icmp", "-c", "2"]).filter == "icmp"
    with pytest.raises(SystemExit):
        parser().parse_args(["capture", "web-1", "-f", "icmp"])


def test_graph_of_a_topology_file(tmp_path: Path, capsys: pytest.CaptureFixture,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    root = Path(__file__).resolve().parents[2]
    out = tmp_path / "demo.mmd"
    code, stdout, _ = run(capsys, monkeypatch, "graph", str(root / "topologies/demo.yaml"), "-w", str(out))
    assert code == 0 and "flowchart TB" in out.read_text() and "(mmd)" in stdout
    code, stdout, _ = run(capsys, monkeypatch, "graph", "-f", str(root / "topologies/demo.yaml"), "-o", "json")
    assert code == 0 and json.loads(stdout)["boxes"]


# -- explicit tables -------------------------------------------------------------------------------------------
def test_verbs_list_their_kinds() -> None:
    names = lambda table: [k.names[0] for k in table]  # noqa: E731
    assert names(get_cmds.KINDS) == ["pods", "nodes", "namespaces", "services", "endpoints", "deployments",
                                     "networkpolicies", "containers"]
    assert names(describe_cmds.KINDS) == ["pods", "nodes", "services", "deployments", "networkpolicies"]
    assert names(apply_cmds.DELETE) == ["pods", "services", "deployments", "networkpolicies", "namespaces"]
    assert sorted(apply_cmds.APPLY) == ["Deployment", "Namespace", "NetworkPolicy", "Pod", "Service"]
    for module in COMMAND_MODULES:  # nothing registers itself: no module keeps a register_* hook
        assert not [n for n in vars(module) if n.startswith("register_")], module.__name__


# -- against a lab's records -----------------------------------------------------------------------------------
@pytest.fixture
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    return fake_lab(tmp_path, monkeypatch)


def test_get_one_pod_as_json_is_the_object(lab, capsys, monkeypatch) -> None:
    code, out, _ = run(capsys, monkeypatch, "get", "pod", "web-1", "-o", "json")
    obj = json.loads(out)
    assert code == 0 and obj["kind"] == "Pod" and obj["metadata"]["name"] == "web-1" and obj["status"]["podIP"]
    code, out, _ = run(capsys, monkeypatch, "get", "pod/web-2", "-o", "json")
    assert json.loads(out)["metadata"]["name"] == "web-2"


def test_lists_have_one_envelope(lab, capsys, monkeypatch) -> None:
    for argv in (["get", "pods"], ["get", "pods", "web-1", "web-2"], ["get", "nodes"], ["get", "svc"],
                 ["get", "deploy"], ["ls"]):
        code, out, _ = run(capsys, monkeypatch, *argv, "-o", "json")
        obj = json.loads(out)
        assert code == 0 and obj["apiVersion"] == "v1" and obj["kind"] == "List" and isinstance(obj["items"], list), \
            argv
    code, out, _ = run(capsys, monkeypatch, "get", "pods", "web-1", "web-2", "-o", "json")
    assert [o["metadata"]["name"] for o in json.loads(out)["items"]] == ["web-1", "web-2"]


@pytest.mark.parametrize("argv,words", [
    (["get", "pods", "web-9"], 'pod "web-9" not found in lab clig-unit'),
    (["get", "nodes", "node-9"], 'node "node-9" not found'),
    (["get", "svc", "nope"], 'service "nope" not found in lab clig-unit'),
    (["get", "deploy", "nope"], 'deployment "nope" not found'),
    (["describe", "svc", "nope"], 'service "nope" not found in lab clig-unit'),
    (["describe", "deploy/nope"], 'deployment "nope" not found in lab clig-unit'),
    (["describe", "node", "node-9"], 'node "node-9" not found in lab clig-unit (nodes: node-1, node-2)'),
    (["describe", "pod", "web-9"], 'pod "web-9" not found'),
    (["delete", "svc", "nope"], 'service "nope" not found'),
    (["delete", "deploy", "nope"], 'deployment "nope" not found'),
    (["delete", "pod", "web-9"], 'pod "web-9" not found'),
    (["scale", "deploy", "nope", "--replicas", "2"], 'deployment "nope" not found in lab clig-unit'),
    (["agent", "status", "node-9"], 'node "node-9" not found'),
    (["agent", "start", "node-9"], 'node "node-9" not found'),
    (["logs", "web-9"], 'pod "web-9" not found'),
    (["logs", "web-1", "-c", "nope"], 'container "nope" not found in pod "web-1" (containers: app, side)'),
    (["exec", "web-9", "--", "true"], "'web-9' is neither a pod nor a node"),
    (["exec", "node/node-9", "--", "true"], 'node "node-9" not found'),
    (["exec", "web-1", "-c", "nope", "--", "true"], 'container "nope" not found'),
    (["trace", "web-9", "web-1"], "'web-9' is neither a pod nor a node"),
    (["--lab", "nope", "get", "pods"], 'lab "nope" not found (labs: clig-unit)'),
    (["get", "pods", "--lab", "nope"], 'lab "nope" not found'),
    (["link", "show", "--lab", "nope"], 'lab "nope" not found'),
    (["fail", "node", "node-9"], 'node "node-9" not found'),
    (["fail", "node/node-9"], 'node "node-9" not found'),
    (["heal", "link", "node-1", "node/node-9"], 'node "node-9" not found'),
    (["fail", "node-9"], "'node-9' is neither a pod nor a node"),
])
def test_not_found_is_exit_4(lab, capsys, monkeypatch, argv: list[str], words: str) -> None:
    code, _, err = run(capsys, monkeypatch, *argv)
    assert code == 4, err
    assert words in err and err.count("\n") == 1 and err.startswith("podlab: error: "), err


@pytest.mark.parametrize("argv,words", [
    (["get", "foo"], 'unknown resource type "foo"; known: pods, nodes, namespaces, services, endpoints, deployments'),
    (["describe", "pod"], "describe needs one name"),
    (["delete", "svc"], "delete needs at least one name"),
    (["exec", "node-1", "-c", "app", "--", "true"], "-c names a container of a pod"),
    (["exec", "web-1", "true"], "exec needs the command after --"),
    (["exec", "web-1:eth0", "--", "true"], "acts on a whole namespace"),
    (["scale", "pod", "web-1", "--replicas", "1"], "scale needs one deployment"),
    (["fail", "web-1"], "fail acts on a node's uplink or the link between two nodes"),
    (["fail", "link", "node-1", "underlay"], "'underlay' is the underlay"),
    (["fail", "all"], "fail takes node NODE, node/NODE, NODE or link NODE1 NODE2 (given: all)"),
    (["heal", "link", "node-1"], "heal takes node NODE, node/NODE, NODE or link NODE1 NODE2 or all"),
])
def test_usage_errors_are_exit_2(lab, capsys, monkeypatch, argv: list[str], words: str) -> None:
    code, _, err = run(capsys, monkeypatch, *argv)
    assert code == (4 if "whole namespace" in words else 2), err  # a malformed target is a target error (4)
    assert words in err, err


def test_exec_c_needs_a_running_container(lab, capsys, monkeypatch) -> None:
    code, _, err = run(capsys, monkeypatch, "exec", "web-1", "-c", "app", "--", "env")
    assert code == 1 and 'container "app" of pod "web-1" is not running' in err


def test_not_found_without_any_lab(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("PODLAB_STATE_DIR", str(tmp_path))
    code, _, err = run(capsys, monkeypatch, "get", "pods")
    assert code == 4 and "no lab is up" in err


def test_an_os_error_is_one_line_naming_the_file(lab, capsys, monkeypatch, tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    code, _, err = run(capsys, monkeypatch, "graph", str(root / "topologies/demo.yaml"), "-w",
                       str(tmp_path / "no-such-dir" / "lab.dot"))
    assert code == 1 and "no-such-dir/lab.dot" in err and err.count("\n") == 1 and "Traceback" not in err


def test_up_refuses_a_bad_file_in_one_line(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("PODLAB_STATE_DIR", str(tmp_path / "state"))
    for name, data in (("deep.yaml", b"[" * 5000), ("bin.yaml", b"\x7fELF\x00\x01"),
                       ("bomb.yaml", ("version: 1\nservices:\n- &a0 [" + ",".join(["x"] * 10) + "]\n" + "".join(
                           f"- &a{i} [{','.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 9))).encode())):
        path = tmp_path / name
        path.write_bytes(data)
        for argv in (["up", str(path)], ["apply", "-f", str(path)], ["check", str(path)], ["graph", str(path)]):
            if argv[0] == "apply":
                fake_lab(tmp_path / "state", monkeypatch)
            code, _, err = run(capsys, monkeypatch, *argv)
            assert code == 2 and err.count("\n") == 1 and str(path) in err and "Traceback" not in err, (argv, err)


@pytest.mark.parametrize("verb,words,parsed", [
    ("fail", ["node", "node-1"], ("node", ("node/node-1",))),
    ("fail", ["node", "node/node-1"], ("node", ("node/node-1",))),
    ("fail", ["node/node-1"], ("node", ("node/node-1",))),
    ("fail", ["no/node-1"], ("node", ("no/node-1",))),
    ("fail", ["node-1"], ("node", ("node-1",))),
    ("heal", ["link", "node-1", "node/node-2"], ("link", ("node-1", "node/node-2"))),
    ("heal", ["all"], ("all", ())),
])
def test_fault_verbs_take_nodes_in_the_one_target_grammar(verb: str, words: list[str], parsed: tuple) -> None:
    """``fail``/``heal`` name a node as every verb names a place (``node-1``, ``node/node-1``), and in kubectl's
    ``TYPE NAME`` form (``node node-1``), which the guides have always shown."""
    assert fault_cmds.parse_fault(verb, words) == parsed
