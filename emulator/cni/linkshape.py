"""``podlab-link``: a chained CNI plugin that shapes a pod's cable, the way Kubernetes drives ``bandwidth``.

A kubelet reads a pod's ``kubernetes.io/ingress-bandwidth``/``egress-bandwidth`` annotations and hands them to
every plugin of the conflist that declares the ``bandwidth`` capability, as ``runtimeConfig.bandwidth``; the
``bandwidth`` plugin, chained after the main plugin, then puts tbf qdiscs on the pod's host veth. podlab's shapes
also carry delay, jitter and loss (netem), so the capability here is ``podlabLink`` and its value the shape in
the topology file's words (``{"rate": "10mbit", "delay": "5ms"}``), taken from the pod annotation
``podlab.io/link``. The plugin shapes both ends of the cable: the pod's ``eth0`` (inside the pod's namespace,
what the pod sends) and the host veth named in ``prevResult`` (in the node's namespace, where the plugin runs:
what the pod receives). DEL and CHECK have nothing to undo: the qdiscs go with the interfaces.

The plugin is listed in every node's conflist (``cni.spec.bridge_conflist``), so ``cat 10-flannel.conflist``
shows how a pod gets its shape; a pod without the annotation passes through untouched.
"""
from __future__ import annotations

import os

from emulator.cni.spec import INVALID_CONFIG, CniRequest
from emulator.errors import CniError, PodlabError
from emulator.netlink import observe, tc
from emulator.netlink.rtnl import Rtnl
from emulator.topology import units

TYPE = "podlab-link"
CAPABILITY = "podlabLink"


def _host_iface(req: CniRequest, prev: dict) -> str | None:
    """The host end of the pod's veth, found as the bandwidth plugin finds it: the peer index of the pod's
    interface (IFLA_LINK), matched against the host-side interfaces of ``prevResult`` (in the node's namespace,
    where the plugin runs)."""
    try:
        fd = os.open(req.netns, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None  # the sandbox is gone: there is no cable to find
    try:
        with Rtnl.in_ns(fd) as rt:
            inside = observe.link(rt, req.ifname)
    finally:
        os.close(fd)
    if inside is None or inside.peer_index is None:
        return None
    with Rtnl() as rt:
        for i in prev.get("interfaces", []):
            if i.get("name") and not i.get("sandbox"):
                host = observe.link(rt, i["name"])
                if host is not None and host.index == inside.peer_index:
                    return i["name"]
    return None


def add(req: CniRequest, conf: dict, ctx: object = None) -> dict:
    prev = conf.get("prevResult") or {}
    raw = (conf.get("runtimeConfig") or {}).get(CAPABILITY)
    if not raw:
        return prev
    try:
        shape = units.parse_shape(dict(raw))
    except (units.UnitError, TypeError, ValueError) as e:
        raise CniError(f"invalid runtimeConfig.{CAPABILITY} {raw!r}: {e}", code=INVALID_CONFIG) from None
    mtu = int(conf.get("mtu") or 1500)
    try:
        tc.shape(req.netns, req.ifname, shape, mtu)
        host = _host_iface(req, prev)
        if host:
            tc.shape(None, host, shape, mtu)  # the node's namespace, where the plugin runs
    except PodlabError as e:
        raise CniError(f"shaping the pod's link failed: {e}") from None
    return prev


def delete(req: CniRequest, conf: dict, ctx: object = None) -> None:
    return None


def check(req: CniRequest, conf: dict, ctx: object = None, prev: dict | None = None) -> None:
    return None
