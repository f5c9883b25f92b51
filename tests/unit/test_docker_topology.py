"""The Docker model in the topology: containers on runtime: docker nodes, publish syntax, the four refusals
(each naming file, field and fix), per-node addresses, hostPort placement and the scheduler's Pending message;
and Docker's rules rendered as iptables-restore input (idempotent against iptables-save)."""
from __future__ import annotations

import pytest

from emulator.docker import rules, state
from emulator.errors import TopologyError
from emulator.topology import hostports
from emulator.topology.loader import loads

HEAD = """version: 1
name: dk
nodes:
  - {name: node-1}
  - {name: node-2}
  - {name: node-3, runtime: docker}
  - {name: node-4, runtime: docker}
"""


def load(body: str):
    return loads(HEAD + body, "lab.yaml")


def refused(body: str) -> TopologyError:
    with pytest.raises(TopologyError) as info:
        load(body)
    assert info.value.file == "lab.yaml" and info.value.fix
    return info.value


def test_containers_numbered_per_node_from_172_17_0_2():
    t = load("containers:\n  - {name: web, node: node-3, publish: ['8080:80']}\n"
             "  - {name: web, node: node-4, publish: ['8080:80', '5353:53/udp']}\n  - {name: db, node: node-4}\n")
    ips = {(c.node, c.name): str(c.ip) for c in t.containers}
    assert ips == {("node-3", "web"): "172.17.0.2", ("node-4", "web"): "172.17.0.2", ("node-4", "db"): "172.17.0.3"}
    web4 = t.containers[1]
    assert [(p.host_port, p.container_port, p.protocol) for p in web4.publish] == [(8080, 80, "tcp"), (5353, 53, "udp")]
    assert [n.name for n in t.docker_nodes] == ["node-3", "node-4"]


@pytest.mark.parametrize("body, field, words", [
    ("containers:\n  - {name: a, node: node-3, publish: ['8080:80']}\n  - {name: b, node: node-3, publish: ['8080:81']}\n",
     "containers[1].publish[0]", "already allocated"),
    ("containers:\n  - {name: a, node: node-3}\n  - {name: a, node: node-3}\n", "containers[1].name", "already in use"),
    ("containers:\n  - {name: a, node: node-3, publish: ['80']}\n", "containers[0].publish[0]", "random host port"),
    ("containers:\n  - {name: a, node: node-3, publish: ['8080:80/icmp']}\n", "containers[0].publish[0]", "invalid proto"),
    ("containers:\n  - {name: a, node: node-3, publish: ['99999:80']}\n", "containers[0].publish[0]", "invalid hostPort"),
    ("containers:\n  - {name: a, node: node-3, publish: ['8080:x']}\n", "containers[0].publish[0]",
     "invalid containerPort"),
    ("containers:\n  - {name: a, node: node-3, publish: [8080]}\n", "containers[0].publish[0]", "is a number"),
    ("containers:\n  - {name: a, node: node-1}\n", "containers[0].node", "runtime: kubelet"),
    ("pods:\n  - {name: p, node: node-3}\n", "pods[0].node", "runtime: docker"),
])
def test_refusals_name_field_and_fix(body, field, words):
    err = refused(body)
    assert err.field == field, err
    assert words in str(err), err


def test_same_name_on_two_nodes_is_allowed_and_port_outside_range_with_services():
    t = load("services: [{name: s, selector: {app: x}, ports: [{port: 80}]}]\n"
             "containers:\n  - {name: a, node: node-3, publish: ['8080:80']}\n  - {name: a, node: node-4}\n")
    assert len(t.containers) == 2


def test_hostport_conflict_pinned_stays_pending_with_scheduler_reason():
    t = load("pods:\n  - {name: a, node: node-1, containers: [{name: c, ports: [{containerPort: 80, hostPort: 8080}]}]}\n"
             "  - {name: b, node: node-1, containers: [{name: c, ports: [{containerPort: 80, hostPort: 8080}]}]}\n"
             "  - {name: c, containers: [{name: c, ports: [{containerPort: 80, hostPort: 8080}]}]}\n"
             "  - {name: d, containers: [{name: c, ports: [{containerPort: 80, hostPort: 8080}]}]}\n")
    pods = {p.name: p for p in t.pods}
    assert pods["a"].node == "node-1" and not pods["a"].unschedulable
    assert pods["b"].node == "" and pods["b"].unschedulable.startswith(
        "0/2 nodes are available: 1 node(s) didn't have free ports for the requested pod ports, 1 node(s) didn't "
        "match Pod's node affinity/selector.")
    assert pods["c"].node == "node-2"  # the scheduler may choose: placed where the port is free
    assert pods["d"].unschedulable.startswith(
        "0/2 nodes are available: 2 node(s) didn't have free ports for the requested pod ports.")
    assert "preemption: 0/2 nodes are available: 2 No preemption victims found" in pods["d"].unschedulable


def test_message_shape():
    assert hostports.unschedulable_message(3, 1, 2) == (
        "0/3 nodes are available: 1 node(s) didn't have free ports for the requested pod ports, 2 node(s) didn't "
        "match Pod's node affinity/selector. preemption: 0/3 nodes are available: 1 No preemption victims found "
        "for incoming pod, 2 Preemption is not helpful for scheduling.")


def test_rules_have_dockers_chains_and_are_idempotent():
    t = load("containers:\n  - {name: web, node: node-3, publish: ['8080:80', '192.168.56.13:5353:53/udp']}\n")
    text = rules.render(t.containers)
    for line in ("-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER",
                 "-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE",
                 "-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80",
                 "-A DOCKER -d 192.168.56.13/32 ! -i docker0 -p udp -m udp --dport 5353 -j DNAT --to-destination "
                 "172.17.0.2:53",
                 "-A DOCKER -d 172.17.0.2/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT",
                 "-A PREROUTING -d 172.17.0.2/32 ! -i docker0 -p tcp -m tcp --dport 80 -j DROP",
                 "-A DOCKER-FORWARD -j DOCKER-CT", "-A DOCKER-ISOLATION-STAGE-2 -o docker0 -j DROP",
                 "-I FORWARD 1 -j DOCKER-USER", ":FORWARD DROP [0:0]"):
        assert line in text.splitlines(), line
    lines = text.splitlines()
    assert lines.index("-I FORWARD 1 -j DOCKER-FORWARD") < lines.index("-I FORWARD 1 -j DOCKER-USER")
    # what iptables-save shows after the first apply: the built-in chain rules are not added again
    save = "\n".join(["*raw", *(f"-A {c} {s}" for c, s in rules.builtin_rules(t.containers)["raw"]), "COMMIT",
                      "*nat", *(f"-A {c} {s}" for c, s in rules.builtin_rules(t.containers)["nat"]), "COMMIT",
                      "*filter", *(f"-A {c} {s}" for c, s in rules.builtin_rules(t.containers)["filter"]), "COMMIT"])
    again = rules.render(t.containers, save)
    assert "-I FORWARD" not in again and "-A POSTROUTING" not in again and "-A PREROUTING" not in again
    assert "-A DOCKER-FORWARD -i docker0 -j ACCEPT" in again  # Docker's own chains are rewritten whole


def test_state_docker0_and_container():
    t = load("containers:\n  - {name: web, node: node-3}\n")
    n = t.node("node-3")
    st = state.node_state(n)
    assert st.links[0].name == "docker0" and st.addrs[0].ip == "172.17.0.1" and st.addrs[0].prefixlen == 16
    cs = state.container_state(t.containers[0])
    assert cs.addrs[0].ip == "172.17.0.2" and cs.routes[0].gateway == "172.17.0.1"
    assert state.container_mac(t.containers[0]) == "02:42:ac:11:00:02"


def test_apply_time_nodeports_filter():
    used = {"node-1": {(8080, "TCP")}, "node-2": set()}
    assert hostports.choose({(8080, "TCP")}, None, "node-1", used, ["node-1", "node-2"]) == ("node-2", "")
    node, msg = hostports.choose({(8080, "TCP")}, "node-1", "node-1", used, ["node-1", "node-2"])
    assert node == "" and msg.startswith("0/2 nodes are available: 1 node(s) didn't have free ports for the "
                                         "requested pod ports, 1 node(s) didn't match Pod's node affinity/selector.")
    used["node-2"] = {(8080, "TCP")}
    node, msg = hostports.choose({(8080, "TCP")}, None, "node-1", used, ["node-1", "node-2"])
    assert node == "" and msg.startswith("0/2 nodes are available: 2 node(s) didn't have free ports")
    assert hostports.choose({(8080, "UDP")}, None, "node-1", used, ["node-1"]) == ("node-1", "")


def test_docker0_range_must_not_overlap_the_labs_ranges():
    with pytest.raises(TopologyError) as info:
        loads(HEAD.replace("nodes:", "cluster: {podCIDR: 172.16.0.0/12}\nnodes:"), "lab.yaml")
    assert info.value.field == "cluster.podCIDR" and "172.17.0.0/16" in str(info.value)
    loads("version: 1\nname: k\ncluster: {podCIDR: 172.16.0.0/12}\nnodes: [{name: n1}]\n", "lab.yaml")  # no Docker


def test_a_nodeport_range_host_port_is_docker_s_own():
    """kube-proxy runs on the Kubernetes nodes only, so a Docker host may publish 30080 as Docker would."""
    t = load("services: [{name: s, selector: {app: x}, ports: [{port: 80}]}]\n"
             "containers:\n  - {name: a, node: node-3, publish: ['30080:80']}\n")
    assert t.containers[0].publish[0].host_port == 30080
    assert [n.name for n in t.kube_nodes] == ["node-1", "node-2"]
