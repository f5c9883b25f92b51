"""kube-proxy's pure parts: desired state from Services/Endpoints, chain names as kube-proxy computes them, and the
shapes of the iptables-restore and nft transactions (full and partial syncs, stale chains)."""
from __future__ import annotations

import dataclasses

from emulator.services.endpoints import manifest as ep_manifest
from emulator.services.model import Service, ServicePort
from emulator.services.proxy import iptables, names, nft
from emulator.services.proxy.state import Endpoint, ProxyState, SvcPort, build, changed

CIDR = "10.244.0.0/16"


def port(name: str = "web", eps: int = 3, node_port: int = 0, affinity: int = 0, proto: str = "tcp",
         local: bool = False) -> SvcPort:
    return SvcPort("default", name, "http", proto, "10.96.3.3", 80, node_port, affinity, local,
                   tuple(Endpoint(f"10.244.{i + 1}.2", 8080, f"node-{i + 1}") for i in range(eps)))


def state(*ports: SvcPort) -> ProxyState:
    return ProxyState("node-1", CIDR, tuple(sorted(ports)))


def test_chain_names_match_real_clusters() -> None:
    dns = SvcPort("kube-system", "kube-dns", "dns", "udp", "10.96.0.10", 53)
    assert names.svc_chain(dns) == "KUBE-SVC-TCOU7JCQXEZGVUNU"
    assert names.svc_chain(dataclasses.replace(dns, port_name="dns-tcp", protocol="tcp")) == "KUBE-SVC-ERIFXISQEP7F7OF4"
    api = SvcPort("default", "kubernetes", "https", "tcp", "10.96.0.1", 443)
    assert names.svc_chain(api) == "KUBE-SVC-NPX46M4PTMTKRN6Y" and len(names.svc_chain(api)) == 25
    p = port()
    assert names.sep_chain(p, p.endpoints[0]).startswith("KUBE-SEP-") and len(names.sep_chain(p, p.endpoints[0])) == 25
    assert names.nft_service(p).endswith("-default/web/tcp/http") and names.nft_service(p).startswith("service-")
    assert names.nft_endpoint(p, p.endpoints[0]).endswith("default/web/tcp/http__10.244.1.2/8080")


def test_state_from_manifests_and_changes() -> None:
    svc = Service("web", type="NodePort", selector=(("a", "b"),), cluster_ip="10.96.3.3", session_affinity="ClientIP",
                  ports=(ServicePort(80, 8080, "TCP", "http", 30080), ServicePort(90, 8081, "UDP", "u", 30090))).manifest()
    headless = Service("db", cluster_ip="None", selector=(("a", "b"),)).manifest()
    ep = ep_manifest("web", "default", [{"addresses": [{"ip": "10.244.2.2", "nodeName": "node-2"},
                                                       {"ip": "10.244.1.2", "nodeName": "node-1"}],
                                         "notReadyAddresses": [{"ip": "10.244.1.9"}],
                                         "ports": [{"name": "http", "port": 8080, "protocol": "TCP"},
                                                   {"name": "u", "port": 8081, "protocol": "UDP"}]}])
    s = build([svc, headless], [ep], "node-1", CIDR)
    assert [(p.port_name, p.protocol, p.node_port, p.affinity_seconds) for p in s.ports] == [
        ("http", "tcp", 30080, 10800), ("u", "udp", 30090, 10800)]
    assert [e.addr for e in s.ports[0].endpoints] == ["10.244.1.2:8080", "10.244.2.2:8080"]  # ready only, sorted
    assert changed(None, s) is None and changed(s, s) == set()
    s2 = build([svc], [], "node-1", CIDR)
    assert changed(s, s2) == {("default", "web")}


def test_iptables_full_sync_has_kube_proxys_shapes() -> None:
    text = iptables.render(state(port(eps=3, node_port=30080), port("empty", eps=0, node_port=30081)))
    lines = text.splitlines()
    p = port(eps=3, node_port=30080)
    svc, ext = names.svc_chain(p), names.ext_chain(p)
    seps = [names.sep_chain(p, e) for e in p.endpoints]
    assert lines[:3] == ["*mangle", ":KUBE-PROXY-CANARY - [0:0]", "COMMIT"]
    assert '-I PREROUTING 1 -m comment --comment "kubernetes service portals" -j KUBE-SERVICES' in lines
    assert '-I OUTPUT 1 -m comment --comment "kubernetes service portals" -j KUBE-SERVICES' in lines
    assert '-I POSTROUTING 1 -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING' in lines
    assert "-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000" in lines
    assert "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN" in lines
    assert (f'-A KUBE-SERVICES -m comment --comment "default/web:http cluster IP" -m tcp -p tcp -d 10.96.3.3 '
            f"--dport 80 -j {svc}") in lines
    assert f"-A {svc} -m comment --comment \"default/web:http cluster IP\" -m tcp -p tcp -d 10.96.3.3 --dport 80 " \
           f"! -s {CIDR} -j KUBE-MARK-MASQ" in lines
    lb = [ln for ln in lines if ln.startswith(f"-A {svc}") and "-> " in ln]
    assert [ln.split("--probability ")[1].split()[0] if "statistic" in ln else None for ln in lb] == [
        "0.3333333333", "0.5000000000", None]  # endpoint i of N: 1/(N-i), the last unconditional
    assert [ln.split("-j ")[1] for ln in lb] == seps
    assert f"-A {seps[0]} -m comment --comment default/web:http -s 10.244.1.2 -j KUBE-MARK-MASQ" in lines  # hairpin
    assert f"-A {seps[0]} -m comment --comment default/web:http -m tcp -p tcp -j DNAT --to-destination " \
           "10.244.1.2:8080" in lines
    assert f"-A KUBE-NODEPORTS -m comment --comment default/web:http -m tcp -p tcp --dport 30080 -j {ext}" in lines
    assert f'-A {ext} -m comment --comment "masquerade traffic for default/web:http external destinations" ' \
           "-j KUBE-MARK-MASQ" in lines and f"-A {ext} -j {svc}" in lines
    assert ('-A KUBE-SERVICES -m comment --comment "default/empty:http has no endpoints" -m tcp -p tcp -d 10.96.3.3 '
            "--dport 80 -j REJECT") in lines
    assert any(ln.startswith("-A KUBE-EXTERNAL-SERVICES") and "--dport 30081 -j REJECT" in ln for ln in lines)
    nat = lines[lines.index("*nat"):]
    assert nat[-2].endswith("-m addrtype --dst-type LOCAL ! -d 127.0.0.0/8 -j KUBE-NODEPORTS")  # last rule
    assert not any("empty" in ln for ln in nat if ln.startswith(":KUBE-SVC"))


def test_iptables_affinity_and_local_policy() -> None:
    p = port(eps=2, affinity=60)
    lines = iptables.render(state(p)).splitlines()
    sep = names.sep_chain(p, p.endpoints[0])
    assert (f'-A {names.svc_chain(p)} -m comment --comment "default/web:http -> 10.244.1.2:8080" -m recent --name '
            f"{sep} --rcheck --seconds 60 --reap -j {sep}") in lines
    assert f"-A {sep} -m comment --comment default/web:http -m recent --name {sep} --set -m tcp -p tcp -j DNAT " \
           "--to-destination 10.244.1.2:8080" in lines
    local = port(eps=2, node_port=30080, local=True)
    text = iptables.render(state(local))
    assert f"-A {names.ext_chain(local)} -j {names.svl_chain(local)}" in text
    assert text.count(f"-A {names.svl_chain(local)} ") == 1  # only node-1's endpoint
    other = ProxyState("node-9", CIDR, (local,))
    assert "has no local endpoints" in iptables.render(other) and names.svl_chain(local) not in iptables.render(other)


def test_iptables_jumps_only_when_missing_and_stale_chains_deleted() -> None:
    old = port(eps=3)
    gone = old.endpoints[2]
    ex = iptables.parse_save("*nat\n:PREROUTING ACCEPT [0:0]\n:KUBE-SEP-OLDOLDOLDOLDOLDO - [0:0]\n:MINE - [0:0]\n"
                             '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES\n'
                             "COMMIT\n")
    text = iptables.render(state(old), existing=ex)
    assert "-I PREROUTING" not in text and "-I OUTPUT 1 -m comment" in text
    assert "-X KUBE-SEP-OLDOLDOLDOLDOLDO" in text and "-X MINE" not in text  # only kube-proxy's chains
    new = dataclasses.replace(old, endpoints=old.endpoints[:2])
    partial = iptables.render(state(new), changed(state(old), state(new)), state(old))
    assert f"-X {names.sep_chain(old, gone)}" in partial and "*mangle" not in partial and "-I " not in partial
    assert f":{names.svc_chain(new)} - [0:0]" in partial
    unchanged = dataclasses.replace(port("other", eps=1), cluster_ip="10.96.4.4")
    p2 = iptables.render(state(new, unchanged), {("default", "web")}, state(old, unchanged))
    assert f":{names.svc_chain(unchanged)}" not in p2 and f"-j {names.svc_chain(unchanged)}" in p2


def test_nft_full_sync_structure() -> None:
    p = port(eps=2, node_port=30080, affinity=30)
    text = nft.render(state(p, port("empty", eps=0)))
    lines = text.splitlines()
    T = "ip kube-proxy"
    assert lines[0] == f'add table {T} {{ comment "rules for kube-proxy" ; }}'
    assert f"add chain {T} nat-prerouting {{ type nat hook prerouting priority -100 ; }}" in lines
    assert f"add chain {T} filter-forward {{ type filter hook forward priority -110 ; }}" in lines
    assert f"add rule {T} services ip daddr . meta l4proto . th dport vmap @service-ips" in lines
    assert f"add rule {T} mark-for-masquerade mark set mark or 0x4000" in lines
    assert f"add rule {T} masquerading masquerade fully-random" in lines
    svc, ext = names.nft_service(p), names.nft_external(p)
    eps = [names.nft_endpoint(p, e) for e in p.endpoints]
    assert f"add element {T} service-ips {{ 10.96.3.3 . tcp . 80 : goto {svc} }}" in lines
    assert f"add element {T} service-nodeports {{ tcp . 30080 : goto {ext} }}" in lines
    assert f"add element {T} no-endpoint-services {{ 10.96.3.3 . tcp . 80 : goto reject-chain }}" in lines
    assert f"add rule {T} {svc} numgen random mod 2 vmap {{ 0 : goto {eps[0]} , 1 : goto {eps[1]} }}" in lines
    aff = names.nft_affinity(p, p.endpoints[0])
    assert f"add set {T} {aff} {{ type ipv4_addr ; flags dynamic,timeout ; timeout 30s ; }}" in lines
    assert f"add rule {T} {svc} ip saddr @{aff} goto {eps[0]}" in lines
    assert f"add rule {T} {eps[0]} update @{aff} {{ ip saddr }}" in lines
    assert f"add rule {T} {eps[0]} meta l4proto tcp dnat to 10.244.1.2:8080" in lines
    assert f"add rule {T} {eps[0]} ip saddr 10.244.1.2 jump mark-for-masquerade" in lines
    assert lines.index(f"add chain {T} {svc}") < lines.index(f"add element {T} service-ips {{ 10.96.3.3 . tcp . 80 : "
                                                             f"goto {svc} }}")  # chains before the elements


def test_nft_partial_sync_deletes_old_elements_and_defers_chain_deletion() -> None:
    old = port(eps=3, affinity=10)
    new = dataclasses.replace(old, endpoints=old.endpoints[:1])
    s0, s1 = state(old), state(new)
    text = nft.render(s1, changed(s0, s1), s0)
    gone = names.nft_endpoint(old, old.endpoints[2])
    assert text.startswith("delete element ip kube-proxy service-ips { 10.96.3.3 . tcp . 80 }")
    assert f"flush chain ip kube-proxy {gone}" in text and f"delete chain ip kube-proxy {gone}" not in text
    assert f"delete set ip kube-proxy {names.nft_affinity(old, old.endpoints[2])}" in text
    assert "add table" not in text
    stale = nft.stale_chains(s1, changed(s0, s1), s0, None)
    assert gone in stale and names.nft_service(new) not in stale
    later = nft.render(s1, set(), s1, delete_chains=stale)
    assert f"delete chain ip kube-proxy {gone}" in later and "add element" not in later


def test_libnftables_and_the_nft_program_report_errors_alike() -> None:
    import pytest

    from emulator.services.proxy.libnft import Nft, NftError
    for nftc in (Nft(), Nft(use_library=False)):
        with pytest.raises(NftError, match="syntax error|Error"):
            nftc.run("this is not an nft command\n")  # refused by the parser: nothing reaches the kernel
