"""Lab lifecycle verbs: ``up``, ``down``, ``cleanup``, ``ls``."""
from __future__ import annotations

import argparse

from emulator.cli import common, host_cmds, output
from emulator.errors import AlreadyUp
from emulator.state import record
from emulator.lab import teardown
from emulator.lab.api import Lab


def cmd_up(a: argparse.Namespace) -> int:
    from emulator.lab import builder
    from emulator.topology.loader import load
    from emulator.topology import hosts_section
    topo = load(a.file, name=a.name, routing=a.routing, hosts=a.hosts)
    if hosts_section.of(topo) is not None:
        return host_cmds.up(a, topo)
    _neighbour_limits(topo, a.raise_neigh_limits)
    try:
        stuck = builder.up(topo, progress=output.progress)
    except AlreadyUp as e:
        print(str(e))
        return 0
    print(f"lab {topo.name} is up: {len(topo.nodes)} nodes, {len(topo.pods)} pods, routing {topo.routing}")
    for st in stuck:
        print(f"  pod {st.get('name')} is {output.pod_status_word(st)}: {st.get('message')}")
    return 0 if all(_cni_none(topo, st) for st in stuck) else 6


def _neighbour_limits(topo, raise_them: bool) -> None:
    """Warn (stderr) when the lab can overflow the kernel's neighbour table; raise the limits only if asked."""
    from emulator.netlink import neightable
    try:
        lim = neightable.read_limits()
    except (OSError, ValueError):
        return
    stats = neightable.read_stats()
    in_use = stats.entries if stats else 0
    need = neightable.lab_estimate(len(topo.nodes), len(topo.pods), external=dict(topo.extra).get("external")
                                   is not None)
    if raise_them:
        for key, old, new in neightable.raise_limits(neightable.suggested(need + in_use, lim)):
            output.progress(f"raised {key} from {old} to {new} in the root namespace (--raise-neigh-limits; "
                            f"machine-wide, kept after `down`; put it back with: sudo sysctl -w {key}={old})")
        return
    msg = neightable.warning(need, in_use, lim)
    if msg:
        output.progress("warning: " + msg)


def _cni_none(topo, st: dict) -> bool:
    """A pod the topology itself leaves Pending: on a node without CNI, or refused by the scheduler."""
    if st.get("reason") == "Unschedulable":
        return True
    try:
        return topo.node(st.get("nodeName", "")).cni == "none"
    except KeyError:
        return False


def cmd_down(a: argparse.Namespace) -> int:
    labs = a.labs or ([a.lab] if a.lab else [])
    if not labs:
        labs = [host_cmds.multihost_lab(None) or Lab.get().name]
    code = 0
    for name in labs:
        if host_cmds.multihost_lab(name) is not None:
            code = max(code, host_cmds.down(name))
        elif teardown.destroy(name, progress=output.progress):
            print(f"lab {name} removed")
        else:
            print(f"lab {name} is not present; nothing to do")
    return code


def cmd_cleanup(a: argparse.Namespace) -> int:
    removed = host_cmds.cleanup(a.all)
    for name in record.all_labs():
        rec = record.load(name) or {}
        if a.all or record.crashed(rec):
            teardown.destroy(name, progress=output.progress)
            print(f"lab {name} ({rec.get('status')}, owner gone) removed")
            removed += 1
    for name in record.orphan_dirs():  # our own state directory, no record: whatever it names is removed too
        teardown.destroy(name, progress=output.progress)
        print(f"state directory of lab {name} (no record) removed")
        removed += 1
    if not removed:
        print("nothing to clean up" + ("" if a.all else " (no crashed lab; use --all to remove every lab)"))
    return 0


def cmd_ls(a: argparse.Namespace) -> int:
    rows, items = [], []
    for name in record.all_labs():
        rec = record.load(name) or {}
        lab = Lab(name)
        npods = len(lab.store.keys("pods"))
        status = "crashed" if record.crashed(rec) else rec.get("status")
        items.append({"name": name, "status": status, "nodes": len(rec.get("nodes", [])), "pods": npods,
                      "routing": rec.get("routing"), "source": rec.get("source"), "createdAt": rec.get("createdAt")})
        rows.append([name, status, len(rec.get("nodes", [])), npods, rec.get("routing"), output.age(rec.get("createdAt")),
                     rec.get("source")])
    if a.output == "json":
        output.emit_list(items)
    else:
        output.table(["NAME", "STATUS", "NODES", "PODS", "ROUTING", "AGE", "SOURCE"], rows)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    s = common.verb(sub, "up", help="build a lab from a topology file")
    s.add_argument("file")
    s.add_argument("--name", help="lab name (overrides the file's)")
    s.add_argument("--routing", help="routing mode: vxlan | host-gw | bgp (overrides the file's)")
    s.add_argument("--hosts", help="an inventory file: the hosts the lab spans (replaces the file's hosts)")
    s.add_argument("--raise-neigh-limits", action="store_true",
                   help="raise the kernel's neighbour table limits (net.ipv4.neigh.default.gc_thresh2/3, machine-wide) "
                        "to fit this lab, if they are lower; off by default: podlab then only warns")
    s.set_defaults(fn=cmd_up)

    s = common.verb(sub, "down", help="remove a lab and everything it owns")
    s.add_argument("labs", nargs="*")
    s.set_defaults(fn=cmd_down)

    s = common.verb(sub, "cleanup", help="remove what crashed labs left behind (by their records)")
    s.add_argument("--all", action="store_true", help="remove every lab, not only crashed ones")
    s.set_defaults(fn=cmd_cleanup)

    s = common.verb(sub, "ls", help="list the labs on this machine")
    s.add_argument("-o", "--output", choices=["text", "json"], default="text")
    s.set_defaults(fn=cmd_ls)
