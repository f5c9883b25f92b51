"""``podlab graph`` of a multi-host lab: every host draws its part, the controller merges one picture.

Two rounds over each host's one session: ``status`` gives every node's address and pod CIDR (each host knows
only its own nodes), then each host's ``graph`` reads its nodes' kernels against every node of the lab
(``tools.graph.host_part``: a route through ``flannel.1`` whose FDB names a node on another host is a tunnel to
it), and ``tools.graph_model.merge`` puts the parts together: groups labelled with their host, the underlay drawn
once with the stretch that joins the hosts, each node-to-node line once.
"""
from __future__ import annotations

from emulator.errors import LabNotFoundError
from emulator.hosts import records
from emulator.hosts.fanout import each, raise_first
from emulator.hosts.sessions import for_command
from emulator.tools.graph_model import GraphModel, Line, from_dict, merge


def model(lab: str) -> GraphModel:
    rec = records.load(lab)
    if rec is None:
        raise LabNotFoundError(lab, known=records.all_labs())
    hosts = [records.host_of(d) for d in rec["hosts"]]
    with for_command() as ss:
        st = raise_first(each(hosts, lambda h: ss.get(h).request("status", lab=lab, timeout=20)))
        peers = [{"name": n["name"], "ip": n["ip"], "podCIDR": n["podCIDR"]} for r in st.values()
                 for n in r["nodes"] if n.get("ip")]
        parts = raise_first(each(hosts, lambda h: ss.get(h).request("graph", lab=lab, peers=peers, timeout=30)))
    tunnel = rec.get("tunnel") or {}
    note = (f"stretched over {len(hosts)} hosts ({', '.join(h.name for h in hosts)}):\nstretch0, VXLAN VNI "
            f"{tunnel.get('vni')}, UDP {tunnel.get('port')}")
    return merge(f"lab {lab} ({rec.get('routing')}) across {len(hosts)} hosts",
                 {h: (from_dict(p["model"]), [Line(**ln) for ln in p["pairs"]]) for h, p in parts.items()}, note)
