"""The cluster DNS: answers ``cluster.local`` names from the store, as CoreDNS's kubernetes plugin does.

Records (TTL 5 s, CoreDNS's default for the kubernetes zone):

* ``<svc>.<ns>.svc.cluster.local`` A → the ClusterIP; for a headless Service (``clusterIP: None``) the ready
  endpoint addresses instead;
* ``_<port>._<proto>.<svc>.<ns>.svc.cluster.local`` SRV → the port on ``<svc>.<ns>.svc.cluster.local``;
* ``<a-b-c-d>.<ns>.pod.cluster.local`` A → a.b.c.d (the "pods insecure" mode);
* a name that exists with no record of the asked type (AAAA of a Service, say) gets an empty NOERROR answer
  with the zone's SOA; a name that does not exist in the zone gets NXDOMAIN with the SOA, so resolvers walking
  the search list (``ndots:5``) move on quickly; names outside the zone get REFUSED: the lab has no upstream.

Messages are parsed and built with dnspython (``dns.message``), never packed by hand; ``answer`` is a pure function
of a query and a zone. The server around it (``dnsserver``: the program the ``coredns`` pods of kube-system run,
behind the ``kube-dns`` Service at 10.96.0.10) keeps the zone current from the store and the answers it built.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from emulator.services.endpoints import addresses

TTL = 5


@dataclass
class Zone:
    domain: dns.name.Name
    a: dict[dns.name.Name, list[str]] = field(default_factory=dict)
    srv: dict[dns.name.Name, list[tuple[int, dns.name.Name]]] = field(default_factory=dict)
    names: set[dns.name.Name] = field(default_factory=set)  # every name that exists (for NODATA vs NXDOMAIN)
    ttl: int = TTL

    def add_name(self, name: dns.name.Name) -> None:
        while name != self.domain and name.is_subdomain(self.domain):
            self.names.add(name)
            name = name.parent()
        self.names.add(self.domain)


def build_zone(services: list[dict], endpoints: list[dict], domain: str = "cluster.local", ttl: int = TTL) -> Zone:
    root = dns.name.from_text(domain)
    z = Zone(root, ttl=ttl)
    z.add_name(root)
    eps = {(e["metadata"].get("namespace", "default"), e["metadata"]["name"]): e for e in endpoints}
    for svc in services:
        meta, spec = svc["metadata"], svc.get("spec", {})
        ns, name = meta.get("namespace", "default"), meta["name"]
        fqdn = dns.name.from_text(f"{name}.{ns}.svc", origin=root)
        ip = spec.get("clusterIP")
        if ip == "None":
            ips = sorted({a[0] for a in addresses(eps.get((ns, name)))})
        else:
            ips = [ip] if ip else []
        z.a[fqdn] = ips
        z.add_name(fqdn)
        for p in spec.get("ports", []):
            if p.get("name"):
                srv = dns.name.from_text(f"_{p['name']}._{p.get('protocol', 'TCP').lower()}", origin=fqdn)
                z.srv.setdefault(srv, []).append((int(p["port"]), fqdn))
                z.add_name(srv)
    return z


def _pod_ip(qname: dns.name.Name, zone: Zone) -> str | None:
    rel = qname.relativize(zone.domain).labels
    if len(rel) == 3 and rel[2] == b"pod":
        try:
            return str(ipaddress.IPv4Address(rel[0].decode().replace("-", ".")))
        except ValueError:
            return None
    return None


def answer(query: dns.message.Message, zone: Zone) -> dns.message.Message:
    resp = dns.message.make_response(query)
    resp.flags |= dns.flags.AA
    resp.flags &= ~dns.flags.RA
    if not query.question:
        resp.set_rcode(dns.rcode.FORMERR)
        return resp
    q = query.question[0]
    qname = q.name.canonicalize()
    if not qname.is_subdomain(zone.domain):
        resp.flags &= ~dns.flags.AA
        resp.set_rcode(dns.rcode.REFUSED)
        return resp
    pod_ip = _pod_ip(qname, zone)
    a = [pod_ip] if pod_ip else zone.a.get(qname)
    srv = zone.srv.get(qname)
    exists = qname in zone.names or pod_ip is not None
    if q.rdtype in (dns.rdatatype.A, dns.rdatatype.ANY) and a:
        resp.answer.append(dns.rrset.from_text_list(q.name, zone.ttl, dns.rdataclass.IN, dns.rdatatype.A, a))
    if q.rdtype in (dns.rdatatype.SRV, dns.rdatatype.ANY) and srv:
        resp.answer.append(dns.rrset.from_text_list(q.name, zone.ttl, dns.rdataclass.IN, dns.rdatatype.SRV,
                                                    [f"0 100 {port} {target}" for port, target in srv]))
        for port, target in srv:
            if zone.a.get(target):
                resp.additional.append(dns.rrset.from_text_list(target, zone.ttl, dns.rdataclass.IN, dns.rdatatype.A,
                                                                zone.a[target]))
    if not resp.answer:
        if not exists:
            resp.set_rcode(dns.rcode.NXDOMAIN)
        resp.authority.append(soa(zone))
    return resp


def soa(zone: Zone) -> dns.rrset.RRset:
    d = zone.domain.to_text()
    return dns.rrset.from_text(zone.domain, zone.ttl, dns.rdataclass.IN, dns.rdatatype.SOA,
                               f"ns.dns.{d} hostmaster.{d} 1 7200 1800 86400 {zone.ttl}")


def lookup(server: str, name: str, rdtype: str = "A", port: int = 53, timeout: float = 2.0) -> dns.message.Message:
    """One query over UDP (for tests and ``podlab``'s own checks)."""
    import dns.query
    return dns.query.udp(dns.message.make_query(name, rdtype), server, timeout=timeout, port=port)
