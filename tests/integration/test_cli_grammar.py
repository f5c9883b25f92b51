"""The CLI's one grammar on a real lab (one lab for the module): a bare node name for ``exec`` as for ``capture``,
``--lab`` after a nested verb, kubectl's ``exec -c`` (the container's environment and working directory) and
``logs -c``, ``get pod NAME -o json`` as the object."""
from __future__ import annotations

import json
import os
from pathlib import Path

from emulator.lab.api import Lab
from tests.integration.conftest import lab_fixture, podlab

TOPO = """version: 1
name: x
nodes: [{name: node-1}, {name: node-2}]
pods:
  - name: web-1
    node: node-1
    containers:
      - {name: app, image: busybox, env: {GREETING: hello-from-app}}
      - {name: talker, image: busybox, command: ["sh", "-c", "echo talker-says-hi; exec sleep 3600"],
         env: {GREETING: hello-from-talker}}
  - {name: web-2, node: node-2}
"""


lab = lab_fixture(TOPO)


def test_exec_takes_a_bare_node_name(lab: Lab) -> None:
    """Before: ``podlab exec node-1 -- ip route`` failed (pod "node-1" not found) where ``capture node-1`` worked."""
    bare = podlab("--lab", lab.name, "exec", "node-1", "--", "ip", "route")
    spelled = podlab("--lab", lab.name, "exec", "node/node-1", "--", "ip", "route")
    assert bare.returncode == 0, bare.stderr
    assert bare.stdout == spelled.stdout and lab.node("node-2").pod_cidr in bare.stdout
    underlay = podlab("--lab", lab.name, "exec", "underlay", "--", "ip", "-o", "link", "show", "node-1")
    assert underlay.returncode == 0 and "node-1" in underlay.stdout


def test_lab_after_a_nested_verb(lab: Lab) -> None:
    """Before: ``podlab link show --lab x`` exited 2 (unrecognized arguments)."""
    r = podlab("link", "show", "--lab", lab.name, "-o", "json")
    assert r.returncode == 0, r.stderr
    listed = json.loads(r.stdout)
    assert listed["kind"] == "List" and listed["metadata"]["lab"] == lab.name
    assert {"web-1:eth0", "node-1:eth0"} <= {i["target"] for i in listed["items"]}
    r = podlab("agent", "status", "node-1", "--lab", lab.name, "-o", "json")
    assert r.returncode == 0 and json.loads(r.stdout)["running"] is True


def test_exec_in_a_container_gets_its_environment_and_directory(lab: Lab) -> None:
    st = lab.pod("web-1").status
    pid = next(c["pid"] for c in st["containerStatuses"] if c["name"] == "talker")
    cwd = os.readlink(f"/proc/{pid}/cwd")
    r = podlab("--lab", lab.name, "exec", "web-1", "-c", "talker", "--", "sh", "-c", 'echo "$GREETING $POD_NAME '
               '$POD_IP $NODE_NAME"; pwd')
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [f"hello-from-talker web-1 {st['podIP']} node-1", cwd]
    r = podlab("--lab", lab.name, "exec", "web-1", "-c", "app", "--", "sh", "-c", 'echo "$GREETING"')
    assert r.stdout.strip() == "hello-from-app"
    mine = podlab("--lab", lab.name, "exec", "web-1", "--", "sh", "-c", 'echo "${GREETING:-unset}"')
    assert mine.stdout.strip() == "unset"  # without -c: the namespace only, with the caller's environment
    assert podlab("--lab", lab.name, "exec", "web-1", "-c", "app", "--", "sh", "-c", "exit 7").returncode == 7


def test_exec_into_a_missing_container_is_not_found(lab: Lab) -> None:
    r = podlab("--lab", lab.name, "exec", "web-1", "-c", "nope", "--", "true")
    assert r.returncode == 4 and 'container "nope" not found in pod "web-1" (containers: app, talker)' in r.stderr


def test_logs_of_one_container(lab: Lab) -> None:
    r = podlab("--lab", lab.name, "logs", "web-1", "-c", "talker")
    assert r.returncode == 0 and r.stdout == "talker-says-hi\n", r.stdout + r.stderr
    r = podlab("--lab", lab.name, "logs", "pod/web-1")
    assert r.returncode == 0 and 'Defaulted container "app" out of: app, talker' in r.stderr


def test_get_one_pod_as_json_is_the_pod(lab: Lab) -> None:
    r = podlab("--lab", lab.name, "get", "pod", "web-2", "-o", "json")
    obj = json.loads(r.stdout)
    assert obj["kind"] == "Pod" and obj["metadata"]["name"] == "web-2" and obj["status"]["phase"] == "Running"
    r = podlab("--lab", lab.name, "get", "nodes", "node-9")
    assert r.returncode == 4 and f'node "node-9" not found in lab {lab.name}' in r.stderr


def test_capture_filter_and_graph_write(lab: Lab, tmp_path: Path) -> None:
    out = tmp_path / "lab.dot"
    r = podlab("--lab", lab.name, "graph", "-w", str(out))
    assert r.returncode == 0 and "digraph" in out.read_text(), r.stderr
    r = podlab("--lab", lab.name, "capture", "node-1", "--filter", "icmp", "-d", "0.5", "-o", "json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["points"][0]["name"] == "node-1:eth0"
