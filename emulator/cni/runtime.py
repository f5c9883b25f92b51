"""The container runtime's side of CNI (what libcni does for containerd): find the config, call the plugins.

The node's configuration directory (``<node root>/etc/cni/net.d``) is read like a kubelet does: the first
``*.conflist`` (or ``*.conf``) by name; none at all is the state every new cluster is in before a network add-on
is installed, reported as "network plugin not ready: cni config uninitialized". ``loopback`` is called first,
then each plugin of the list in order with the previous result chained in (``prevResult``); DEL goes in reverse.
A plugin type resolves either to the built-in Python implementation (node ``cni: builtin``, called in-process)
or to an executable in the node's CNI path (``cni: reference``: Debian's /usr/lib/cni, called with the CNI exec
protocol), so one agent drives both kinds of node.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from emulator.cni import plugin
from emulator.cni.bridge import Context
from emulator.cni.spec import CNI_VERSION, INVALID_CONFIG, CniRequest, Result
from emulator.errors import CniError, CniNotReady

NOT_READY = "network plugin not ready: cni config uninitialized"
LOOPBACK_CONF = {"cniVersion": CNI_VERSION, "name": "cni-loopback", "type": "loopback"}


class Runtime:
    def __init__(self, conf_dir: Path, bin_dirs: list[str], builtin: bool = True) -> None:
        self.conf_dir, self.bin_dirs, self.builtin = Path(conf_dir), bin_dirs, builtin
        self.ctx = Context()
        self._conf: dict | None = None
        self._conf_mtime = 0.0

    def config(self) -> dict:
        try:
            st = self.conf_dir.stat()
            files = sorted(p for p in self.conf_dir.iterdir() if p.suffix in (".conflist", ".conf"))
        except FileNotFoundError:
            files, st = [], None
        if not files:
            raise CniNotReady(NOT_READY, code=INVALID_CONFIG)
        if self._conf is None or (st and st.st_mtime != self._conf_mtime):
            try:
                conf = json.loads(files[0].read_text())
            except ValueError as e:
                raise CniError(f"{files[0]}: invalid JSON: {e}", code=INVALID_CONFIG) from None
            if "plugins" not in conf:  # a single-plugin .conf
                conf = {"cniVersion": conf.get("cniVersion", CNI_VERSION), "name": conf.get("name"),
                        "plugins": [conf]}
            self._conf, self._conf_mtime = conf, st.st_mtime if st else 0.0
        return self._conf

    def ready(self) -> bool:
        try:
            self.config()
            return True
        except CniError:
            return False

    def _invoke(self, conf: dict, req: CniRequest) -> dict | None:
        ptype = conf.get("type", "")
        if self.builtin and ptype in plugin.BUILTIN:
            return plugin.call(ptype, req, conf, self.ctx)
        exe = next((os.path.join(d, ptype) for d in self.bin_dirs if os.access(os.path.join(d, ptype), os.X_OK)),
                   None)
        if exe is None:
            raise CniError(f"failed to find plugin {ptype!r} in path {self.bin_dirs}", code=INVALID_CONFIG)
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), **req.env(),
               "CNI_PATH": ":".join(self.bin_dirs)}
        proc = subprocess.run([exe], input=json.dumps(conf).encode(), env=env, capture_output=True, timeout=60)
        out = proc.stdout.decode(errors="replace").strip()
        if proc.returncode != 0:
            try:
                err = json.loads(out)
                raise CniError(f"plugin type={ptype!r} failed ({req.command}): {err.get('msg')}",
                               code=int(err.get("code", 999)), details=str(err.get("details", "")))
            except ValueError:
                raise CniError(f"plugin type={ptype!r} failed ({req.command}): "
                               f"{out or proc.stderr.decode(errors='replace').strip()}") from None
        return json.loads(out) if out and req.command == "ADD" else None

    def _plugins(self) -> tuple[dict, list[dict]]:
        conf = self.config()
        base = {"cniVersion": conf.get("cniVersion", CNI_VERSION), "name": conf.get("name", "")}
        return base, [{**base, **p} for p in conf.get("plugins", [])]

    @staticmethod
    def _with_capabilities(conf: dict, capability_args: dict | None) -> dict:
        """libcni's injection: a plugin that declares ``capabilities: {X: true}`` gets ``runtimeConfig.X`` from
        the runtime's capability arguments (as ``portMappings`` or ``bandwidth`` reach portmap and bandwidth)."""
        caps = [k for k, on in (conf.get("capabilities") or {}).items() if on and k in (capability_args or {})]
        if not caps:
            return conf
        return {**conf, "runtimeConfig": {k: capability_args[k] for k in caps}}  # type: ignore[index]

    def add(self, container_id: str, netns_path: str, ifname: str = "eth0", args: str = "",
            capability_args: dict | None = None) -> Result:
        _, plugins = self._plugins()
        if self.builtin and plugins and plugins[0].get("type") == "bridge":
            # Both built-in and in-process: the loopback ADD is one request in the pod; let bridge send it in
            # its own pod batch (same effect as calling loopback first, one socket and round trip fewer).
            self.ctx.loopback_pending = True
        else:
            self._invoke(dict(LOOPBACK_CONF), CniRequest("ADD", container_id, netns_path, "lo", args))
        req = CniRequest("ADD", container_id, netns_path, ifname, args)
        prev: dict | None = None
        for p in plugins:
            conf = self._with_capabilities(p, capability_args)
            conf = {**conf, "prevResult": prev} if prev is not None else conf
            prev = self._invoke(conf, req) or prev
        return Result.from_dict(prev or {})

    def delete(self, container_id: str, netns_path: str, ifname: str = "eth0", prev: dict | None = None,
               capability_args: dict | None = None) -> None:
        _, plugins = self._plugins()
        req = CniRequest("DEL", container_id, netns_path, ifname)
        for p in reversed(plugins):
            p = self._with_capabilities(p, capability_args)
            self._invoke({**p, "prevResult": prev} if prev else p, req)

    def gc(self, attachments: list[tuple[str, str]], valid: set[str]) -> list[tuple[str, str, CniError | None]]:
        """libcni's ``GCNetworkList`` for a runtime that knows its leaks: every attachment ``(containerID,
        ifname)`` whose container is not in ``valid`` gets the plugins' DEL (no netns: it is gone), which releases
        its IP and removes its host veth exactly as a normal DEL does. Returns (id, ifname, error or None) per
        attachment, so the caller can log each; one failure does not stop the others."""
        out: list[tuple[str, str, CniError | None]] = []
        for cid, ifname in attachments:
            if cid in valid:
                continue
            try:
                self.delete(cid, "", ifname or "eth0")
                out.append((cid, ifname, None))
            except CniError as e:
                out.append((cid, ifname, e))
        return out

    def check(self, container_id: str, netns_path: str, ifname: str, prev: dict) -> None:
        _, plugins = self._plugins()
        req = CniRequest("CHECK", container_id, netns_path, ifname)
        for p in plugins:
            self._invoke({**p, "prevResult": prev}, req)
