"""``podlab``: the command line. Verbs follow kubectl where kubectl has one (get, exec, describe, ...).

Every read command takes ``-o json``. Exit codes: 0 success, 1 generic failure, 2 invalid topology or usage,
3 the lab or a namespace already exists, 4 not found, 5 missing dependency, 6 timeout; ``exec`` passes the
command's own exit code through.
"""
from __future__ import annotations

import argparse
import os
import sys

from emulator.cli import output
from emulator.errors import PodlabError
from emulator.lab import record, teardown
from emulator.lab.api import Lab
from emulator.netlink import netns


def _progress(msg: str) -> None:
    print(f"podlab: {msg}", file=sys.stderr, flush=True)


def cmd_up(a: argparse.Namespace) -> int:
    from emulator.lab import builder
    from emulator.topology.loader import load
    topo = load(a.file, name=a.name, routing=a.routing)
    try:
        stuck = builder.up(topo, progress=_progress)
    except builder.AlreadyUp as e:
        print(str(e))
        return 0
    print(f"lab {topo.name} is up: {len(topo.nodes)} nodes, {len(topo.pods)} pods, routing {topo.routing}")
    for st in stuck:
        print(f"  pod {st.get('name')} is {output.pod_status_word(st)}: {st.get('message')}")
    return 0 if all(_cni_none(topo, st) for st in stuck) else 6


def _cni_none(topo, st: dict) -> bool:
    try:
        return topo.node(st.get("nodeName", "")).cni == "none"
    except KeyError:
        return False


def cmd_down(a: argparse.Namespace) -> int:
    labs = a.labs or ([a.lab] if a.lab else [])
    if not labs:
        labs = [Lab.get().name]
    for name in labs:
        if teardown.destroy(name, progress=_progress):
            print(f"lab {name} removed")
        else:
            print(f"lab {name} is not present; nothing to do")
    return 0


def cmd_cleanup(a: argparse.Namespace) -> int:
    removed = 0
    for name in record.all_labs():
        rec = record.load(name) or {}
        if a.all or record.crashed(rec):
            teardown.destroy(name, progress=_progress)
            print(f"lab {name} ({rec.get('status')}, owner gone) removed")
            removed += 1
    if not removed:
        print("nothing to clean up" + ("" if a.all else " (no crashed lab; use --all to remove every lab)"))
    return 0


def cmd_ls(a: argparse.Namespace) -> int:
    rows, items = [], []
    for name in record.all_labs():
        rec = record.load(name) or {}
        lab = Lab(name)
        npods = len(lab.store.names("pods"))
        status = "crashed" if record.crashed(rec) else rec.get("status")
        items.append({"name": name, "status": status, "nodes": len(rec.get("nodes", [])), "pods": npods,
                      "routing": rec.get("routing"), "source": rec.get("source"), "createdAt": rec.get("createdAt")})
        rows.append([name, status, len(rec.get("nodes", [])), npods, rec.get("routing"), output.age(rec.get("createdAt")),
                     rec.get("source")])
    if a.output == "json":
        output.emit_json({"items": items})
    else:
        output.table(["NAME", "STATUS", "NODES", "PODS", "ROUTING", "AGE", "SOURCE"], rows)
    return 0


def cmd_get(a: argparse.Namespace) -> int:
    lab = Lab.get(a.lab)
    kind = a.kind.lower()
    if kind in ("pods", "pod", "po"):
        objs = [o for o in (lab.store.with_status("pods", n) for n in lab.store.names("pods")) if o]
        if a.names:
            objs = [o for o in objs if o["metadata"]["name"] in a.names]
            missing = set(a.names) - {o["metadata"]["name"] for o in objs}
            if missing:
                raise PodlabError(f'pods "{sorted(missing)[0]}" not found', obj=sorted(missing)[0])
        if a.output == "json":
            output.emit_json({"apiVersion": "v1", "kind": "List", "items": objs})
            return 0
        headers = ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
        if a.output == "wide":
            headers += ["IP", "NODE"]
        rows = []
        for o in objs:
            st = o["status"]
            row = [o["metadata"]["name"], output.pod_ready(st, o["spec"]), output.pod_status_word(st),
                   output.pod_restarts(st), output.age(o["metadata"].get("creationTimestamp"))]
            if a.output == "wide":
                row += [st.get("podIP"), o["spec"].get("nodeName")]
            rows.append(row)
        output.table(headers, rows)
        return 0
    if kind in ("nodes", "node", "no"):
        items = []
        for nv in lab.nodes:
            o = dict(nv.obj)
            o["status"] = {**o["status"], "conditions": [{"type": "Ready",
                                                           "status": "True" if nv.ready else "False"}]}
            items.append(o)
        if a.names:
            items = [o for o in items if o["metadata"]["name"] in a.names]
        if a.output == "json":
            output.emit_json({"apiVersion": "v1", "kind": "List", "items": items})
            return 0
        rows = [[o["metadata"]["name"], "Ready" if o["status"]["conditions"][0]["status"] == "True" else "NotReady",
                 o["metadata"]["annotations"].get("podlab.io/routing"), o["spec"]["podCIDR"],
                 o["status"]["addresses"][0]["address"]] for o in items]
        output.table(["NAME", "STATUS", "ROUTING", "POD-CIDR", "INTERNAL-IP"], rows)
        return 0
    raise PodlabError(f'unknown resource type "{a.kind}"; known: pods, nodes', obj=a.kind)


def cmd_exec(a: argparse.Namespace) -> int:
    lab = Lab.get(a.lab)
    argv = list(a.command)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise PodlabError("exec needs a command after --, e.g. podlab exec web-1 -- ip addr")
    ns = lab.target_ns(a.target)
    netns.setns(netns.open_fd(ns))
    try:
        os.execvp(argv[0], argv)
    except FileNotFoundError:
        print(f'podlab: exec: "{argv[0]}": executable file not found in $PATH', file=sys.stderr)
        return 127


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="podlab", description="Kubernetes pod networking on real Linux namespaces")
    p.add_argument("--lab", help="the lab to act on (needed when several are up)")
    sub = p.add_subparsers(dest="verb", required=True)

    s = sub.add_parser("up", help="build a lab from a topology file")
    s.add_argument("file")
    s.add_argument("--name", help="lab name (overrides the file's)")
    s.add_argument("--routing", help="routing mode: vxlan | host-gw | bgp (overrides the file's)")
    s.set_defaults(fn=cmd_up)

    s = sub.add_parser("down", help="remove a lab and everything it owns")
    s.add_argument("labs", nargs="*")
    s.set_defaults(fn=cmd_down)

    s = sub.add_parser("cleanup", help="remove what crashed labs left behind (by their records)")
    s.add_argument("--all", action="store_true", help="remove every lab, not only crashed ones")
    s.set_defaults(fn=cmd_cleanup)

    s = sub.add_parser("ls", help="list the labs on this machine")
    s.add_argument("-o", "--output", choices=["text", "json"], default="text")
    s.set_defaults(fn=cmd_ls)

    s = sub.add_parser("get", help="list pods or nodes (kubectl's columns)")
    s.add_argument("kind")
    s.add_argument("names", nargs="*")
    s.add_argument("-o", "--output", choices=["text", "wide", "json"], default="text")
    s.set_defaults(fn=cmd_get)

    s = sub.add_parser("exec", help="run a command in a pod (NAME) or node (node/NAME) namespace")
    s.add_argument("target")
    s.add_argument("command", nargs=argparse.REMAINDER)
    s.set_defaults(fn=cmd_exec)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if os.geteuid() != 0:
        print("podlab: needs root (network namespaces); run it with sudo", file=sys.stderr)
        return 1
    try:
        return args.fn(args)
    except PodlabError as e:
        print(f"podlab: error: {e}", file=sys.stderr)
        return e.exit_code or 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
