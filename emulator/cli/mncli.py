"""``podlab cli``: Mininet's own CLI (``mininet.cli.CLI``) driving the pods and nodes of a running lab.

Mininet's CLI works on Node objects, each a shell (bash on a pty) in a network namespace. Ours are attached to
the lab's *existing* namespaces: a ``LabNode`` is a Mininet ``Node`` created with ``inNamespace=False`` whose
shell command is prefixed with ``nsenter --net=/run/netns/<ns>``, so Mininet's ``mnexec`` starts the shell in the
pod's or node's namespace instead of unsharing a new one (recorded first in the lab's process journal, like
every process a podlab command starts in a lab namespace). Interfaces are ``LabIntf`` records filled from the
kernel (no ``ifconfig`` parsing). ``LabNet`` is a ``Mininet`` holding the pods as hosts and the nodes and the
underlay as extra nodes, built without ``Mininet.__init__`` (whose ``init`` raises root-namespace sysctls)
and without building anything. So ``pingall``, ``web-1 ping web-2`` (names replaced by IPs), ``dump``,
``nodes``, ``intfs``, ``py`` and ``sh`` are Mininet's own code; ``net``, ``trace`` and ``capture`` are ours;
terminals (xterm and friends) are refused. Leaving the CLI ends only the shells it started (by their process
groups); Mininet's cleanup (``mn -c``) is never called: ``podlab down`` is the lab's only teardown.
"""
from __future__ import annotations

import os
import shlex
import sys
import tempfile
from itertools import chain
from typing import TextIO

from emulator.lab.api import Lab
from emulator.lab.nsrun import journaled
from emulator.netlink import netns
from emulator.tools import mnimport, targets
from emulator.errors import MininetMissingError, PodlabError
from emulator.netlink.observe import Snapshot
from emulator.topology import names

mnimport.load()
from mininet.cli import CLI  # noqa: E402
from mininet.link import Intf  # noqa: E402
from mininet.log import lg, output  # noqa: E402
from mininet.net import Mininet  # noqa: E402
from mininet.node import Node  # noqa: E402


class LabIntf(Intf):
    """An interface that exists already: its address and MAC come from the kernel dump, nothing is configured."""

    def config(self, ip: str | None = None, prefixLen: int | None = None, **_params: object) -> dict:
        self.ip, self.prefixLen = ip, prefixLen
        return {}

    def updateIP(self) -> str | None:
        return self.ip

    def isUp(self, setUp: bool = False) -> bool:
        return True


class LabNode(Node):
    """A Mininet node whose shell runs in an existing lab namespace."""

    isSetup = False

    def __init__(self, name: str, ns_name: str, kind: str, **params: object) -> None:
        self.ns_name, self.kind = ns_name, kind
        Node.__init__(self, name, inNamespace=False, **params)

    @classmethod
    def setup(cls) -> None:
        for exe in ("mnexec", "nsenter", "bash"):
            if not _which(exe):
                raise MininetMissingError(f"{exe} is not on PATH; podlab cli needs it", obj=exe)

    def _popen(self, cmd, **params):  # type: ignore[override]
        if not self.shell and cmd and cmd[0] == "mnexec":  # the node's shell: start it inside our namespace
            cmd = [cmd[0], cmd[1], *journaled(self.ns_name, ["nsenter", f"--net={netns.path(self.ns_name)}", "--",
                                                             *cmd[2:]], f"podlab cli shell of {self.name}")]
        return Node._popen(self, cmd, **params)

    def __repr__(self) -> str:
        intfs = ",".join(f"{i.name}:{i.IP()}" for i in self.intfList())
        return f"<{self.kind} {self.name}: {intfs} pid={self.pid}>"


class LabNet(Mininet):
    """The lab as Mininet sees it: pods are the hosts, nodes and the underlay are further nodes."""

    def __init__(self, lab: Lab, hosts: list[LabNode], others: list[LabNode]) -> None:
        # Not Mininet.__init__: it runs Mininet.init(), which raises limits and sysctls of the root namespace.
        self.lab, self.topo, self.built = lab, None, True
        self.hosts, self.others = hosts, others
        self.switches, self.controllers, self.links, self.terms = [], [], [], []
        self.nameToNode = {n.name: n for n in chain(hosts, others)}

    def __iter__(self):
        for node in chain(self.hosts, self.others):
            yield node.name

    def __len__(self) -> int:
        return len(self.hosts) + len(self.others)

    def stop(self) -> None:
        """End the shells this CLI started (each in its own session: killpg reaches nothing else)."""
        for node in chain(self.hosts, self.others):
            node.terminate()


def _which(exe: str) -> bool:
    return any(os.access(os.path.join(d, exe), os.X_OK) for d in os.environ.get("PATH", "").split(os.pathsep))


def _attach(name: str, ns: str, kind: str, order: list[str] | None = None) -> LabNode:
    node = LabNode(name, ns, kind)
    v = Snapshot(ns=ns, label=name)
    try:
        addrs = {a.dev: a.interface for a in reversed(v.addrs)}
        links = sorted(v.links.values(), key=lambda l: (order.index(l.name) if order and l.name in order else 99,
                                                         l.index))
        port = 0
        for link in links:
            if link.kind == "loopback":
                continue
            a = addrs.get(link.name)
            LabIntf(link.name, node=node, port=port, mac=link.mac, ip=str(a.ip) if a else None,
                    prefixLen=a.network.prefixlen if a else None)
            port += 1
    finally:
        v.close()
    return node


def build(lab: Lab) -> LabNet:
    pods = [_attach(p, names.pod_ns(lab.name, p), "Pod") for p in lab.store.names("pods")
            if (lab.store.get_status("pods", p) or {}).get("phase") == "Running"]
    order = [names.NODE_UPLINK, names.CNI_BRIDGE, names.VXLAN_DEVICE]
    others = [_attach(n, names.node_ns(lab.name, n), "K8sNode", order) for n in lab.record.get("nodes", [])]
    others.append(_attach("underlay", names.underlay_ns(lab.name), "Underlay", [names.UNDERLAY_BRIDGE]))
    return LabNet(lab, pods, others)


class LabCLI(CLI):
    """Mininet's CLI with podlab's verbs; node names may contain '-' (web-1, node-1)."""

    prompt = "podlab> "
    identchars = CLI.identchars + "-"

    def do_net(self, _line: str) -> None:
        """List the cables: each interface and the interface at the other end."""
        lab: Lab = self.mn.lab
        for node in self.mn.values():
            ends = []
            for intf in node.intfList():
                kind = "underlay" if node.kind == "Underlay" else "pod" if node.kind == "Pod" else "node"
                point = targets.Point(kind, node.name, node.ns_name, intf.name, lab.name)  # type: ignore[arg-type]
                try:
                    peer = targets.peer(lab, point)
                except PodlabError:  # e.g. a pod without a sandbox: its cable has no other end to show
                    peer = None
                ends.append(f"{intf.name}:{peer.label if peer else ''}")
            output(f"{node.name} {' '.join(ends)}\n")

    def do_trace(self, line: str) -> None:
        """Trace a packet's path: trace SRC DST [--proto icmp|tcp|udp] [--port N] [--verify]"""
        from emulator.cli.tool_cmds import trace_parser, run_trace
        try:
            a = trace_parser().parse_args(shlex.split(line))
            for text in run_trace(self.mn.lab, a):
                output(text + "\n")
        except SystemExit:
            pass  # argparse has printed the usage error; the CLI goes on with the next command
        except Exception as e:
            output(f"trace: {e}\n")

    def do_capture(self, line: str) -> None:
        """Capture while a CLI command runs: capture POINT [POINT ...] [--filter BPF] [-c N] [-w FILE] -- COMMAND
        e.g.  capture web-1 node-1:flannel.1 --filter icmp -- web-1 ping -c1 web-3"""
        from emulator.cli.tool_cmds import capture_parser, run_capture
        words = shlex.split(line)
        sep = "--" in words
        head, cmd = (words[:words.index("--")], shlex.join(words[words.index("--") + 1:])) if sep else (words, "")
        try:
            a = capture_parser().parse_args(head)
            if not a.duration and not a.count and not sep:
                a.duration = 5.0
            for text in run_capture(self.mn.lab, a, during=(lambda: self.onecmd(cmd)) if sep else None):
                output(text + "\n")
        except SystemExit:
            pass  # argparse has printed the usage error; the CLI goes on with the next command
        except Exception as e:
            output(f"capture: {e}\n")

    def do_xterm(self, line: str, term: str = "xterm") -> None:
        """Terminals are not part of podlab; use `podlab exec NAME -- bash` in another terminal."""
        output("no terminals in podlab cli: run `sudo podlab exec NAME -- bash` in another terminal\n")

    do_x = do_gterm = do_xterm


def run(lab: Lab, script: str | None = None, stdin: TextIO | None = None) -> None:
    """Run the CLI on ``lab``: from ``script`` (a file of commands), from ``stdin`` if it is not a terminal,
    or interactively."""
    lg.ch.setStream(sys.stdout)
    stdin = stdin or sys.stdin
    tmp = None
    if script is None and not os.isatty(stdin.fileno()):
        with tempfile.NamedTemporaryFile("w", suffix=".mn", delete=False) as f:
            f.write(stdin.read())
            tmp = script = f.name
    net = build(lab)
    idle_r, idle_w = os.pipe()  # while a node runs a command, Mininet forwards our stdin to it: give it silence
    try:
        if script is not None:
            with os.fdopen(os.dup(idle_r)) as idle:
                LabCLI(net, stdin=idle, script=script)
        else:
            LabCLI(net, stdin=stdin)
    finally:
        net.stop()
        os.close(idle_r)
        os.close(idle_w)
        if tmp:
            os.unlink(tmp)
