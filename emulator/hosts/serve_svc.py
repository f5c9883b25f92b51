"""The ops of ``podlab host serve`` that change a host's part after ``up``: Services pushed, pods applied/deleted.

- ``objects``: this host's pods and their statuses, for the controller's endpoints computation and its
  deployment controller (``deploy_across``), with why each local node would not take a pod ("" if it would:
  ``state.nodes.schedulable``).
- ``services``: make this host's Services and Endpoints equal to the controller's (``svcsync.diff``: Services
  written before their Endpoints, stale Endpoints deleted before their Services, so the local controller-manager
  never sees Endpoints without a Service), then wait until every local kube-proxy has applied them.
- ``apply_pod``: the pod, already placed on one of this host's nodes by the controller, applied as on one machine
  (``Lab.apply_pod``), then waited for until Running (so its IP can go into the Endpoints the controller pushes
  next); ``delete_pod``: deleted as on one machine, waited for until its agent removed it.
- ``pods``: the pods a Deployment's reconcile wants on this host (placed by the controller), all at once: each
  created with ``Lab.apply_pod`` (the code of ``apply_pod``) and each deleted with ``Lab.delete_pod``, then waited
  for together (the new ones Running, the old ones gone): one round per host whatever the number of pods.
"""
from __future__ import annotations

from typing import Any, Callable

Progress = Callable[[str], None]


def op_objects(req: dict, progress: Progress) -> dict:
    from emulator.lab.api import Lab
    from emulator.state import nodes as node_state
    lab = Lab(req["lab"])
    store = lab.store
    return {"pods": list(store.list("pods")), "statuses": list(store.list("pods", status=True)),
            "nodes": {n["metadata"]["name"]: node_state.schedulable(lab.paths, n) for n in store.list("nodes")}}


def op_services(req: dict, progress: Progress) -> dict:
    from emulator.hosts import svcsync
    from emulator.lab.api import Lab
    from emulator.services.component import wait_synced
    lab = Lab(req["lab"])
    store = lab.store
    svc_put, svc_gone = svcsync.diff(store.list("services"), req["services"])
    ep_put, ep_gone = svcsync.diff(store.list("endpoints"), req["endpoints"])
    for o in svc_put:
        store.put("services", o["metadata"]["name"], o)
    for o in ep_put:
        store.put("endpoints", o["metadata"]["name"], o)
    for ns, name in ep_gone:
        store.delete("endpoints", name, ns)
    for ns, name in svc_gone:
        store.delete("services", name, ns)
    nodes = [n.name for n in lab.nodes
             if n.obj["metadata"].get("annotations", {}).get("podlab.io/runtime") != "docker"]
    wait_synced(lab.paths, store, nodes, timeout=float(req.get("timeout", 20)))
    return {"written": len(svc_put) + len(ep_put), "deleted": len(svc_gone) + len(ep_gone), "nodes": nodes}


def op_apply_pod(req: dict, progress: Progress) -> dict:
    from emulator.lab.api import Lab
    lab = Lab(req["lab"])
    line = lab.apply_pod(req["obj"], req.get("source", "<controller>"))
    st: dict[str, Any] = {}
    if req.get("wait", True) and not line.endswith("unchanged"):
        st = lab.wait_pod(req["name"], timeout=float(req.get("timeout", 30)), namespace=req.get("namespace"))
    return {"line": line, "ip": st.get("podIP")}


def op_delete_pod(req: dict, progress: Progress) -> dict:
    from emulator.lab.api import Lab
    Lab(req["lab"]).delete_pod(req["name"], wait=req.get("wait", True), namespace=req.get("namespace"))
    return {"deleted": req["name"]}


def op_pods(req: dict, progress: Progress) -> dict:
    """Create ``create`` (pod manifests bound to this host's nodes) and delete ``delete`` ([namespace, name]),
    then wait until every new pod is Running and every deleted one is gone; kubectl's line for each."""
    import time
    from emulator.errors import LabTimeoutError, NotFoundError
    from emulator.lab.api import Lab
    lab = Lab(req["lab"])
    lines, made = [], []
    for ns, name in req.get("delete", []):
        try:
            lab.delete_pod(name, wait=False, namespace=ns)
            lines.append(f'pod "{name}" deleted')
        except NotFoundError:  # gone since the controller looked
            pass
    for obj in req.get("create", []):
        lines.append(lab.apply_pod(obj, req.get("source", "<controller>")))
        made.append((obj["metadata"].get("namespace") or "default", obj["metadata"]["name"]))
    deadline = time.monotonic() + float(req.get("timeout", 30))
    waiting = [("run", k) for k in made] + [("gone", tuple(k)) for k in req.get("delete", [])]
    while waiting:
        waiting = [(w, (ns, n)) for w, (ns, n) in waiting if
                   ((lab.store.get_status("pods", n, ns) or {}).get("phase") != "Running" if w == "run"
                    else lab.store.get_status("pods", n, ns) is not None)]
        if waiting and time.monotonic() > deadline:
            w, (ns, n) = waiting[0]
            raise LabTimeoutError(f"pod {ns}/{n} " + ("is not Running" if w == "run" else "was not removed") +
                                  f" after {req.get('timeout', 30)}s", obj=n)
        time.sleep(0.02 if waiting else 0)
    return {"lines": lines}


OPS: dict[str, Callable[[dict, Progress], Any]] = {
    "objects": op_objects, "services": op_services, "apply_pod": op_apply_pod, "delete_pod": op_delete_pod,
    "pods": op_pods}


def op_fault(req: dict, progress: Progress) -> Any:
    """``fail``/``heal`` of this host's nodes (``emulator.faults``, as on one machine): ``action`` is fail_node,
    heal_node, fail_link or heal_link (True if it changed something), list or heal_all (the faults, as dicts);
    across hosts, mac (a local node's uplink MAC), fail_link_across and heal_link_across (the link from a local
    node to another host's, cut at the local node's port)."""
    from emulator import faults
    from emulator.lab.api import Lab
    lab, action = Lab(req["lab"]), req["action"]
    if action == "list":
        return [f.as_dict() for f in faults.list_faults(lab)]
    if action == "heal_all":
        return [f.as_dict() for f in faults.heal_all(lab)]
    if action == "mac":
        return faults.node_mac(lab, req["nodes"][0])
    if action == "fail_link_across":  # nodes: [this host's node, another host's node]
        return faults.fail_link_across(lab, req["nodes"][0], req["nodes"][1], req["mac"])
    if action == "heal_link_across":
        return faults.heal_link(lab, req["nodes"][0], req["nodes"][1], remote=True)
    fn = {"fail_node": faults.fail_node, "heal_node": faults.heal_node, "fail_link": faults.fail_link,
          "heal_link": faults.heal_link}[action]
    return bool(fn(lab, *req["nodes"]))


def op_graph(req: dict, progress: Progress) -> dict:
    """This host's part of the lab's picture (``tools.graph.host_part``) against every node of the lab."""
    import dataclasses
    import ipaddress
    from emulator.lab.api import Lab
    from emulator.tools import graph
    from emulator.tools.graph_model import NodeInfo
    peers = [NodeInfo(p["name"], p["ip"], ipaddress.IPv4Network(p["podCIDR"])) for p in req["peers"]]
    model, pairs = graph.host_part(Lab(req["lab"]), peers)
    return {"model": model.as_dict(), "pairs": [dataclasses.asdict(ln) for ln in pairs]}


def op_trace(req: dict, progress: Progress) -> dict:
    """This host's part of a trace: from the source (``src``, ``dst``, ...) or, with ``resume``, from the frame
    another host sent out of its stretch; the result as data, with ``handoff`` if it left this host too."""
    from emulator.lab.api import Lab
    from emulator.tools import trace
    lab = Lab(req["lab"])
    if req.get("resume"):
        res = trace.resume(lab, req["resume"], req["src"], req["dst"], endpoint=req.get("endpoint"))
    else:
        res = trace.trace(lab, req["src"], req["dst"], req.get("proto"), req.get("port"), endpoint=req.get("endpoint"))
    return res.as_dict()


def op_namespace(req: dict, progress: Progress) -> str:
    from emulator.lab.api import Lab
    return Lab(req["lab"]).create_namespace(req["name"], req.get("labels") or None)


OPS["fault"] = op_fault
OPS["namespace"] = op_namespace
OPS["trace"] = op_trace
OPS["graph"] = op_graph
