"""``get``: kubectl-shaped listings of pods and nodes (``-o wide``, ``-o json``)."""
from __future__ import annotations

import argparse

from emulator.cli import output
from emulator.errors import PodlabError
from emulator.lab.api import Lab


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



def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("get", help="list pods or nodes (kubectl's columns)")
    s.add_argument("kind")
    s.add_argument("names", nargs="*")
    s.add_argument("-o", "--output", choices=["text", "wide", "json"], default="text")
    s.set_defaults(fn=cmd_get)
