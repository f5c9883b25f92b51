"""The topology file's ``link:`` shapes, applied when a lab comes up (a lab component, see ``lab.components``).

``nodes[i].link`` shapes a node's cable to the underlay in both directions (the node's ``eth0`` and its port on
``lan0``); ``pods[i].link`` shapes a pod's cable (its ``eth0`` and the node-side veth). Node shapes are applied in
``start`` (the network exists, the pods do not yet); pod shapes in ``ready`` (every pod is Running, so every
veth exists). Each pod's shape is also written into its manifest as annotations, the way Kubernetes' bandwidth
plugin is driven (``kubernetes.io/ingress-bandwidth``/``egress-bandwidth`` for the rate, ``podlab.io/link`` for
the whole shape), so ``apply_pod_link`` can re-apply it when an agent recreates a pod's sandbox.
A shape needing netem on a kernel without it fails ``up`` (after rollback) with ``NetemUnavailableError``.
"""
from __future__ import annotations

import json

from emulator.lab.api import Lab
from emulator.lab.components import BuildContext, Component, register
from emulator.tools import shaping, targets
from emulator.topology import units
from emulator.tools.errors import NetemUnavailableError
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


def apply_pod_link(lab_name: str, pod: str, namespace: str = "default") -> list[str]:
    """Re-apply a pod's ``link:`` shape from its manifest annotation (after its sandbox was (re)created).
    Returns the tc commands run; nothing if the pod has no shape."""
    lab = Lab(lab_name)
    shape = shape_from_annotations(lab.store.get("pods", pod, namespace) or {})
    ref = pod if namespace == "default" else f"{namespace}/{pod}"
    return shape_both_ends(lab, f"pod/{ref}", shape) if shape else []


@register
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
        for p in ctx.topo.pods:
            if p.link:
                obj = ctx.store.get("pods", p.name, p.namespace)
                if obj is None:
                    continue
                ann = obj["metadata"].setdefault("annotations", {})
                ann[ANNOTATION] = json.dumps(units.shape_dict(p.link))
                if p.link.rate_bps:
                    ann["kubernetes.io/ingress-bandwidth"] = ann["kubernetes.io/egress-bandwidth"] = \
                        str(p.link.rate_bps)  # a Kubernetes quantity in bit/s
                ctx.store.put("pods", p.name, obj)

    def ready(self, ctx: BuildContext) -> None:
        lab = Lab(ctx.topo.name)
        shaped = [p.name for p in ctx.topo.pods if p.link and apply_pod_link(lab.name, p.name, p.namespace)]
        if shaped:
            ctx.progress(f"links of {len(shaped)} pods shaped")
