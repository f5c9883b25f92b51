"""The stretched underlay: one VXLAN device per lab per host, a port of that host's ``lan0``.

Layer 2, so host-gw (which needs the nodes on one LAN), vxlan (flannel.1 inside the nodes) and bgp (BIRD peers on
the node addresses) work unchanged across machines. On each host: ``ip link add`` a VXLAN device in the host's
own namespace, bound to the interface that holds the host's address (``dev``, ``local``; its UDP socket stays
there: the one object of a multi-host lab outside lab namespaces), moved into the lab's underlay namespace,
renamed ``stretch0``, enslaved to ``lan0`` at the underlay MTU, with one all-zero FDB entry per peer host (unicast
head-end replication: broadcast and unknown unicast go to every peer; MAC learning does the rest). One device,
not one per peer: the bridge never sends a frame back out of the port it came from, so three or more hosts make no
loop. Removing the underlay namespace destroys the device (x-netns VXLAN dies with either namespace), so a
host's ``down`` needs nothing more.

Receiving, a switch's work and no more (``tune``): the underlay namespace is the LAN, so frames crossing ``lan0``
skip netfilter (``net.bridge.bridge-nf-call-{iptables,ip6tables,arptables}`` = 0 there, where ``br_netfilter`` is
loaded: every new namespace starts with 1, and a real switch runs no host's rules), and ``stretch0`` has
``rx-udp-gro-forwarding`` on. In vxlan mode the nodes' flannel packets are VXLAN inside the stretch's VXLAN; the
kernel cannot segment a tunnel inside a tunnel, so the sending host cuts every 64 KB TCP burst into 1450-byte
frames at ``stretch0`` (measured: 1444-byte average there against 47 KB at the node's ``eth0``). On the receiving
host, the decapsulated frames carry UDP to port 8472, whose socket is in a node, not in the underlay, so without
UDP GRO forwarding each one crossed ``lan0`` and the node's veth alone; with it they are aggregated again (29 KB
average at the node's ``eth0``) and only the node's ``flannel.1`` socket splits them. Measured +25 to +60 % TCP
across hosts in vxlan mode; docs/multihost.md has the figures and where the rest of the time goes.

The outer packets carry DF (``df set``): an underlay MTU the path cannot carry fails the proof (a DF ping at full
size from a node on every host to a node on every other host), instead of being fragmented silently.

MTU arithmetic (IPv4 outer): underlay = NIC MTU - 50; pods in vxlan mode another 50 less (``Topology.pod_mtu``).
``choose_mtu`` is pure: the smallest NIC decides; a ``underlay.mtu`` given in the file must fit it.
"""
from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass

from emulator.errors import MtuError
from emulator.netlink import netns
from emulator.topology.model import VXLAN_OVERHEAD

DEVICE = "stretch0"
GRO_FORWARDING = "rx-udp-gro-forwarding"
SWITCH_SYSCTLS = ("net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-ip6tables",
                  "net.bridge.bridge-nf-call-arptables")
MIN_UNDERLAY_MTU = 1280  # IPv6's minimum; the topology's own lower bound


@dataclass(frozen=True)
class StretchSpec:
    lab: str
    underlay_ns: str
    bridge: str
    address: str  # this host's address (the VTEP)
    nic: str  # the interface holding it
    peers: tuple[str, ...]  # the other hosts' addresses
    port: int
    vni: int
    mtu: int

    @property
    def temp_name(self) -> str:
        """The device's name while it sits in the host's namespace (unique per lab: from the VNI)."""
        return f"plx{self.vni:06x}"


def choose_mtu(nics: dict[str, tuple[str, int]], given: int | None) -> int:
    """The underlay MTU for hosts whose NICs are ``{host: (nic, mtu)}``: the smallest NIC MTU less the tunnel's
    50 bytes; ``given`` (the file's ``underlay.mtu``) must not exceed it. Raises ``MtuError`` naming the host."""
    host, (nic, smallest) = min(nics.items(), key=lambda kv: kv[1][1])
    fits = smallest - VXLAN_OVERHEAD
    if given is not None and given > fits:
        raise MtuError(f"host {host}: interface {nic} has MTU {smallest}, which carries an underlay of at most "
                       f"{fits} bytes (VXLAN adds {VXLAN_OVERHEAD}), but the topology asks underlay.mtu {given}; "
                       f"fix: set 'underlay: {{mtu: {fits}}}' (pods then get {fits - VXLAN_OVERHEAD} in vxlan "
                       f"mode), or raise the MTU of {nic} on every host to {given + VXLAN_OVERHEAD}", obj=host)
    if fits < MIN_UNDERLAY_MTU:
        raise MtuError(f"host {host}: interface {nic} has MTU {smallest}, leaving {fits} bytes for the "
                       f"underlay, less than {MIN_UNDERLAY_MTU}; fix: raise the MTU of {nic} to at least "
                       f"{MIN_UNDERLAY_MTU + VXLAN_OVERHEAD}", obj=host)
    return given if given is not None else fits


def _ip(argv: list[str]) -> None:
    r = subprocess.run(argv, capture_output=True, text=True)
    if r.returncode != 0:
        raise MtuError(f"stretching the underlay: `{' '.join(argv)}` failed: {r.stderr.strip()}", obj=argv[-1])


def attach(spec: StretchSpec) -> None:
    """Create the lab's VXLAN port on this host and plug it into the underlay bridge (see the module text)."""
    tmp = spec.temp_name
    _ip(["ip", "link", "add", tmp, "mtu", str(spec.mtu), "type", "vxlan", "id", str(spec.vni), "dstport",
         str(spec.port), "local", spec.address, "dev", spec.nic, "ttl", "64", "df", "set"])
    try:
        _ip(["ip", "link", "set", tmp, "netns", spec.underlay_ns])
    except BaseException:
        subprocess.run(["ip", "link", "del", tmp], capture_output=True)
        raise
    n = ["ip", "-n", spec.underlay_ns]
    _ip([*n, "link", "set", tmp, "name", DEVICE])
    _ip([*n, "link", "set", DEVICE, "master", spec.bridge, "up"])
    for peer in spec.peers:
        _ip(["bridge", "-n", spec.underlay_ns, "fdb", "append", "00:00:00:00:00:00", "dev", DEVICE, "dst", peer])
    tune(spec.underlay_ns)


def tune(underlay_ns: str) -> None:
    """The underlay switches frames without netfilter, and ``stretch0`` aggregates what it decapsulates (UDP GRO
    forwarding): see the module text. Raises ``MtuError`` naming the device if the kernel refuses."""
    from pyroute2.ethtool.ioctl import IoctlEthtool
    with netns.entered(underlay_ns):  # /proc/sys/net and the ioctl socket resolve to this thread's namespace
        if os.path.isdir("/proc/sys/net/bridge"):
            for key in SWITCH_SYSCTLS:
                netns.write_sysctl(key, "0")
        eth = IoctlEthtool(DEVICE)
        try:
            features = eth.get_features()
            features[GRO_FORWARDING] = True
            eth.set_features(features)
        except (OSError, KeyError) as e:
            raise MtuError(f"stretching the underlay: cannot turn on {GRO_FORWARDING} of {DEVICE} in "
                           f"{underlay_ns}: {e}", obj=DEVICE) from None
        finally:
            eth.close()


def nic_of(address: str) -> tuple[str, int] | None:
    """(interface, MTU) of the interface holding ``address`` in this namespace, or None."""
    import json
    out = subprocess.run(["ip", "-j", "addr", "show"], capture_output=True, text=True).stdout
    for link in json.loads(out or "[]"):
        for a in link.get("addr_info", []):
            if a.get("local") == address:
                return link["ifname"], int(link["mtu"])
    return None
