"""Built-in ``loopback`` CNI plugin: brings ``lo`` up in the pod's namespace (as the container runtime does)."""
from __future__ import annotations

import os

from emulator.cni.spec import UNKNOWN_CONTAINER, CniRequest, Result
from emulator.errors import CniError
from emulator.netlink import msgs
from emulator.netlink.rtnl import Rtnl


def add(req: CniRequest, conf: dict, ctx: object = None) -> dict:
    try:
        fd = os.open(req.netns, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise CniError(f"failed to open netns {req.netns!r}: {e.strerror}", code=UNKNOWN_CONTAINER) from None
    try:
        with Rtnl.in_ns(fd) as rt:
            rt.batch([msgs.link_set(1, "lo", up=True)])
    finally:
        os.close(fd)
    return Result(interfaces=[{"name": "lo", "mac": "00:00:00:00:00:00", "sandbox": req.netns}],
                  ips=[{"address": "127.0.0.1/8", "interface": 0}]).to_dict()


def delete(req: CniRequest, conf: dict, ctx: object = None) -> None:
    return None  # lo goes away with the namespace


def check(req: CniRequest, conf: dict, ctx: object = None, prev: dict | None = None) -> None:
    return None
