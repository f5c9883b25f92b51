"""The topology file's node ``link:`` shapes, applied when a lab comes up (a lab component, see ``lab.components``).

``nodes[i].link`` shapes a node's cable to the underlay in both directions (the node's ``eth0`` and its port on
``lan0``), applied in ``start`` (the network exists, the pods do not yet). A pod's ``link:`` is not applied here:
it travels in the pod's manifest as annotations (``state.manifests.link_annotations``) and the node's CNI chain
applies it when the sandbox is made (``cni.linkshape``), as Kubernetes' ``bandwidth`` plugin does — so a
recreated pod gets its shape again with no help from outside the node. A shape needing netem on a kernel without
it fails ``up`` (after rollback) with ``NetemUnavailableError``.
"""
from __future__ import annotations

import json

from emulator.lab.api import Lab
from emulator.lab.components import BuildContext, Component
from emulator.tools import shaping, targets
from emulator.errors import NetemUnavailableError
from emulator.topology import units
from emulator.topology.model import LinkShape, Topology

ANNOTATION = "podlab.io/link"


def shape_from_annotations(manifest: dict) -> LinkShape | None:
    raw = (manifest.get("metadata", {}).get("annotations") or {}).get(ANNOTATION)
    return units.parse_shape(json.loads(raw)) if raw else None


def shape_both_ends(lab: Lab, target: str, shape: LinkShape) -> list[str]:
    point = targets.resolve(lab, target)
    done = shaping.apply(point, shape)
    other = targets.peer(lab, point)
    if other is not None:
        done += shaping.apply(other, shape)
    return done


class LinkShaping(Component):
    name = "link-shaping"
    order = 300

    def wanted(self, topo: Topology) -> bool:
        return any(n.link for n in topo.nodes) or any(p.link for p in topo.pods)

    def start(self, ctx: BuildContext) -> None:
        netem = [x.name for x in (*ctx.topo.nodes, *ctx.topo.pods) if x.link and x.link.needs_netem]
        if netem and not shaping.netem_available():
            raise NetemUnavailableError(f"the link of {', '.join(netem)} asks for delay/jitter/loss: "
                                        f"{shaping.NETEM_MISSING}", obj=netem[0])
        lab = Lab(ctx.topo.name)
        for n in ctx.topo.nodes:
            if n.link:
                shape_both_ends(lab, f"node/{n.name}", n.link)
                ctx.progress(f"link of node {n.name} shaped: {units.shape_dict(n.link)}")
