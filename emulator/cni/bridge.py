"""Built-in ``bridge`` CNI plugin (with ``host-local`` IPAM), behaving like the reference plugins.

ADD: make sure the bridge exists (with the gateway address when ``isGateway``), allocate an address in the
host-local store, create a veth pair whose peer lands directly in the pod's namespace as ``CNI_IFNAME`` (one
request), attach the host end to the bridge with hairpin mode, then configure the pod side in one batch (up,
address, routes).

One deliberate difference from the reference plugin: the host ends are bridge ports with ``mcast_flood off``.
Every interface that comes up sends IPv6 multicast (MLD reports, duplicate-address probes) and ``cni0``, which
has no multicast querier, floods it to every other port, so a node of N pods does O(N²) deliveries, each
through br_netfilter where it is loaded: with 10 × 100 pods that is 10-15 % of the machine's CPU during
bring-up. Unicast, broadcast (ARP) and the node's own multicast are unaffected; the Kubernetes network model
promises no multicast between pods. The pod end is created with its MAC, and its index comes back in the kernel's echo of the
new pair, so no request has to look it up or change it afterwards. MACs follow the Kubernetes convention ``0a:58:<IPv4 in hex>`` so a student can read the IP
from the MAC. A failed ADD undoes what it did (veth and address). DEL releases the address and removes the veth
and is idempotent. CHECK verifies the pod interface, its address and the IPAM record.

The plugin runs in the node's namespace (where the agent process lives). ``Context`` caches the node-side
netlink socket and the bridge's index between calls made in-process by the agent; called as an executable it
builds a fresh one.
"""
from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path

from emulator.cni.spec import CNI_VERSION, INVALID_CONFIG, UNKNOWN_CONTAINER, CniRequest, Result
from emulator.errors import CniError
from emulator.ipam.hostlocal import HostLocalStore
from emulator.netlink import msgs, observe
from emulator.netlink.rtnl import Rtnl
from emulator.netlink.templates import fast
from emulator.topology.names import host_veth


@dataclass
class Context:
    """Per-process cache for in-process calls (the node socket and bridge indexes)."""

    node: Rtnl | None = None
    bridges: dict[str, int] = field(default_factory=dict)
    stores: dict[tuple[str, str], HostLocalStore] = field(default_factory=dict)
    #: Set by the runtime when it folds the loopback plugin's single request (lo up) into this ADD's pod batch.
    loopback_pending: bool = False

    def rtnl(self) -> Rtnl:
        if self.node is None:
            self.node = Rtnl(label="node")
        return self.node


def mac_for(ip: ipaddress.IPv4Address) -> str:
    return "0a:58:" + ":".join(f"{b:02x}" for b in ip.packed)


@dataclass(frozen=True)
class _Ipam:
    subnet: ipaddress.IPv4Network
    gateway: ipaddress.IPv4Address
    routes: tuple[dict, ...]
    data_dir: str
    network: str


def _ipam_conf(conf: dict) -> _Ipam:
    ipam = conf.get("ipam") or {}
    if ipam.get("type") != "host-local":
        raise CniError(f"unsupported ipam type {ipam.get('type')!r}; the built-in bridge supports host-local",
                       code=INVALID_CONFIG)
    try:
        rng = ipam["ranges"][0][0] if "ranges" in ipam else {"subnet": ipam["subnet"]}
        subnet = ipaddress.IPv4Network(rng["subnet"])
        gw = ipaddress.IPv4Address(rng.get("gateway") or subnet.network_address + 1)
    except (KeyError, IndexError, ValueError) as e:
        raise CniError(f"invalid ipam configuration: {e}", code=INVALID_CONFIG) from None
    return _Ipam(subnet, gw, tuple(ipam.get("routes", [])), ipam.get("dataDir", "/var/lib/cni/networks"),
                 conf.get("name", "cbr0"))


def _store(ip: _Ipam, ctx: Context) -> HostLocalStore:
    key = (ip.data_dir, ip.network)
    if key not in ctx.stores:
        ctx.stores[key] = HostLocalStore(Path(ip.data_dir), ip.network)
    return ctx.stores[key]


def _bridge_index(ctx: Context, name: str, gw: ipaddress.IPv4Address, prefix: int, mtu: int,
                  is_gw: bool) -> int:
    if name in ctx.bridges:
        return ctx.bridges[name]
    rt = ctx.rtnl()
    found = observe.link(rt, name)
    if found is None:
        rt.batch([msgs.link_add_bridge(name, mtu)])
        found = observe.link(rt, name)
        if found is None:
            raise CniError(f"bridge {name} vanished right after it was made")
    index = found.index
    if is_gw:
        rt.batch([msgs.addr_add(index, str(gw), prefix, name, replace=True), msgs.link_set(index, name, up=True)])
    ctx.bridges[name] = index
    return index


def _pod_rtnl(netns_path: str) -> tuple[Rtnl, int]:
    try:
        fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise CniError(f"failed to open netns {netns_path!r}: {e.strerror}", code=UNKNOWN_CONTAINER) from None
    return Rtnl.in_ns(fd), fd


IFLA_LINK = 5


def _add_veth(node: Rtnl, pod_rt: Rtnl, host: str, ifname: str, fd: int, mtu: int, br: int, mac: str,
              hairpin: bool) -> int:
    """Create the pair (peer straight into the pod with its name, MAC and MTU; host end enslaved and up) and set
    the port's hairpin mode; return the pod end's index. The kernel echoes the host end it made (NLM_F_ECHO),
    whose IFLA_LINK is the peer's index, so no lookup is needed; a kernel that does not echo gets one."""
    veth = fast(f"veth mtu={mtu}", lambda host, peer, fd, master, mac: msgs.link_add_veth(
        host, peer, fd, mtu, master=master, up=True, peer_mac=mac), host=host, peer=ifname, fd=fd, master=br, mac=mac)
    veth.echo = True
    node.batch([veth, fast(f"hairpin={hairpin}", lambda host: msgs.link_set_bridge_port_by_name(
        host, hairpin, mcast_flood=False), host=host)])
    index = msgs.link_attr_u32(veth.reply, IFLA_LINK) if veth.reply else None
    return index if index else pod_rt.link_index(ifname)


def add(req: CniRequest, conf: dict, ctx: Context | None = None) -> dict:
    ctx = ctx or Context()
    ip = _ipam_conf(conf)
    bridge = conf.get("bridge", "cni0")
    mtu = int(conf.get("mtu", 1500))
    br = _bridge_index(ctx, bridge, ip.gateway, ip.subnet.prefixlen, mtu, bool(conf.get("isGateway")))
    store = _store(ip, ctx)
    addr = store.allocate(req.container_id, req.ifname, ip.subnet, ip.gateway)
    host = host_veth(req.container_id, req.ifname)
    pod_rt, fd = _pod_rtnl(req.netns)
    node = ctx.rtnl()
    created = False
    try:
        hairpin = bool(conf.get("hairpinMode"))
        mac = mac_for(addr)
        idx = _add_veth(node, pod_rt, host, req.ifname, fd, mtu, br, mac, hairpin)
        created = True
        reqs = [fast("lo up", lambda: msgs.link_set(1, "lo", up=True))] if ctx.loopback_pending else []
        ctx.loopback_pending = False
        plen = ip.subnet.prefixlen
        reqs += [fast("if up", lambda idx: msgs.link_set(idx, req.ifname, up=True), idx=idx),
                 fast(f"addr /{plen}", lambda idx, ip: msgs.addr_add(idx, ip, plen, req.ifname), idx=idx,
                      ip=str(addr))]
        for r in ip.routes:
            dst = ipaddress.IPv4Network(r["dst"])
            gw = r.get("gw") or str(ip.gateway)
            reqs.append(fast(f"route {dst}", lambda gw, idx: msgs.route_add(
                str(dst.network_address), dst.prefixlen, f"route {dst}", gateway=gw, oif=idx, replace=False),
                gw=gw, idx=idx))
        pod_rt.batch(reqs)
    except BaseException:
        if created:
            node.batch([msgs.link_del_by_name(host)])
        store.release(req.container_id, req.ifname)
        raise
    finally:
        pod_rt.close()
        os.close(fd)
    res = Result(
        interfaces=[{"name": bridge}, {"name": host}, {"name": req.ifname, "mac": mac, "sandbox": req.netns}],
        ips=[{"address": f"{addr}/{ip.subnet.prefixlen}", "gateway": str(ip.gateway), "interface": 2}],
        routes=[dict(r) for r in ip.routes], cni_version=conf.get("cniVersion", CNI_VERSION))
    return res.to_dict()


def delete(req: CniRequest, conf: dict, ctx: Context | None = None) -> None:
    ctx = ctx or Context()
    ip = _ipam_conf(conf)
    _store(ip, ctx).release(req.container_id, req.ifname)
    # Removing either end removes the pair; the host end is named after the sandbox.
    ctx.rtnl().batch([msgs.link_del_by_name(host_veth(req.container_id, req.ifname))])


def check(req: CniRequest, conf: dict, ctx: Context | None = None, prev: dict | None = None) -> None:
    ctx = ctx or Context()
    ip = _ipam_conf(conf)
    held = _store(ip, ctx).get(req.container_id, req.ifname)
    if held is None:
        raise CniError(f"no IP address allocated for container {req.container_id[:12]}", code=UNKNOWN_CONTAINER)
    pod_rt, fd = _pod_rtnl(req.netns)
    try:
        link = observe.link(pod_rt, req.ifname)
        if link is None:
            raise CniError(f"interface {req.ifname} not found in {req.netns}", code=UNKNOWN_CONTAINER)
        if not link.up:
            raise CniError(f"interface {req.ifname} in {req.netns} is down")
        addrs = {(a.ip, a.prefixlen) for a in observe.addresses_of(pod_rt, req.ifname)}
        if (str(held), ip.subnet.prefixlen) not in addrs:
            raise CniError(f"{req.ifname} in {req.netns} does not hold {held}/{ip.subnet.prefixlen}")
    finally:
        pod_rt.close()
        os.close(fd)
    if observe.link(ctx.rtnl(), host_veth(req.container_id, req.ifname)) is None:
        raise CniError(f"host veth {host_veth(req.container_id, req.ifname)} is missing")
