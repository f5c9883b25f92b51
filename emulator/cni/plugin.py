"""Executable entry of the built-in plugins: ``python -m emulator.cni.plugin TYPE`` speaks the CNI exec protocol.

The agent writes tiny wrapper scripts named ``bridge``, ``loopback`` and ``podlab-link`` into a built-in node's CNI bin directory
so that the node's configuration reads exactly like a real one; when the agent itself calls them it takes the
in-process shortcut (same functions, same JSON shapes) instead of paying a Python start per pod.
"""
from __future__ import annotations

import json
import os
import sys

from emulator.cni import bridge, linkshape, loopback, portmap
from emulator.cni.spec import DECODE_FAILURE, INVALID_CONFIG, CniRequest, error_json, version_json
from emulator.errors import CniError, PodlabError

BUILTIN = {"bridge": bridge, "loopback": loopback, linkshape.TYPE: linkshape, portmap.TYPE: portmap}


def call(plugin_type: str, req: CniRequest, conf: dict, ctx: object = None) -> dict | None:
    mod = BUILTIN.get(plugin_type)
    if mod is None:
        raise CniError(f"failed to find plugin {plugin_type!r}", code=INVALID_CONFIG)
    if req.command == "ADD":
        return mod.add(req, conf, ctx)
    if req.command == "DEL":
        mod.delete(req, conf, ctx)
        return None
    if req.command == "CHECK":
        mod.check(req, conf, ctx, conf.get("prevResult"))
        return None
    raise CniError(f"unknown CNI_COMMAND {req.command!r}")


def main(argv: list[str]) -> int:
    plugin_type = argv[1] if len(argv) > 1 else os.path.basename(argv[0])
    version = "1.0.0"
    try:
        if os.environ.get("CNI_COMMAND") == "VERSION":
            print(version_json())
            return 0
        req = CniRequest.from_env(dict(os.environ))
        try:
            conf = json.loads(sys.stdin.read() or "{}")
        except ValueError as e:
            raise CniError(f"error parsing configuration: {e}", code=DECODE_FAILURE) from None
        version = conf.get("cniVersion", version)
        out = call(plugin_type, req, conf)
        if out is not None:
            print(json.dumps(out))
        return 0
    except CniError as e:
        print(error_json(e, version))
        return 1
    except PodlabError as e:
        print(error_json(CniError(str(e)), version))
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
