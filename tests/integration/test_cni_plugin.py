"""The built-in bridge plugin called the way a runtime calls any CNI plugin (exec protocol, in the node namespace).

A fresh pod namespace holds only ``lo``, so the plugin asks for index 2 for the pod's interface and needs no
lookup; a namespace that already has something at index 2 (tunnel fallback devices, a sandbox made by another
runtime) must still get its interface, at whatever index the kernel picks.
"""
from __future__ import annotations

import json
import os
import subprocess

from emulator.netlink import netns
from emulator.topology import names

ONE_NODE = """
version: 1
name: x
nodes: [{name: node-1}]
pods:
  - {name: p, node: node-1}
"""


def _plugin(lab, command: str, cid: str, ns: str, conf: dict) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ["PATH"], "CNI_COMMAND": command, "CNI_CONTAINERID": cid,
           "CNI_NETNS": netns.path(ns), "CNI_IFNAME": "eth0", "CNI_PATH": str(lab.paths.cni_bin_dir("node-1"))}
    exe = str(lab.paths.cni_bin_dir("node-1") / "bridge")
    return subprocess.run(["ip", "netns", "exec", names.node_ns(lab.name, "node-1"), exe], env=env,
                          input=json.dumps(conf), capture_output=True, text=True, timeout=60)


def test_add_into_a_namespace_whose_index_2_is_taken(make_lab) -> None:
    lab = make_lab(ONE_NODE)
    conflist = json.loads((lab.paths.cni_conf_dir("node-1") / "10-flannel.conflist").read_text())
    conf = {"cniVersion": conflist["cniVersion"], "name": conflist["name"], **conflist["plugins"][0]}
    ns, cid = f"{lab.name}-sbx", "f" * 64
    netns.create(ns)
    try:
        subprocess.run(["ip", "-n", ns, "link", "add", "tunl-like", "type", "veth", "peer", "name", "tunl-peer"], check=True)
        taken = {link["ifindex"] for link in json.loads(subprocess.run(
            ["ip", "-n", ns, "-j", "link", "show"], check=True, capture_output=True, text=True).stdout)}
        assert taken == {1, 2, 3}
        out = _plugin(lab, "ADD", cid, ns, conf)
        assert out.returncode == 0, out.stdout + out.stderr
        result = json.loads(out.stdout)
        ip = result["ips"][0]["address"].split("/")[0]
        eth0 = json.loads(subprocess.run(["ip", "-n", ns, "-j", "addr", "show", "eth0"], check=True,
                                         capture_output=True, text=True).stdout)[0]
        assert eth0["ifindex"] not in (1, 2, 3) and "UP" in eth0["flags"]
        assert eth0["address"] == "0a:58:" + ":".join(f"{int(b):02x}" for b in ip.split("."))
        assert ip in [a["local"] for a in eth0["addr_info"] if a["family"] == "inet"]
        routes = subprocess.run(["ip", "-n", ns, "route"], capture_output=True, text=True).stdout
        assert f"via {result['ips'][0]['gateway']} dev eth0" in routes
        port = json.loads(subprocess.run(
            ["ip", "-n", names.node_ns(lab.name, "node-1"), "-d", "-j", "link", "show", names.host_veth(cid, "eth0")],
            check=True, capture_output=True, text=True).stdout)[0]["linkinfo"]["info_slave_data"]
        assert port["hairpin"] is True and port["mcast_flood"] is False  # see cni.bridge for the second
        out = _plugin(lab, "DEL", cid, ns, conf)
        assert out.returncode == 0, out.stdout + out.stderr
        assert not (lab.paths.ipam_dir("node-1") / "cbr0" / ip).exists()
    finally:
        netns.delete(ns)
