"""``podlab bgp status [NODE]`` (sessions and learned routes from each BIRD's control socket) and
``podlab bgp stop|start NODE`` (stop or start one node's BIRD; the lab record follows the PID)."""
from __future__ import annotations

import argparse

from emulator.cli import common, output
from emulator.errors import PodlabError
from emulator.fmt import duration
from emulator.lab.api import Lab


def _bgp_lab(a: argparse.Namespace) -> Lab:
    lab = Lab.get(a.lab)
    mode = lab.record.get("routing")
    if mode != "bgp":
        raise PodlabError(f"lab {lab.name} uses routing {mode}; bgp commands need a lab with routing: bgp "
                          f"(podlab up FILE --routing bgp)", obj=lab.name)
    return lab


def cmd_status(a: argparse.Namespace) -> int:
    from emulator.routing import bgp
    lab = _bgp_lab(a)
    nodes = [n.name for n in lab.nodes]
    if a.node:
        lab.node(a.node)
        nodes = [a.node]
    reports = [bgp.node_report(lab.name, n) for n in nodes]
    if a.output == "json":
        output.emit_list(reports, lab=lab.name)
        return 0
    rows = []
    for r in reports:
        if not r["bird"]["running"]:
            rows.append([r["node"], "-", "-", "BIRD not running", "-", "-"])
            continue
        for s in r["sessions"]:
            rows.append([r["node"], s["peerNode"] or s["name"], s["peer"], s["bgpState"], duration(s["uptimeSeconds"]),
                         s["info"] or "-"])
    print("SESSIONS")
    output.table(["NODE", "PEER", "PEER-IP", "STATE", "UPTIME", "INFO"], rows)
    rows = [[r["node"], rt["prefix"], rt["via"] or "-", rt["viaNode"] or "-", rt["from"], "yes" if rt["best"] else "no"]
            for r in reports for rt in r["routes"]]
    print("\nLEARNED ROUTES")
    output.table(["NODE", "PREFIX", "VIA", "VIA-NODE", "FROM", "BEST"], rows)
    return 0


def cmd_stop(a: argparse.Namespace) -> int:
    from emulator.routing import bgp
    lab = _bgp_lab(a)
    lab.node(a.node)
    pid = bgp.stop_daemon(lab.name, a.node, kill=a.kill)
    if pid is None:
        print(f"BIRD on {a.node} was not running; nothing to do")
    else:
        how = "killed (SIGKILL, as a crash: its own kernel routes stay until it restarts)" if a.kill else \
            "stopped (it told its peers and removed its kernel routes)"
        print(f"BIRD on {a.node} (pid {pid}) {how}")
    return 0


def cmd_start(a: argparse.Namespace) -> int:
    from emulator.routing import bgp
    lab = _bgp_lab(a)
    lab.node(a.node)
    pid, started = bgp.start_daemon(lab.name, a.node)
    print(f"BIRD on {a.node} {'started' if started else 'is already running'} (pid {pid})")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    s = common.verb(sub, "bgp", help="BGP (routing: bgp): sessions and learned routes, stop/start a node's BIRD")
    verbs = common.actions(s, "bgp_verb", "status|stop|start")
    st = common.verb(verbs, "status", help="sessions (state, uptime) and learned routes, from BIRD's control socket")
    st.add_argument("node", nargs="?")
    st.add_argument("-o", "--output", choices=["text", "json"], default="text")
    st.set_defaults(fn=cmd_status)
    sp = common.verb(verbs, "stop", help="stop a node's BIRD (its peers withdraw its routes at once)")
    sp.add_argument("node")
    sp.add_argument("--kill", action="store_true", help="SIGKILL instead of a clean shutdown (a crash)")
    sp.set_defaults(fn=cmd_stop)
    sa = common.verb(verbs, "start", help="start a node's BIRD again")
    sa.add_argument("node")
    sa.set_defaults(fn=cmd_start)
