"""Verbs of labs that span several machines: ``host serve``, ``host check``, ``host ls``, ``host sync``, and the
multi-host side of ``up``, ``down``, ``cleanup``, ``get``, ``exec``, ``check``, ``capture``, ``apply``, ``delete``
and ``scale`` (``emulator.hosts``).

The lab verbs call ``multihost_lab`` first: a lab whose controller record exists here (``hosts.records``) is
acted on through its hosts; every other lab goes the usual way.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from emulator.cli import common, host_objects, output
from emulator.errors import AlreadyUp, HostError, UsageError
from emulator.hosts import controller, labcheck, records, serve
from emulator.hosts.sessions import for_command
from emulator.state import record
from emulator.topology import hosts_section
from emulator.topology.loader import load
from emulator.topology.model import Topology


def multihost_lab(name: str | None) -> str | None:
    """The multi-host lab a verb acts on: ``name`` if it is one; with no name, the only lab if it is one. On a
    controller that is also one of the lab's hosts, the lab's local part (an ordinary lab of the same name) is
    reached through the multi-host lab, like the other hosts' parts."""
    if os.environ.get("PODLAB_LOCAL_PART"):  # run by a host's serve for the controller: this machine's part
        return None
    mine = records.all_labs()
    if name is not None:
        return name if name in mine else None
    return mine[0] if len(mine) == 1 and all(lab == mine[0] for lab in record.all_labs()) else None


def up(a: argparse.Namespace, topo: Topology) -> int:
    inventory = Path(a.hosts).read_text() if getattr(a, "hosts", None) else None
    try:
        res = controller.up(topo, progress=output.progress, text=Path(a.file).read_text(), inventory=inventory,
                            name=a.name, routing=a.routing)
    except AlreadyUp as e:
        print(str(e))
        return 0
    hs = hosts_section.of(topo)
    assert hs is not None
    print(f"lab {topo.name} is up on {res['hosts']} hosts: {len(topo.nodes)} nodes, {len(topo.pods)} pods, routing "
          f"{topo.routing}, underlay MTU {res['mtu']}")
    for st in res["stuck"]:
        print(f"  pod {st.get('name')} is {output.pod_status_word(st)}: {st.get('message')}")
    return 0 if not res["stuck"] else 6


def down(name: str) -> int:
    rep = controller.down(name, progress=output.progress)
    if rep.unreachable:
        print(f"lab {name} removed from {', '.join(rep.removed) or 'no host'}; NOT from unreachable "
              f"{', '.join(rep.unreachable)} (run `podlab down {name}` again when it is back)")
        return 1
    print(f"lab {name} removed from hosts {', '.join(rep.removed)}")
    return 0


def cleanup(everything: bool = False) -> int:
    """Finish every multi-host removal left pending (a ``down`` that found a host away, a crashed ``up``), or
    with ``everything`` remove every multi-host lab; returns how many labs were worked on."""
    n = 0
    for name in records.all_labs():
        rec = records.load(name) or {}
        if everything or records.crashed(rec):
            down(name)
            n += 1
    return n


def get(a: argparse.Namespace, lab: str, kind: str, names: list[str]) -> int:
    st = controller.status(lab)
    for h, why in st["unreachable"].items():
        output.progress(f"warning: {why}")
    if kind == "nodes":
        items = [n for n in st["nodes"] if not names or n["name"] in names]
        rec = st["record"]
        if a.output == "json":
            output.emit_json(common.one_or_list(items, names))
            return 0
        output.table(["NAME", "STATUS", "HOST", "INTERNAL-IP"],
                     [[n["name"], n["status"], n["host"], rec["nodeIPs"].get(n["name"])] for n in items])
        return 0
    if kind == "pods":
        items = [p for p in st["pods"] if not names or p["name"] in names]
        if a.output == "json":
            output.emit_json(common.one_or_list(items, names))
            return 0
        output.table(["NAME", "STATUS", "IP", "NODE", "HOST"],
                     [[p["name"], p["phase"], p["ip"], p["node"], p["host"]] for p in items])
        return 0
    if kind in ("services", "endpoints", "deployments", "networkpolicies"):
        return host_objects.get(a, lab, kind, names)
    raise UsageError(f"get {kind} is not available across hosts yet (lab {lab}; nodes, pods, services, "
                     "endpoints, deployments and networkpolicies are)", obj=kind)


def apply(lab: str, docs: list[dict], source: str) -> int:
    from emulator.hosts import changes
    for line in changes.apply(lab, docs, source, output.progress):
        print(line)
    return 0


def delete(lab: str, kind: str, names: list[str], a: argparse.Namespace) -> int:
    from emulator.hosts import changes
    for line in changes.delete(lab, kind, names, getattr(a, "namespace", None), getattr(a, "wait", True),
                               output.progress):
        print(line)
    return 0


def scale(lab: str, name: str, replicas: int, namespace: str | None) -> int:
    from emulator.hosts import changes
    print(changes.scale(lab, name, replicas, namespace, output.progress))
    return 0


def forwarded(lab: str, args: argparse.Namespace, argv: list[str]) -> int:
    """A verb about one pod or node (``emulator.hosts.forward.VERBS``), run on its host; that host's output and
    exit status (several hosts: each one's output under its name, ``-o json`` merged, the worst status)."""
    from emulator.hosts import forward
    if args.verb == "logs" and getattr(args, "follow", False):
        return forward.follow(lab, args, sys.stdout.buffer)
    kind = str(args.kind).split("/")[0].lower() if args.verb == "describe" else ""
    if kind in ("deploy", "deployment", "deployments"):  # the controller's, not a host's
        return host_objects.describe_deployment(lab, args)
    argv = _without_lab(argv)
    if args.verb == "netpol" and args.netpol_verb == "matrix" and args.probe:
        return _probed_matrix(lab, args, argv)
    results = forward.run(lab, args.verb, args, argv)
    if len(results) == 1:
        r = results[0][1]
        sys.stdout.write(r.stdout)
        sys.stderr.write(r.stderr)
        return r.returncode
    if getattr(args, "output", None) == "json" and all(r.returncode == 0 for _h, r in results):
        sys.stdout.write(forward.merged_json(results))
    else:
        for host, r in results:
            print(f"# host {host}")
            sys.stdout.write(r.stdout)
            sys.stderr.write(r.stderr)
    return max(r.returncode for _h, r in results)


def _probed_matrix(lab: str, args: argparse.Namespace, argv: list[str]) -> int:
    """``netpol matrix --probe`` across hosts: every host probes from its own pods to every pod of the lab
    (``--rows-here``), the rows joined into the lab's table."""
    from emulator.cli import netpol_cmds
    from emulator.hosts import forward
    argv = _without(argv, "-o", "--output")
    results = forward.run(lab, args.verb, args, [*argv, "--rows-here", "-o", "json"])
    parts = []
    for host, r in results:
        if r.returncode not in (0, 1) or not r.stdout.strip():
            sys.stderr.write(r.stderr)
            raise UsageError(f"host {host}: netpol matrix --probe failed (exit {r.returncode})", obj=host)
        parts.append(netpol_cmds.from_json(json.loads(r.stdout)))
    return netpol_cmds.show_matrix(netpol_cmds.merge_rows(parts), args.output, True, args.via)


def _without_lab(argv: list[str]) -> list[str]:
    return _without(argv, "--lab")


def _without(argv: list[str], *flags: str) -> list[str]:
    """``argv`` without the options ``flags`` (``-o json``, ``--lab=L``, ``-ojson``) and their values."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a in flags:
            skip = True
        elif not any(a.startswith(f + "=") or (len(f) == 2 and a.startswith(f) and len(a) > 2) for f in flags):
            out.append(a)
    return out


def exec_(lab: str, target: str, argv: list[str], interactive: bool = False) -> int:
    """``podlab exec`` of a multi-host lab, on the target's host: its output and exit status; ``interactive``
    (``-i``): over a channel of its own, stdin streamed, the output as it comes (``forward.interactive``)."""
    with for_command() as ss:  # where the target is, then the command: over the same connection to its host
        st = controller.status(lab, ss)
        where = controller.where(st)  # pods, nodes, and the external host (on the host of the first node)
        if target == "external" and target not in where:
            raise UsageError(f"multi-host lab {lab} has no external network (a topology gets one with an "
                             "'external:' section or Services)", obj=target)
        if target not in where:
            raise UsageError(f"{target} is no pod or node of multi-host lab {lab}", obj=target)
        h = records.host_of(next(d for d in st["record"]["hosts"] if d["name"] == where[target]))
        if not interactive:
            r = ss.get(h).request("exec", lab=lab, target=target, argv=argv, timeout=120)
    if interactive:
        from emulator.hosts import forward
        return forward.interactive(lab, h, ["exec", target, "--", *argv], sys.stdin.buffer, sys.stdout.buffer,
                                   sys.stderr.buffer)
    sys.stdout.write(r["stdout"])
    sys.stderr.write(r["stderr"])
    return int(r["returncode"])


def run(lab: str, pod: dict, argv: list[str], a: argparse.Namespace) -> int:
    """``podlab run`` on a multi-host lab: the pod applied as ``apply`` places it (on any host, answering once it
    runs), then the command in it on its host (its output and exit status), then ``--rm`` deletes it."""
    from emulator.hosts import changes
    for line in changes.apply(lab, [pod], "podlab run", output.progress):
        print(line, file=sys.stderr)
    ns = pod.get("namespace") or "default"
    st = controller.status(lab)
    me = next((p for p in st["pods"] if p["name"] == pod["name"] and (p.get("namespace") or "default") == ns), {})
    if not argv:
        print(f"pod {pod['name']} is Running with IP {me.get('ip')} on {me.get('node')} (host {me.get('host')})")
        return 0
    try:
        return exec_(lab, pod["name"], argv, interactive=bool(a.interactive))
    finally:
        if a.rm:
            for line in changes.delete(lab, "pods", [pod["name"]], ns, True, output.progress):
                print(line, file=sys.stderr)


COUNT_ONLY_BOUND = 60.0  # seconds a `capture -c N` across hosts waits at most for N packets at every point


def capture(lab: str, a: argparse.Namespace) -> int:
    """``podlab capture`` of a multi-host lab: every host captures its points, one merged pcapng is written."""
    import json
    import os
    import tempfile

    from emulator.hosts import capture as across
    from emulator.tools import decode
    from emulator.tools.capture import give_to_user
    if not (a.write or a.decode or a.output == "json"):
        raise UsageError(f"capture on multi-host lab {lab} writes a file: give -w FILE (or --decode, -o json); "
                         "streaming to stdout is for one host's points", obj=lab)
    if a.nftrace:
        raise UsageError(f"capture --nftrace is not available across hosts yet (lab {lab})", obj=lab)
    if not (a.count or a.duration):
        raise UsageError(f"capture on multi-host lab {lab} needs -c N or -d SECONDS (each host captures until "
                         "then)", obj=lab)
    m = across.capture(lab, a.points, bpf=a.filter, count=a.count, duration=a.duration or COUNT_ONLY_BOUND,
                       progress=output.progress)
    if a.write:
        path = a.write
    else:
        fd, path = tempfile.mkstemp(prefix="podlab-", suffix=".pcapng")
        os.close(fd)
    try:
        n = across.write(path, m)
        if a.write:
            give_to_user(path)
        if a.output == "json":
            report = {"file": path if a.write else None, "packets": n,
                      "points": [{"name": k, "packets": v} for k, v in m.counts.items()],
                      "clockOffsets": [{"host": o.host, "seconds": o.seconds, "uncertainty": o.uncertainty}
                                       for o in m.offsets]}
            if a.decode:
                report["decoded"] = [ln.as_dict() for ln in decode.decode(path)[0]]
            print(json.dumps(report, indent=2))
            return 0
        per = ", ".join(f"{k} {v}" for k, v in m.counts.items())
        print(f"{n} packets ({per})" + (f" written to {path}" if a.write else ""))
        print("clock offsets against the controller, applied: " + ", ".join(o.text() for o in m.offsets))
        if a.decode:
            decoded, how = decode.decode(path)
            print(f"decoded by {how} (VXLAN on UDP {decode.VXLAN_PORT}):")
            for ln in decoded:
                print(ln.text())
    finally:
        if not a.write:
            os.unlink(path)
    return 0


def check(lab: str, fmt: str) -> int:
    r = labcheck.lab(lab, output.progress)
    if fmt == "json":
        output.emit_json(r)
    else:
        sys.stdout.write(labcheck.lab_text(r))
    return 0 if r["ok"] else 1


def cmd_stream(a: argparse.Namespace) -> int:
    from emulator.hosts import serve_stream  # (the entry runs it without the CLI; this is the same, reached here)
    return serve_stream.main(a.spec)


def cmd_serve(a: argparse.Namespace) -> int:
    return serve.serve(lambda: None)  # reached through the full CLI, which installed the components already


def cmd_check(a: argparse.Namespace) -> int:
    if a.file:
        topo = load(a.file, hosts=a.hosts)
        hs = hosts_section.of(topo)
        if hs is None:
            raise UsageError(f"{a.file} names no hosts; give --hosts inventory.yaml", obj=a.file)
        hosts, port = list(hs.hosts), hs.tunnel_port
    elif a.hosts:
        inv = hosts_section.load_inventory(a.hosts)
        hosts, port = list(inv[0]), inv[2] or hosts_section.DEFAULT_TUNNEL_PORT
    else:
        raise UsageError("podlab host check needs a topology FILE with hosts, or --hosts inventory.yaml")
    rows = labcheck.hosts(hosts, port)
    if a.output == "json":
        output.emit_list(rows)
    else:
        output.table(["HOST", "ADDRESS", "PODLAB", "NIC", "MTU", "UNDERLAY-MTU", "RESULT"],
                     [[r["host"], r["address"], r.get("version", "-"), r.get("nic") or "-", r.get("mtu") or "-",
                       r.get("underlayMtu", "-"), "ok" if r["ok"] else r.get("problem")] for r in rows])
    return 0 if all(r["ok"] for r in rows) else 1


def cmd_sync(a: argparse.Namespace) -> int:
    """Push now what every apply/delete pushes: the Deployments reconciled across the hosts, the Services with
    the Endpoints computed from every host's pods, the NetworkPolicies with every host's view of the others' pods."""
    from emulator.hosts import converge
    lab = multihost_lab(getattr(a, "lab", None))
    if lab is None:
        raise UsageError("podlab host sync acts on a multi-host lab; name it with --lab", obj="sync")
    rec = records.load(lab) or {}
    if not rec.get("services") and not rec.get("netpol"):
        raise UsageError(f"multi-host lab {lab} has neither Services (no services: or kubeProxy: section) nor "
                         "NetworkPolicies: nothing to push", obj=lab)
    with for_command() as ss:
        r = converge.after_change(lab, rec, [records.host_of(d) for d in rec["hosts"]], ss.get, output.progress)
    said = []
    if "services" in r:
        said.append(f"{r['services']['services']} Services and their Endpoints pushed to {len(rec['hosts'])} hosts; "
                    f"kube-proxy synced on {r['services']['nodes']} nodes")
    if "netpol" in r:
        n = r["netpol"]["policies"]
        said.append(f"{n} NetworkPolic{'y' if n == 1 else 'ies'} and every host's pods pushed to {len(rec['hosts'])} "
                    f"hosts; kube-network-policies synced on {r['netpol']['nodes']} nodes")
    print(f"lab {lab}: " + "; ".join(said))
    return 0


def cmd_ls(a: argparse.Namespace) -> int:
    rows = []
    for name in records.all_labs():
        rec = records.load(name) or {}
        rows.append([name, rec.get("status"), ",".join(d["name"] for d in rec.get("hosts", [])),
                     ",".join(rec.get("pending", [])) or "-", len(rec.get("nodes", [])), rec.get("routing"),
                     rec.get("mtu")])
    output.table(["NAME", "STATUS", "HOSTS", "PARTS-LEFT-ON", "NODES", "ROUTING", "MTU"], rows)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = common.verb(sub, "host", help="labs over several machines: serve (the host side), check, ls")
    acts = common.actions(p, "host_action", "ACTION")
    s = common.verb(acts, "serve", help="the host side of a multi-host lab (run by the controller over SSH)")
    s.set_defaults(fn=cmd_serve)
    s = common.verb(acts, "stream", help="one exec, logs or port-forward session of the controller's API server, on "
                                         "the pod's host (run by the controller over SSH)")
    s.add_argument("spec", help="the session, as JSON (emulator/hosts/serve_stream.py)")
    s.set_defaults(fn=cmd_stream)
    s = common.verb(acts, "check", help="can every host take part? (SSH, sudo, podlab version, NIC MTU, vxlan, port)")
    s.add_argument("file", nargs="?", help="a topology with a hosts section")
    s.add_argument("--hosts", help="an inventory file (a hosts list)")
    s.add_argument("-o", "--output", choices=["text", "json"], default="text")
    s.set_defaults(fn=cmd_check)
    s = common.verb(acts, "ls", help="the multi-host labs this controller knows, and where parts are left")
    s.set_defaults(fn=cmd_ls)
    s = common.verb(acts, "sync", help="push the Services and Endpoints (from every host's pods) to every host now")
    s.set_defaults(fn=cmd_sync)


__all__ = ["HostError", "capture", "check", "cleanup", "down", "exec_", "get", "multihost_lab", "register", "run", "up"]
