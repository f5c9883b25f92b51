"""Seeing NetworkPolicy at work: ``trace`` names the policy and rule that admit or drop a packet, read from the
node's own ``inet kube-network-policies`` table (a rule removed by hand shows at once, before the enforcer puts it
back), ``trace --verify`` shows the deciding rule's counter grow, and ``capture`` shows the drop point — the points
a dropped flow was seen at, those it never reached, and the rule ``nft monitor trace`` names — through pod IPs and
ClusterIPs, same-node and cross-node, in vxlan with kube-proxy in iptables mode and host-gw with nftables mode;
and bad input of each kind (selector, CIDR, port name, protocol) refused with its field path, the kernel unchanged."""
from __future__ import annotations

import json
import subprocess
import threading
import time

from emulator.cli.tool_cmds import capture_parser, run_capture
from emulator.lab.api import Lab, run_in
from emulator.netpol import component, enforcer, kernel, names, probe
from emulator.netpol.reader import POLICIES
from tests.integration import enforcer_pause
from tests.integration.conftest import ROOT, lab_fixture, podlab, podlab_argv, podlab_env, wait_for_line

SERVER = ("{name: c, image: 'registry.k8s.io/e2e-test-images/agnhost:2.53', args: [porter], "
          "ports: [{containerPort: 80, name: http}, {containerPort: 81}]}")
TOPOLOGY = """
version: 1
name: np-observe
routing: {routing}
nodes: [{{name: node-1}}, {{name: node-2}}]
kubeProxy: {{mode: {proxy}}}
pods:
  - {{name: server, node: node-1, labels: {{app: server}}, containers: [{server}]}}
  - {{name: client, node: node-2, labels: {{role: client}}, containers: [{server}]}}
  - {{name: other, node: node-1, labels: {{role: other}}, containers: [{server}]}}
services:
  - {{name: server, selector: {{app: server}}, ports: [{{port: 80, targetPort: 80}}]}}
networkPolicies:
  - {{name: allow-client, podSelector: {{matchLabels: {{app: server}}}},
     ingress: [{{from: [{{podSelector: {{matchLabels: {{role: client}}}}}}], ports: [{{port: http}}]}}]}}
  - {{name: other-egress, podSelector: {{matchLabels: {{role: other}}}}, policyTypes: [Egress],
     egress: [{{to: [{{podSelector: {{matchLabels: {{role: client}}}}}}], ports: [{{port: 80}}]}}]}}
"""
ADMIT = "default/allow-client ingress[0]"
NO_INGRESS, NO_EGRESS = "no NetworkPolicy allows this ingress", "no NetworkPolicy allows this egress"


def topology(routing: str, proxy: str) -> str:
    return TOPOLOGY.format(routing=routing, proxy=proxy, server=SERVER)


def tcp(lab: Lab, src: str, ip: str, port: int = 80) -> bool:
    return probe.run([probe.Target(lab.pod(src).netns, ip, port, "TCP")])[0].connected


def serving(lab: Lab) -> None:
    deadline = time.monotonic() + 10
    while not tcp(lab, "client", lab.pod("server").ip):
        assert time.monotonic() < deadline, "the server never answered the client"
        time.sleep(0.1)


lab = lab_fixture({"vxlan-iptables": (topology("vxlan", "iptables"), None),
                   "hostgw-nftables": (topology("host-gw", "nftables"), None)}, ready=serving)


def trace(lab: Lab, *args: str) -> subprocess.CompletedProcess:
    return podlab("trace", *args, lab=lab)


def cluster_ip(lab: Lab) -> str:
    return lab.store.get("services", "server")["spec"]["clusterIP"]


def counter(lab: Lab, node: str, chain: str, comment: str) -> int:
    return kernel.read(lab, node).packets[(chain, comment)]


def test_trace_names_the_admitting_rule_and_its_counter_grows_with_the_probe(lab: Lab) -> None:
    chain = names.policy_chain("Ingress", "default", "allow-client")
    for dst in (f"{lab.pod('server').ip}:80", f"{cluster_ip(lab)}:80"):
        before = counter(lab, "node-1", chain, ADMIT)
        r = trace(lab, "client", dst, "--verify")
        assert r.returncode == 0, r.stdout + r.stderr
        line = next(ln for ln in r.stdout.splitlines() if "NetworkPolicy on node-1" in ln)
        assert f"ingress of server ({lab.pod('server').ip}): isolated by default/allow-client; admitted by chain " \
               f'{chain} rule "{ADMIT}" (handle ' in line
        assert "NetworkPolicy on node-2" in r.stdout and "no policy selects either end" in r.stdout
        verify = r.stdout.split("verify: ", 1)[1]
        assert f'node-1 chain {chain} rule "{ADMIT}"' in verify and "+1 with the probe" in verify
        assert counter(lab, "node-1", chain, ADMIT) == before + 1  # the kernel's own count agrees
    r = trace(lab, "client", f"{lab.pod('server').ip}:80", "-o", "json")
    hop = next(h for h in json.loads(r.stdout)["hops"] if (h["detail"] or {}).get("netpol") and h["at"] == "node-1")
    (side,) = hop["detail"]["netpol"]["sides"]
    assert side["isolatedBy"] == ["default/allow-client"] and side["decidedBy"]["comment"] == ADMIT


def test_trace_names_the_dropping_rule_same_node_and_cross_node(lab: Lab) -> None:
    cases = [("client", f"{lab.pod('server').ip}:81", "ingress", NO_INGRESS, "isolated by default/allow-client"),
             ("other", f"{cluster_ip(lab)}:80", "egress", NO_EGRESS, "isolated by default/other-egress"),
             ("other", f"{lab.pod('server').ip}:80", "egress", NO_EGRESS, "isolated by default/other-egress")]
    for src, dst, chain, comment, isolated in cases:
        before = counter(lab, "node-1", chain, comment)
        r = trace(lab, src, dst, "--verify")
        assert r.returncode == 1, r.stdout + r.stderr
        problem = next(ln for ln in r.stdout.splitlines() if ln.startswith("PROBLEM: "))
        assert problem.startswith("PROBLEM: node-1 drops tcp ") and "by NetworkPolicy" in problem, problem
        assert isolated in problem and f'DROP by chain {chain} rule "{comment}"' in problem
        verify = r.stdout.split("verify: ", 1)[1]
        assert "not answered" in verify and f'node-1 chain {chain} rule "{comment}"' in verify
        grown = counter(lab, "node-1", chain, comment) - before
        assert grown >= 1 and f"+{grown} with the probe" in verify  # SYN and its retry: the kernel dropped them there


def test_trace_reads_the_kernel_not_the_model_a_rule_removed_by_hand(lab: Lab) -> None:
    """The policies still admit client → server:80, but with the rule gone from node-1 the kernel drops it: the
    trace says what the kernel does (the drop rule), and once the enforcer repaired the table, the admitting rule."""
    chain = names.policy_chain("Ingress", "default", "allow-client")
    with enforcer_pause.paused(lab, "node-1"):  # the damage is seen before the enforcer's repair
        out = lab.node("node-1").exec(["nft", "-a", "list", "chain", names.FAMILY, names.TABLE, chain]).stdout
        handle = next(ln.rsplit("# handle", 1)[1].strip() for ln in out.splitlines() if f'"{ADMIT}"' in ln)
        assert lab.node("node-1").exec(["nft", "delete", "rule", names.FAMILY, names.TABLE, chain, "handle",
                                        handle]).returncode == 0
        r = trace(lab, "client", f"{lab.pod('server').ip}:80")
        assert r.returncode == 1 and f'DROP by chain ingress rule "{NO_INGRESS}"' in r.stdout, r.stdout
        r = podlab("check", "netpol", lab=lab)  # the culprit: the missing rule, and the kernel's dropping one
        assert r.returncode == 1 and f"rule '{ADMIT}' is missing" in r.stdout, r.stdout
        assert "the kernel: node-1 drops tcp" in r.stdout and \
            f'DROP by chain ingress rule "{NO_INGRESS}"' in r.stdout
    deadline = time.monotonic() + enforcer.HEALTH_PERIOD + 5
    while (chain, ADMIT) not in kernel.read(lab, "node-1").packets and time.monotonic() < deadline:
        time.sleep(0.1)  # the enforcer's health check finds the table changed and rewrites it
    component.wait_synced(lab.paths, lab.store, ["node-1"])
    r = trace(lab, "client", f"{lab.pod('server').ip}:80")
    assert r.returncode == 0 and f'admitted by chain {chain} rule "{ADMIT}"' in r.stdout, r.stdout


def _capture(lab: Lab, points: list[str], traffic, *extra: str) -> list[str]:
    bpf = "tcp port 80 or tcp port 81 or udp port 8472"  # vxlan: on a node's eth0 the pods' packets are inside UDP
    a = capture_parser().parse_args([*points, "--filter", bpf, "-d", "0.5", *extra])
    return run_capture(lab, a, during=traffic)


def _curl(lab: Lab, src: str, dst: str) -> None:
    run_in(lab.pod(src).netns, ["curl", "-s", "-o", "/dev/null", "-m", "1.5", f"http://{dst}/"])


def test_capture_shows_the_drop_point(lab: Lab) -> None:
    server, cip = lab.pod("server").ip, cluster_ip(lab)

    def traffic() -> None:
        threads = [threading.Thread(target=_curl, args=(lab, s, d)) for s, d in
                   (("other", f"{cip}:80"), ("client", f"{server}:81"), ("client", f"{cip}:80"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    lines = _capture(lab, ["client", "other", "server:veth", "server", "node/node-2"], traffic)
    text = "\n".join(lines)
    assert "rules that decided (nft monitor trace on node-2, node-1):" in text, text
    drops = text.split("drop points:\n", 1)[1].split("\nrule counters", 1)[0].splitlines()
    egress = next(d for d in drops if d.strip().startswith(f"tcp {lab.pod('other').ip} → {server}:80"))
    assert "seen at other:eth0 ×" in egress and "never reached" in egress and "server:eth0" in egress
    assert "stops on node-1: NetworkPolicy egress: isolated by default/other-egress; DROP by chain egress" in egress
    ingress = next(d for d in drops if d.strip().startswith(f"tcp {lab.pod('client').ip} → {server}:81"))
    assert "seen at client:eth0 ×" in ingress and "node-2:eth0 ×" in ingress, ingress
    assert "server:eth0" in ingress.split("never reached", 1)[1] and f'"{NO_INGRESS}"' in ingress
    assert f"(sent to {lab.pod('other').ip} → {cip}:80)" in text  # the policy decided after the DNAT
    assert f'rule "{ADMIT}"' in text and "ACCEPT: NetworkPolicy ingress" in text  # the admitted ClusterIP flow
    assert f'node-1 chain egress rule "{NO_EGRESS}"' in text.split("rule counters that grew", 1)[1]
    for node in ("node-1", "node-2"):  # the trace table is gone, the policy table untouched
        tables = lab.node(node).exec(["nft", "list", "tables"]).stdout
        assert "podlab-trace" not in tables and names.TABLE in tables


def test_capture_json_and_no_nftrace(lab: Lab) -> None:
    server = lab.pod("server").ip
    lines = _capture(lab, ["other", "server"], lambda: _curl(lab, "other", f"{server}:80"), "-o", "json")
    rules = json.loads(lines[0])["rules"]
    (d,) = [d for d in rules["dropPoints"] if d["flow"][:2] == [lab.pod("other").ip, server]]
    assert d["node"] == "node-1" and d["notSeenAt"] == ["server:eth0"] and "other:eth0" in d["seenAt"]
    lines = _capture(lab, ["other", "server"], lambda: _curl(lab, "other", f"{server}:80"), "--no-nftrace")
    assert not any("drop points" in ln or "rules that decided" in ln for ln in lines)


BAD = [("{podSelector: {matchExpressions: [{key: pod, operator: in, values: [a]}]}}",
        "spec.podSelector.matchExpressions[0].operator", "not a valid selector operator"),
       ("{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8, except: [11.0.0.0/16]}}]}]}",
        "spec.ingress[0].from[0].ipBlock.except[0]", "strict subset"),
       ("{podSelector: {}, ingress: [{ports: [{port: Serve_80}]}]}", "spec.ingress[0].ports[0].port",
        "not a valid port name"),
       ("{podSelector: {}, ingress: [{ports: [{protocol: tcp, port: 80}]}]}", "spec.ingress[0].ports[0].protocol",
        "Unsupported value")]


def test_bad_input_of_each_kind_is_refused_and_no_kernel_changes(lab: Lab) -> None:
    """An invalid selector, CIDR, port name or protocol: exit 2 naming the field path, and the store and every
    node's policy table (rules and sets, as the kernel lists them) are as before."""
    nodes = [n.name for n in lab.nodes]
    before = {n: kernel.read(lab, n) for n in nodes}
    stored = sorted(lab.store.names(POLICIES))
    for spec, field, words in BAD:
        doc = f"apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: bad}}\nspec: {spec}\n"
        r = podlab("apply", "-f", "-", lab=lab, input=doc)
        assert r.returncode == 2 and field in r.stderr and words in r.stderr, (spec, r.stderr)
    assert sorted(lab.store.names(POLICIES)) == stored
    for n in nodes:
        after = kernel.read(lab, n)
        assert (after.rules, after.sets) == (before[n].rules, before[n].sets), n


def test_live_stream_reports_the_drop_point_on_stderr(lab: Lab) -> None:
    """``capture | wireshark -k -i -``: stdout is the pcapng, the rules' report comes on stderr at the end."""
    server = lab.pod("server").ip
    proc = subprocess.Popen(podlab_argv("capture", "other", "server", "-d", "3", lab=lab), cwd=ROOT,
                            env=podlab_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for_line(proc.stderr, "streaming pcapng", timeout=20)  # every tcpdump listens, the trace is on
        _curl(lab, "other", f"{server}:80")
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0 and stdout[:4] == b"\x0a\x0d\x0d\x0a"  # a pcapng Section Header Block
    text = stderr.decode()
    assert "drop points:" in text and f"{lab.pod('other').ip} → {server}:80: seen at other:eth0" in text, text
    assert "stops on node-1: NetworkPolicy egress: isolated by default/other-egress" in text
