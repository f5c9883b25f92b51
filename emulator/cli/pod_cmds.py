"""Pod and node-agent verbs: the handlers of ``apply`` (kind Pod), ``delete pod`` and ``describe pod`` (listed
in those verbs' tables), and the verbs ``run``, ``logs POD [-c CONTAINER]``, ``agent start|stop|restart|status
NODE`` and ``cni install|uninstall NODE``."""
from __future__ import annotations

import argparse
import subprocess
import sys
import time

from emulator.cli import common, output
from emulator.cli.common import add_namespace_flags
from emulator.errors import UsageError
from emulator.lab import containers
from emulator.lab.api import Lab
from emulator.state import events


# -- apply / delete
def validate_pod(lab: Lab, obj: dict, source: str) -> tuple[dict, str]:
    from emulator.lab import podspec
    docker = frozenset(n.name for n in lab.nodes
                       if n.obj["metadata"].get("annotations", {}).get("podlab.io/runtime") == "docker")
    nodes = {n.name: 1 << 30 for n in lab.nodes if n.name not in docker}
    podspec.parse(obj, source, nodes, {}, docker=docker)  # validate fully before anything is applied
    return obj, source


def apply_pod(lab: Lab, prepared: tuple[dict, str]) -> str:
    return lab.apply_pod(*prepared)


def delete_pod(lab: Lab, name: str, a: argparse.Namespace) -> str:
    lab.delete_pod(name, wait=getattr(a, "wait", True), namespace=getattr(a, "namespace", None))
    return f'pod "{name}" deleted'


# -- run
def run_pod(a: argparse.Namespace) -> dict:
    """The pod ``podlab run`` starts, in podlab's short form (as ``kubectl run``: label ``run=NAME``)."""
    container = {"name": a.name, "image": a.image}
    if a.port:
        container["ports"] = [{"containerPort": a.port}]
    obj = {"name": a.name, "containers": [container], "labels": {"run": a.name}}
    if a.namespace:
        obj["namespace"] = a.namespace
    if a.node:
        obj["node"] = a.node
    return obj


def cmd_run(a: argparse.Namespace) -> int:
    from emulator.cli import host_cmds
    argv = [x for x in a.command if x != "--"] if a.command else []
    multi = host_cmds.multihost_lab(a.lab)
    if multi is not None:
        return host_cmds.run(multi, run_pod(a), argv, a)
    lab = Lab.get(a.lab)
    ns = a.namespace or "default"
    print(lab.apply_pod(run_pod(a)), file=sys.stderr)
    st = lab.wait_pod(a.name, timeout=a.timeout, namespace=ns)
    if not argv:
        print(f"pod {a.name} is Running with IP {st.get('podIP')} on {st.get('nodeName')}")
        return 0
    try:
        from emulator.lab.api import ns_argv
        stdin = None if a.interactive else subprocess.DEVNULL
        return subprocess.call(ns_argv(lab.pod(a.name, ns).netns, argv), stdin=stdin)
    finally:
        if a.rm:
            lab.delete_pod(a.name, namespace=ns)
            print(f'pod "{a.name}" deleted', file=sys.stderr)


# -- logs
def cmd_logs(a: argparse.Namespace) -> int:
    lab = Lab.get(a.lab)
    target = a.pod if "/" in a.pod else f"pod/{a.pod}"  # logs pod/NAME, as kubectl
    place = lab.target(common.namespaced_target(target, a.namespace), iface=False)
    if place.kind != "pod":
        raise UsageError(f"logs reads a pod's containers; {a.pod} is a {place.kind}", obj=a.pod)
    view = lab.pod(place.name)
    pod = view.obj
    c, note = containers.choose(pod, a.container)
    if note:
        print(note, file=sys.stderr)
    path = lab.paths.container_log(view.name, c, view.namespace)
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return 0
    with f:
        data = f.read()
        if a.tail is not None:
            data = b"\n".join(data.splitlines()[-a.tail:]) + (b"\n" if data else b"")
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        while a.follow:
            chunk = f.read()
            if chunk:
                sys.stdout.buffer.write(chunk)
                sys.stdout.flush()
            else:
                time.sleep(0.2)
    return 0


# -- describe pod
def describe_pod(lab: Lab, name: str, a: argparse.Namespace) -> int:
    view = lab.pod(name, getattr(a, "namespace", None))
    obj = view.obj
    evs = events.read(lab.store.root, "pod", view.name, view.namespace)
    if getattr(a, "output", "text") == "json":
        output.emit_json({**obj, "events": evs})
        return 0
    st, spec, meta = obj["status"], obj["spec"], obj["metadata"]
    sb = st.get("sandbox") or {}
    ifs = (sb.get("cniResult") or {}).get("interfaces", [])
    lines = [f"Name:         {meta['name']}", f"Namespace:    {meta.get('namespace', 'default')}",
             f"Node:         {spec.get('nodeName')}/{st.get('hostIP', '')}",
             f"Start Time:   {st.get('startTime', '<none>')}",
             "Labels:       " + (", ".join(f"{k}={v}" for k, v in meta.get("labels", {}).items()) or "<none>"),
             f"Status:       {output.pod_status_word(st)}", f"IP:           {st.get('podIP') or '<none>'}",
             f"Netns:        {sb.get('netns', '<none>')}  (sandbox {str(sb.get('id', ''))[:12] or '<none>'})",
             "Interfaces:   " + (", ".join(f"{i['name']}{' in pod' if i.get('sandbox') else ''}" for i in ifs)
                                 or "<none>")]
    if st.get("message"):
        lines.append(f"Message:      {st['message']}")
    lines.append("Containers:")
    cst = {c["name"]: c for c in st.get("containerStatuses", [])}
    for c in spec.get("containers", []):
        s = cst.get(c["name"], {})
        state = next(iter(s.get("state", {"waiting": {}})), "waiting")
        detail = s.get("state", {}).get(state, {})
        lines += [f"  {c['name']}:", f"    Image:          {c.get('image')}",
                  f"    Command:        {' '.join(s.get('command', [])) or '<default>'}",
                  "    Ports:          " + (", ".join(f"{p['containerPort']}/{p.get('protocol', 'TCP')}"
                                                    for p in c.get("ports", [])) or "<none>"),
                  f"    State:          {state.capitalize()}" + (f" ({detail.get('reason')})"
                                                                 if detail.get("reason") else ""),
                  f"    PID:            {s.get('pid') or '<none>'}", f"    Ready:          {s.get('ready', False)}",
                  f"    Restart Count:  {s.get('restartCount', 0)}"]
        term = (s.get("lastState") or {}).get("terminated")
        if term:
            lines.append(f"    Last State:     Terminated ({term.get('reason')}, exit code {term.get('exitCode')}): "
                         f"{term.get('message', '')}")
    lines.append("Events:")
    if evs:
        rows = [[e["type"], e["reason"], output.age(e["time"]), e["from"], e["message"]] for e in evs]
        import io
        buf = io.StringIO()
        output.table(["Type", "Reason", "Age", "From", "Message"], rows, out=buf)
        lines += ["  " + ln for ln in buf.getvalue().splitlines()]
    else:
        lines.append("  <none>")
    print("\n".join(lines))
    return 0



# -- agent, cni
def cmd_agent(a: argparse.Namespace) -> int:
    lab = Lab.get(a.lab)
    if a.action in ("stop", "restart"):
        was = lab.agent_stop(a.node, kill=a.kill)
        print(f"agent of {a.node} {'stopped' if was else 'was not running'}")
    if a.action in ("start", "restart"):
        pid = lab.agent_start(a.node)
        print(f"agent of {a.node} running (pid {pid})")
    if a.action == "status":
        lab.node(a.node)
        pid = lab.agent_pid(a.node)
        if a.output == "json":
            output.emit_json({"node": a.node, "running": bool(pid), "pid": pid})
        else:
            print(f"agent of {a.node}: " + (f"running (pid {pid})" if pid else "not running"))
    return 0


def cmd_cni(a: argparse.Namespace) -> int:
    from emulator.lab.builder import install_cni_config
    from emulator.topology.model import Node
    import ipaddress
    lab = Lab.get(a.lab)
    nv = lab.node(a.node)
    node = Node(name=a.node, ip=ipaddress.IPv4Address(nv.ip), pod_cidr=ipaddress.IPv4Network(nv.pod_cidr))
    conf_dir = lab.paths.cni_conf_dir(a.node)
    if a.action == "install":
        install_cni_config(lab.paths, int(lab.record["cluster"]["podMTU"]), node)
        print(f"CNI configuration installed on {a.node}: {conf_dir}/10-flannel.conflist")
    else:
        for f in conf_dir.glob("*.conf*"):
            f.unlink()
        print(f"CNI configuration removed from {a.node}: new pods there will stay ContainerCreating")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    s = common.verb(sub, "run", help="start a pod (like kubectl run), optionally run a command in it")
    s.add_argument("name")
    s.add_argument("--image", default="busybox")
    s.add_argument("--node", help="bind to this node (default: the scheduler picks)")
    s.add_argument("--port", type=int, help="declare a container port")
    s.add_argument("--rm", action="store_true", help="delete the pod when the command exits")
    s.add_argument("-i", "--interactive", action="store_true", help="keep stdin open")
    s.add_argument("-t", "--tty", action="store_true", help="(accepted for kubectl compatibility)")
    s.add_argument("-it", dest="interactive", action="store_true", help=argparse.SUPPRESS)
    s.add_argument("--timeout", type=float, default=30)
    s.add_argument("command", nargs="*", help="after --: a command to run in the pod")
    add_namespace_flags(s)
    s.set_defaults(fn=cmd_run)

    s = common.verb(sub, "logs", help="print a container's output (logs POD [-c CONTAINER] [-f])")
    s.add_argument("pod", help="POD, pod/POD or NAMESPACE/POD")
    s.add_argument("-c", "--container", help="the container (default: the pod's first)")
    s.add_argument("-f", "--follow", action="store_true", help="keep printing what the container writes (kubectl's -f)")
    s.add_argument("--tail", type=int)
    add_namespace_flags(s)
    s.set_defaults(fn=cmd_logs)

    agent = common.verb(sub, "agent", help="a node's kubelet-like agent: start|stop|restart|status NODE")
    verbs = common.actions(agent, "action", "start|stop|restart|status")
    for action, text in (("start", "start the agent (it reconciles with what exists)"),
                         ("stop", "stop the agent (its pods keep running)"),
                         ("restart", "stop, then start the agent"),
                         ("status", "is the agent running (and its pid)")):
        v = common.verb(verbs, action, help=text)
        v.add_argument("node")
        if action in ("stop", "restart"):
            v.add_argument("--kill", action="store_true", help="SIGKILL instead of a graceful stop")
        if action == "status":
            v.add_argument("-o", "--output", choices=["text", "json"], default="text")
        v.set_defaults(fn=cmd_agent, kill=False)

    cni = common.verb(sub, "cni", help="a node's CNI configuration: install|uninstall NODE")
    verbs = common.actions(cni, "action", "install|uninstall")
    for action, text in (("install", "write the node's CNI configuration (10-flannel.conflist)"),
                         ("uninstall", "remove it: new pods there stay ContainerCreating")):
        v = common.verb(verbs, action, help=text)
        v.add_argument("node")
        v.set_defaults(fn=cmd_cni)
