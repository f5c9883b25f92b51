"""Lab tooling verbs: ``capture``, ``trace``, ``graph`` (the work is in ``emulator.tools``; this is the CLI).

    podlab capture web-1 node-1:eth0 web-3 --filter "icmp or udp port 8472" -c 2 -w ping.pcapng --decode
    podlab capture node-1:flannel.1 | wireshark -k -i -          (live: pcapng on stdout)
    podlab trace web-1 web-3 [--proto tcp --port 8080] [--verify] [-o json]
    podlab graph [-o dot|mmd|svg|png|json] [-w lab.svg]          [TOPOLOGY or -f TOPOLOGY: no lab needed]

Letters mean one thing across the CLI: ``-o`` is the output format, ``-f`` a file (the topology of ``graph``),
``-w`` the file a tool writes; a capture filter is ``--filter``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from typing import Callable

from emulator.cli import common, host_cmds, output
from emulator.errors import ToolError, UsageError
from emulator.lab.api import Lab


# -- capture -------------------------------------------------------------------------------------------------
def capture_parser(prog: str = "capture") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, add_help=False)
    add_capture_args(p)
    return p


def add_capture_args(s: argparse.ArgumentParser) -> None:
    s.add_argument("points", nargs="+", metavar="TARGET[:IFACE]",
                   help="web-1, web-1:veth, node/node-1:cni0, node-1:flannel.1, underlay, underlay:node-2, "
                        "external")
    s.add_argument("-w", "--write", metavar="FILE", help="pcapng file to write (default: stream to stdout)")
    s.add_argument("--filter", metavar="BPF", help='tcpdump filter, e.g. "icmp or udp port 8472"')
    s.add_argument("-c", "--count", type=int, help="stop each point after N packets")
    s.add_argument("-d", "--duration", type=float, help="stop after S seconds")
    s.add_argument("--decode", action="store_true", help="print one line per packet (tshark, VXLAN decoded)")
    s.add_argument("--nftrace", action=argparse.BooleanOptionalAction, default=None,
                   help="trace the packets through the nodes' rules (nft monitor trace) and report where they stop "
                        "and which rule decided (default: when a node involved enforces NetworkPolicy)")
    s.add_argument("-o", "--output", choices=["text", "json"], default="text")


def run_capture(lab: Lab, a: argparse.Namespace, during: Callable[[], object] | None = None,
                progress: Callable[[str], None] = lambda s: None) -> list[str]:
    """Capture to a file (``a.write`` or a temporary one); run ``during`` once capturing; return the report."""
    from contextlib import nullcontext

    from emulator.tools import capture, capture_rules, decode, targets
    points = [targets.resolve(lab, t) for t in a.points]
    watch = capture_rules.RuleWatch.for_points(lab, points, getattr(a, "nftrace", None))
    if a.write:
        path = a.write
    else:
        fd, path = tempfile.mkstemp(prefix="podlab-", suffix=".pcapng")
        os.close(fd)
    cap = capture.Capture(points, bpf=a.filter, count=a.count)
    with watch or nullcontext(), cap:
        if watch is not None:
            progress(f"tracing the rules of {', '.join(watch.nodes)} (nft monitor trace)")
        progress(f"capturing on {', '.join(p.label for p in points)}"
                 + (f" ({a.count} packets per point)" if a.count else "")
                 + (f" for {a.duration:g}s" if a.duration else "") + (" — Ctrl-C to stop" if not
                                                                    (a.count or a.duration or during) else ""))
        try:
            if during is not None:
                during()
                cap.wait(duration=a.duration or 2.0)
            else:
                cap.wait(duration=a.duration)
        except KeyboardInterrupt:
            pass  # Ctrl-C ends the capture, as in tcpdump: what was captured is still written and reported
    n = cap.write(path)
    lines: list[str] = []
    counts = cap.per_point()
    rules = watch.report([p.label for p in points], cap.packets) if watch is not None else None
    if a.output == "json":
        report = {"file": path if a.write else None, "packets": n,
                  "points": [{"name": p.label, "netns": p.ns, "interface": p.iface, "packets": counts[p.label]}
                             for p in points]}
        if a.decode:
            report["decoded"] = [ln.as_dict() for ln in decode.decode(path)[0]]
        if rules is not None:
            report["rules"] = rules.as_dict()
        lines.append(json.dumps(report, indent=2))
    else:
        per = ", ".join(f"{k} {v}" for k, v in counts.items())
        lines.append(f"{n} packets ({per})" + (f" written to {path}" if a.write else ""))
        if a.decode:
            decoded, how = decode.decode(path)
            lines.append(f"decoded by {how} (VXLAN on UDP {decode.VXLAN_PORT}):")
            lines += [ln.text() for ln in decoded]
        if rules is not None:
            lines += rules.lines()
    if not a.write:
        os.unlink(path)
    return lines


def cmd_capture(a: argparse.Namespace) -> int:
    multi = host_cmds.multihost_lab(a.lab)
    if multi is not None:
        return host_cmds.capture(multi, a)
    lab = Lab.get(a.lab)
    if a.write or a.decode or a.output == "json":
        for line in run_capture(lab, a, progress=output.progress):
            print(line)
        return 0
    if sys.stdout.isatty():
        raise ToolError("capture: standard output is a terminal; write to a file with -w FILE, print a summary "
                        "with --decode, or pipe into `wireshark -k -i -`")
    from contextlib import nullcontext

    from emulator.tools import capture, capture_rules, targets
    points = [targets.resolve(lab, t) for t in a.points]
    watch = capture_rules.RuleWatch.for_points(lab, points, a.nftrace)
    cap = capture.Capture(points, bpf=a.filter, count=a.count, live=sys.stdout.buffer)
    with watch or nullcontext(), cap:
        output.progress(f"streaming pcapng from {', '.join(p.label for p in points)} to stdout")
        try:
            cap.wait(duration=a.duration)
        except KeyboardInterrupt:
            pass  # Ctrl-C ends a live stream: that is how it is meant to stop
    if watch is not None:  # stdout carries the pcapng: the rules' report goes to stderr
        for line in watch.report([p.label for p in points], cap.packets).lines():
            output.progress(line)
    return 0


# -- trace ---------------------------------------------------------------------------------------------------
def add_trace_args(s: argparse.ArgumentParser) -> None:
    s.add_argument("src", help="a pod (web-1, pod/web-1), a node (node-1, node/node-1) or external")
    s.add_argument("dst", help="a pod, a node, external or an IPv4 address, each with an optional :PORT "
                               "(a ClusterIP, nodeIP:nodePort)")
    s.add_argument("--proto", choices=["icmp", "tcp", "udp"], default=None,
                   help="default: tcp with a port, the Service's protocol for a ClusterIP, else icmp")
    s.add_argument("--port", type=int, help="destination port (tcp/udp; implies tcp)")
    s.add_argument("--endpoint", metavar="IP[:PORT]",
                   help="the Service endpoint to follow where the rules choose at random (default: the first)")
    s.add_argument("--verify", action="store_true", help="send a probe and confirm each hop by its counters")
    s.add_argument("-o", "--output", choices=["text", "json"], default="text")


def trace_parser(prog: str = "trace") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, add_help=False)
    add_trace_args(p)
    return p


def trace_result(lab: Lab, a: argparse.Namespace):
    from emulator.tools.trace import trace
    from emulator.tools.trace_netpol import dropped_by_policy
    from emulator.tools.trace_verify import verify
    res = trace(lab, a.src, a.dst, a.proto, a.port, endpoint=a.endpoint)
    if a.verify and (res.delivered or dropped_by_policy(res)):  # a drop: the probe shows the drop rule counting
        verify(lab, res)
    return res


def run_trace(lab: Lab, a: argparse.Namespace) -> list[str]:
    res = trace_result(lab, a)
    if a.output == "json":
        return [json.dumps(res.as_dict(), indent=2)]
    return res.lines()


def cmd_trace(a: argparse.Namespace) -> int:
    multi = host_cmds.multihost_lab(a.lab)
    if multi is not None:
        from emulator.hosts import trace_across
        res = trace_across.trace(multi, a.src, a.dst, a.proto, a.port, a.endpoint, a.verify)
    else:
        res = trace_result(Lab.get(a.lab), a)
    if a.output == "json":
        output.emit_json(res.as_dict())
    else:
        print("\n".join(res.lines()))
    return 0 if res.ok else 1


# -- graph ---------------------------------------------------------------------------------------------------
GRAPH_FORMATS = ("dot", "mmd", "svg", "png", "json")


def graph_format(value: str) -> str:
    if value in GRAPH_FORMATS:
        return value
    hint = f"; to write a file use -w {value}" if "." in value else ""
    raise argparse.ArgumentTypeError(f"{value!r} is not a format (choose from {', '.join(GRAPH_FORMATS)}){hint}")


def cmd_graph(a: argparse.Namespace) -> int:
    from emulator.tools import graph, graph_model
    from emulator.tools.capture import give_to_user
    if a.file and a.topology and a.file != a.topology:
        raise UsageError("graph draws one topology: give it as TOPOLOGY or -f TOPOLOGY, not both", obj=a.file)
    source = a.file or a.topology
    if source:
        from emulator.topology.loader import load
        model = graph_model.from_topology(load(source))
    elif host_cmds.multihost_lab(a.lab) is not None:
        from emulator.hosts import graph_across
        model = graph_across.model(host_cmds.multihost_lab(a.lab) or "")
    else:
        model = graph.from_lab(Lab.get(a.lab))
    fmt = a.output or (graph.output_format(a.write) if a.write else "dot")
    if fmt == "json" and not a.write:
        output.emit_json(model.as_dict())
        return 0
    if fmt in ("svg", "png"):
        data = graph.render(model, fmt)
    elif fmt == "json":
        data = (json.dumps(model.as_dict(), indent=2) + "\n").encode()
    else:
        data = (graph.to_dot(model) if fmt == "dot" else graph.to_mermaid(model)).encode()
    if not a.write:
        sys.stdout.buffer.write(data)
        return 0
    try:
        with open(a.write, "wb") as f:
            f.write(data)
    except OSError as e:
        raise ToolError(f"graph: cannot write {a.write}: {e.strerror}", obj=a.write) from None
    give_to_user(a.write)
    print(f"{model.title}: {len(model.boxes)} boxes, {len(model.lines)} lines written to {a.write} ({fmt})")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    s = common.verb(sub, "capture", help="capture packets at several points into one pcapng (points named)")
    add_capture_args(s)
    s.set_defaults(fn=cmd_capture)

    s = common.verb(sub, "trace", help="the path a packet takes, hop by hop, from the lab's kernel state")
    add_trace_args(s)
    s.set_defaults(fn=cmd_trace)

    s = common.verb(sub, "graph", help="draw the lab: nodes, pods, bridges, tunnels/routes, underlay")
    s.add_argument("topology", nargs="?", metavar="TOPOLOGY", help="draw a topology file instead of a running lab")
    s.add_argument("-f", "--file", metavar="TOPOLOGY", help="the same, as an option")
    s.add_argument("-o", "--output", type=graph_format, metavar="FORMAT",
                   help=f"{' | '.join(GRAPH_FORMATS)} (default: dot, or the extension of -w)")
    s.add_argument("-w", "--write", metavar="FILE", help="write to FILE (lab.svg, lab.png, lab.dot, lab.mmd) "
                                                         "instead of standard output")
    s.set_defaults(fn=cmd_graph)
