"""The CNI specification's shapes (version 1.0.0): request environment, network configuration, result, errors.

A plugin is called with ``CNI_COMMAND`` (ADD, DEL, CHECK, VERSION), ``CNI_CONTAINERID``, ``CNI_NETNS``,
``CNI_IFNAME``, ``CNI_ARGS``, ``CNI_PATH`` in its environment and the network configuration as JSON on stdin; it
prints a result (ADD) or an error object ``{"cniVersion", "code", "msg", "details"}`` and exits non-zero. The
same shapes are used when podlab calls its built-in plugins in-process, so both paths are interchangeable.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from emulator.errors import CniError
from emulator.topology.names import host_veth

CNI_VERSION = "1.0.0"
SUPPORTED_VERSIONS = ["0.3.0", "0.3.1", "0.4.0", "1.0.0"]

# Error codes from the spec.
INCOMPATIBLE_VERSION = 1
UNSUPPORTED_FIELD = 2
UNKNOWN_CONTAINER = 3
INVALID_ENV = 4
IO_FAILURE = 5
DECODE_FAILURE = 6
INVALID_CONFIG = 7
TRY_AGAIN_LATER = 11


@dataclass(frozen=True)
class CniRequest:
    command: str
    container_id: str
    netns: str
    ifname: str
    args: str = ""
    path: str = ""

    def env(self) -> dict[str, str]:
        return {"CNI_COMMAND": self.command, "CNI_CONTAINERID": self.container_id, "CNI_NETNS": self.netns,
                "CNI_IFNAME": self.ifname, "CNI_ARGS": self.args, "CNI_PATH": self.path}

    @classmethod
    def from_env(cls, env: dict[str, str]) -> "CniRequest":
        cmd = env.get("CNI_COMMAND", "")
        if not cmd:
            raise CniError("CNI_COMMAND is not set", code=INVALID_ENV)
        need = {"ADD": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"), "DEL": ("CNI_CONTAINERID", "CNI_IFNAME"),
                "CHECK": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME")}.get(cmd, ())
        for var in need:
            if not env.get(var):
                raise CniError(f"required env variable {var} missing", code=INVALID_ENV)
        return cls(cmd, env.get("CNI_CONTAINERID", ""), env.get("CNI_NETNS", ""), env.get("CNI_IFNAME", ""),
                   env.get("CNI_ARGS", ""), env.get("CNI_PATH", ""))


@dataclass
class Result:
    interfaces: list[dict] = field(default_factory=list)
    ips: list[dict] = field(default_factory=list)
    routes: list[dict] = field(default_factory=list)
    dns: dict = field(default_factory=dict)
    cni_version: str = CNI_VERSION

    def to_dict(self) -> dict:
        return {"cniVersion": self.cni_version, "interfaces": self.interfaces, "ips": self.ips,
                "routes": self.routes, "dns": self.dns}

    @classmethod
    def from_dict(cls, d: dict) -> "Result":
        return cls(list(d.get("interfaces", [])), list(d.get("ips", [])), list(d.get("routes", [])),
                   dict(d.get("dns", {})), d.get("cniVersion", CNI_VERSION))

    def pod_ip(self) -> str | None:
        for ip in self.ips:
            return str(ip["address"]).split("/")[0]
        return None

    def host_veth(self) -> str | None:
        """The host end of the pod's veth as the plugin reported it: an interface outside the sandbox named
        ``veth...`` (the bridge plugin lists the bridge, the host veth, then the container's interface)."""
        return next((i["name"] for i in self.interfaces
                     if not i.get("sandbox") and str(i.get("name", "")).startswith("veth")), None)


def pod_host_veth(sandbox: dict, ifname: str = "eth0") -> str:
    """A running pod's host veth: the one its CNI ADD result names (the reference bridge plugin picks a random
    ``veth<8 hex>``), else podlab's own name for it (``names.host_veth``: the built-in plugin's)."""
    named = Result.from_dict(sandbox.get("cniResult") or {}).host_veth()
    return named or host_veth(sandbox.get("id", ""), ifname)


def error_json(err: CniError, version: str = CNI_VERSION) -> str:
    return json.dumps({"cniVersion": version, "code": err.code, "msg": str(err), "details": err.details})


def version_json() -> str:
    return json.dumps({"cniVersion": CNI_VERSION, "supportedVersions": SUPPORTED_VERSIONS})


def conflist(name: str, plugins: list[dict]) -> dict:
    return {"cniVersion": CNI_VERSION, "name": name, "plugins": plugins}


def bridge_conflist(network: str, bridge: str, subnet: str, mtu: int, data_dir: str) -> dict:
    """The configuration flannel's CNI plugin hands to the bridge plugin, written out as a conflist, with
    ``podlab-link`` and ``portmap`` chained after it (flannel's default conflist chains ``portmap`` too): on a
    built-in node both run in the agent, on a ``cni: reference`` node ``portmap`` is the real
    ``/usr/lib/cni/portmap`` (no wrapper of that name is written into the node's CNI bin directory)."""
    return conflist(network, [{
        "type": "bridge", "bridge": bridge, "isGateway": True, "hairpinMode": True, "mtu": mtu,
        "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]], "routes": [{"dst": "0.0.0.0/0"}],
                 "dataDir": data_dir},
    }, {"type": "podlab-link", "capabilities": {"podlabLink": True}, "mtu": mtu},
        {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True}])
