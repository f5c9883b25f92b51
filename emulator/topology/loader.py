"""Load a topology file (YAML, version 1): validate everything, fill defaults, return the frozen ``Topology``.

Design:

* Every rule is checked here, before the builder creates a single kernel object, and the first broken rule
  raises ``TopologyError(file, field, message, fix)``. ``field`` is a path into the file in the style of
  ``kubectl`` (``nodes[1].podCIDR``, ``pods[0].containers[0].ports[1].protocol``, indices counted from 0);
  the message quotes the offending value and the fix says what to write instead. Stopping at the first error
  keeps messages precise (later checks may rely on earlier ones) and tells a student exactly one thing to fix.
* Keys are checked at every level: an unknown key is an error naming the allowed keys, with a "did you mean"
  (case-insensitive ``difflib``) so ``podCidr`` points at ``podCIDR``. A key written twice in one mapping is an
  error too (PyYAML would silently keep the last one). YAML is read by ``yamlsafe``, which also refuses binary
  bytes, deep nesting and alias-expansion bombs with one line naming the file.
* ``namespaces`` declares the lab's Kubernetes namespaces beyond the built-in ``default``, ``kube-system``,
  ``kube-public`` and ``kube-node-lease`` (a built-in one may be listed to give it labels). Every object's
  ``namespace`` must name one of them: a typo is an error with a "did you mean", not a namespace made up on the
  fly (the API server answers a missing namespace with NotFound, too). Pod names are unique per namespace.
* ``services``, ``deployments`` and ``networkPolicies`` are accepted unparsed and handed on in ``Topology.extra``
  for the layer that owns them.
* Order of resolution: header (version, name, routing) → cluster and underlay ranges → nodes (names, explicit
  slices and addresses, then automatic ones: see ``cidr`` for the slice order, node *n* gets underlay host
  ``NODE_IP_OFFSET + n``) → pods (names, containers, then pinned-node capacity, then the spread ``scheduler``
  for pods without a node).
* ``name``/``routing`` overrides (CLI ``--name``/``--routing``) replace the file's values and are validated the
  same way; their errors still name the file, with field ``name``/``routing``.
"""
from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from emulator.errors import TopologyError
from emulator.topology import cidr, names, yamlsafe
from emulator.topology.model import (CNI_MODES, RUNTIMES, DEFAULT_NODE_MASK, DEFAULT_POD_CIDR, DEFAULT_SERVICE_CIDR,
                                     DEFAULT_UNDERLAY_CIDR, DEFAULT_UNDERLAY_MTU, NODE_IP_OFFSET, ROUTING_MODES,
                                     BUILTIN_NAMESPACES, TOPOLOGY_VERSION, LinkShape, Namespace, Node, Pod,
                                     Topology, Underlay)
from emulator.topology.scheduler import Unschedulable, spread
from emulator.topology.validate import Validator, did_you_mean, is_int, show
from emulator.topology import bgp_section, docker_section, hostports, hosts_section

TOP_KEYS = ("version", "name", "routing", "cluster", "underlay", "namespaces", "nodes", "pods", "services",
            "deployments", "bgp", "kubeProxy", "external", "networkPolicies", "containers", "hosts", "placement",
            "tunnel")
NAMESPACE_KEYS = ("name", "labels")
RAW_KEYS = ("services", "deployments", "kubeProxy", "external", "networkPolicies")
CLUSTER_KEYS = ("podCIDR", "serviceCIDR", "nodeCIDRMaskSize")
UNDERLAY_KEYS = ("cidr", "mtu")
NODE_KEYS = ("name", "podCIDR", "ip", "cni", "link", "runtime", "host")
POD_KEYS = ("name", "node", "namespace", "labels", "containers", "link")
MIN_MTU, MAX_MTU = 1280, 9000
DEFAULTS_FIX = f"podCIDR {DEFAULT_POD_CIDR}, serviceCIDR {DEFAULT_SERVICE_CIDR}, underlay {DEFAULT_UNDERLAY_CIDR}"
_NodeEntry = tuple[str, "IPv4Network | None", "IPv4Address | None", str]  # name, explicit podCIDR, ip, cni


def load(path: str | Path, *, name: str | None = None, routing: str | None = None,
         hosts: str | Path | None = None) -> Topology:
    """Read and validate the topology file at ``path``; ``name``/``routing`` override the file's values,
    ``hosts`` names an inventory file that replaces the file's ``hosts`` (``hosts_section``)."""
    text = yamlsafe.read_text(path, TopologyError, "UTF-8 YAML topology file (see topologies/demo.yaml)")
    return loads(text, str(path), name=name, routing=routing, hosts=hosts)


def loads(text: str, source: str = "<string>", *, name: str | None = None,
          routing: str | None = None, hosts: str | Path | None = None) -> Topology:
    """Validate topology YAML given as text; ``source`` is the file name used in messages."""
    loader = _Loader(source)
    loader.inventory = hosts_section.load_inventory(hosts) if hosts is not None else None
    return loader.run(text, name, routing)


class _Loader(Validator):
    inventory: tuple | None = None

    # -- the file -------------------------------------------------------------------------------------------
    def run(self, text: str, name: str | None, routing: str | None) -> Topology:
        data = self.mapping(self.parse(text), "", TOP_KEYS, "the topology file")
        if not data:
            self.fail("<file>", "the file holds no topology (it is empty)",
                      f"start it with 'version: {TOPOLOGY_VERSION}' and list the nodes (see topologies/demo.yaml)")
        version = data.get("version")
        if "version" not in data:
            self.fail("version", "the topology version is missing (value: none)",
                      f"add 'version: {TOPOLOGY_VERSION}' as the first line")
        if not is_int(version) or version != TOPOLOGY_VERSION:
            self.fail("version", f"unsupported topology version {show(version)}; this podlab reads version "
                      f"{TOPOLOGY_VERSION}", f"write 'version: {TOPOLOGY_VERSION}' and the version-1 keys")
        lab = self.lab_name(data, name)
        if routing is not None:
            mode = self.choice(routing, "routing", ROUTING_MODES, "routing mode (from --routing)")
        else:
            mode = self.choice(data.get("routing", "vxlan"), "routing", ROUTING_MODES, "routing mode")
        pod_cidr, service_cidr, mask = self.cluster(data.get("cluster"))
        underlay = self.underlay(data.get("underlay"))
        ranges = (("cluster.podCIDR", pod_cidr), ("cluster.serviceCIDR", service_cidr),
                  ("underlay.cidr", underlay.cidr))
        for i, (field_a, net_a) in enumerate(ranges):
            for field_b, net_b in ranges[i + 1:]:
                if cidr.overlaps(net_a, net_b):
                    self.fail(field_b, f"{net_b} overlaps {field_a} {net_a}: an address in both could not be "
                              "routed unambiguously", f"choose ranges that share no address, e.g. {DEFAULTS_FIX}")
        namespaces = self.namespaces(data.get("namespaces"))
        self.known_namespaces = BUILTIN_NAMESPACES + tuple(n.name for n in namespaces)
        nodes = self.nodes(data.get("nodes"), pod_cidr, mask, underlay)
        pods = self.pods(data.get("pods"), nodes, pod_cidr)
        containers = docker_section.parse(self, data.get("containers"), nodes, data, ranges)
        hosts = hosts_section.parse(self, data, nodes, self.inventory)
        return Topology(name=lab, source=self.file, routing=mode, pod_cidr=pod_cidr,  # type: ignore[arg-type]
                        service_cidr=service_cidr, node_mask=mask, underlay=underlay, nodes=nodes, pods=pods,
                        containers=containers, namespaces=namespaces,
                        extra=tuple((key, data[key]) for key in RAW_KEYS if key in data)
                        + ((("bgp", bgp_section.parse(self, data["bgp"], nodes)),) if "bgp" in data else ())
                        + ((("hosts", hosts),) if hosts is not None else ()))

    def parse(self, text: str) -> object:
        """The YAML document (``yamlsafe``: a syntax error, a duplicate key, binary bytes, deep nesting or an
        alias bomb is one error naming the file and where)."""
        return yamlsafe.load(text, self.file, TopologyError)

    def lab_name(self, data: dict[Any, Any], override: str | None) -> str:
        if override is not None:
            value, origin = override, " (from --name)"
        elif "name" in data:
            value, origin = data["name"], ""
        else:
            value, origin = Path(self.file).stem, " (taken from the file name, as the file has no 'name')"
        problem = names.check_name(value, kind="lab", max_len=names.MAX_LAB_NAME)
        if problem:
            self.fail("name", f"lab name {show(value)}{origin} {problem} (it prefixes every namespace of the lab)",
                      f"use a DNS label of at most {names.MAX_LAB_NAME} characters, e.g. 'name: demo' or --name demo")
        return str(value)

    def cluster(self, raw: object) -> tuple[IPv4Network, IPv4Network, int]:
        data = self.mapping(raw, "cluster", CLUSTER_KEYS, "cluster")
        pod_cidr = self.network(data.get("podCIDR", DEFAULT_POD_CIDR), "cluster.podCIDR")
        service_cidr = self.network(data.get("serviceCIDR", DEFAULT_SERVICE_CIDR), "cluster.serviceCIDR")
        for field, net in (("cluster.podCIDR", pod_cidr), ("cluster.serviceCIDR", service_cidr)):
            special = cidr.special_range(net)
            if special:
                self.fail(field, f"{net} {special}", f"use a private range, e.g. {DEFAULTS_FIX}")
        mask = data.get("nodeCIDRMaskSize", DEFAULT_NODE_MASK)
        field, prefix = "cluster.nodeCIDRMaskSize", pod_cidr.prefixlen
        if not is_int(mask):
            self.fail(field, f"must be an integer prefix length, got {show(mask)}",
                      f"write e.g. 'nodeCIDRMaskSize: {DEFAULT_NODE_MASK}'")
        if mask > cidr.MAX_NODE_MASK:
            self.fail(field, f"{mask} is longer than /{cidr.MAX_NODE_MASK}: a /31 or /32 slice leaves no pod address",
                      f"use at most {cidr.MAX_NODE_MASK} (a /30 holds 1 pod, a /24 holds 253)")
        if mask <= prefix:
            fix = (f"use a value from {prefix + 1} to {cidr.MAX_NODE_MASK}, e.g. {max(prefix + 1, DEFAULT_NODE_MASK)}"
                   if prefix < cidr.MAX_NODE_MASK else f"use a larger cluster.podCIDR, e.g. {DEFAULT_POD_CIDR}")
            self.fail(field, f"{mask} is not longer than the cluster.podCIDR prefix /{prefix} ({pod_cidr}): "
                      "each node gets a smaller slice of the cluster range", fix)
        return pod_cidr, service_cidr, mask

    def underlay(self, raw: object) -> Underlay:
        data = self.mapping(raw, "underlay", UNDERLAY_KEYS, "underlay")
        net = self.network(data.get("cidr", DEFAULT_UNDERLAY_CIDR), "underlay.cidr")
        special = cidr.special_range(net)
        if special or net.prefixlen > 30:
            self.fail("underlay.cidr", f"{net} {special or 'has no room for the gateway and a node'}",
                      f"use a private range of at least a /28, e.g. {DEFAULT_UNDERLAY_CIDR}")
        mtu = data.get("mtu", DEFAULT_UNDERLAY_MTU)
        if not is_int(mtu) or not MIN_MTU <= mtu <= MAX_MTU:
            self.fail("underlay.mtu", f"MTU {show(mtu)} is not an integer from {MIN_MTU} to {MAX_MTU}",
                      f"use e.g. 'mtu: {DEFAULT_UNDERLAY_MTU}'")
        return Underlay(cidr=net, mtu=mtu)

    # -- namespaces -----------------------------------------------------------------------------------------
    def namespaces(self, raw: object) -> tuple[Namespace, ...]:
        entries = self.list_of(raw, "namespaces", "namespaces", "[{name: x, labels: {team: a}}]")
        seen: dict[str, int] = {}
        out: list[Namespace] = []
        for i, entry in enumerate(entries):
            at = f"namespaces[{i}]"
            if isinstance(entry, str):
                entry = {"name": entry}
            data = self.mapping(entry, at, NAMESPACE_KEYS, "a namespace")
            ns = self.dns_name(data.get("name"), f"{at}.name", "namespace", names.MAX_OBJECT_NAME, example="shop")
            if ns in seen:
                self.fail(f"{at}.name", f"namespace '{ns}' is already declared by namespaces[{seen[ns]}]",
                          "declare each namespace once")
            seen[ns] = i
            labels = self.labels(data.get("labels"), f"{at}.labels")
            if any(k == "kubernetes.io/metadata.name" and v != ns for k, v in labels):
                self.fail(f"{at}.labels.kubernetes.io/metadata.name", "this label is set by the API server to the "
                          f"namespace's name ('{ns}')", "drop it: every namespace carries it already")
            out.append(Namespace(ns, tuple((k, v) for k, v in labels if k != "kubernetes.io/metadata.name")))
        return tuple(out)

    def object_namespace(self, value: object, field: str) -> str:
        """An object's ``namespace``: a DNS label naming a namespace of the lab (built-in or declared)."""
        ns = self.dns_name(value, field, "namespace", names.MAX_OBJECT_NAME, example="default")
        known = getattr(self, "known_namespaces", BUILTIN_NAMESPACES)
        if ns not in known:
            hint = did_you_mean(ns, list(known))
            self.fail(field, f"namespace '{ns}' does not exist in the lab (namespaces: {', '.join(known)})",
                      (hint + " " if hint else "") + f"declare it in the file's 'namespaces:' section, e.g. "
                      f"'namespaces: [{{name: {ns}}}]'")
        return ns

    # -- nodes ----------------------------------------------------------------------------------------------
    def nodes(self, raw: object, cluster: IPv4Network, mask: int, underlay: Underlay) -> tuple[Node, ...]:
        entries = self.list_of(raw, "nodes", "nodes", "[{name: node-1}, {name: node-2}]")
        if not entries:
            self.fail("nodes", f"at least one node is required (value: {show(raw)})",
                      "add a list of nodes, e.g. 'nodes: [{name: node-1}, {name: node-2}]'")
        seen: dict[str, int] = {}
        parsed: list[_NodeEntry] = []
        links: dict[str, LinkShape | None] = {}
        runtimes: dict[str, str] = {}
        for i, entry in enumerate(entries):
            at = f"nodes[{i}]"
            data = self.mapping(entry, at, NODE_KEYS, "a node")
            node = self.dns_name(data.get("name"), f"{at}.name", "node", names.IFNAMSIZ, reserved=True,
                                 why=" (it also names the node's port on the underlay bridge, an interface name)",
                                 example=f"node-{i + 1}")
            if node in seen:
                self.fail(f"{at}.name", f"node name '{node}' is already used by nodes[{seen[node]}]",
                          f"give each node a unique name, e.g. node-{len(entries) + 1}")
            seen[node] = i
            cni = self.choice(data.get("cni", "builtin"), f"{at}.cni", CNI_MODES, "cni mode")
            pod_cidr = self.network(data["podCIDR"], f"{at}.podCIDR") if data.get("podCIDR") is not None else None
            ip = self.address(data["ip"], f"{at}.ip") if data.get("ip") is not None else None
            parsed.append((node, pod_cidr, ip, cni))
            links[node] = self.link_shape(data.get("link"), f"{at}.link")
            runtimes[node] = self.choice(data.get("runtime", "kubelet"), f"{at}.runtime", RUNTIMES, "node runtime")
        count = cidr.slice_count(cluster, mask)
        if len(entries) > count:
            bits = (len(entries) - 1).bit_length()
            fixes = [f"a larger cluster.podCIDR such as {cluster.supernet(new_prefix=mask - bits)}"
                     ] if mask - bits >= 1 else []
            if cluster.prefixlen + bits <= cidr.MAX_NODE_MASK:
                longer = cluster.prefixlen + bits
                fixes.append(f"a longer nodeCIDRMaskSize: {longer} ({cidr.pod_capacity(longer)} pods per node)")
            self.fail("nodes", f"{len(entries)} nodes do not fit: cluster.podCIDR {cluster} has {count} /{mask} "
                      "slices (one per node)", "use " + (" or ".join(fixes) or "fewer nodes"))
        owner: dict[IPv4Network, int] = {}
        for i, (_, net, _, _) in enumerate(parsed):
            if net is None:
                continue
            problem = cidr.slice_problem(cluster, mask, net)
            if problem:
                self.fail(f"nodes[{i}].podCIDR", f"{net} {problem[0]}", problem[1])
            if net in owner:
                j = owner[net]
                self.fail(f"nodes[{i}].podCIDR", f"{net} is already the podCIDR of nodes[{j}] ({parsed[j][0]})",
                          "give each node its own slice, or drop podCIDR to have one allocated")
            owner[net] = i
        slices = cidr.allocate_node_cidrs(cluster, mask, [p[1] for p in parsed])
        ips = self.node_ips(parsed, underlay)
        return tuple(Node(name=n, ip=ip, pod_cidr=s, cni=c, link=links.get(n),  # type: ignore[arg-type]
                          runtime=runtimes[n])  # type: ignore[arg-type]
                     for (n, _, _, c), s, ip in zip(parsed, slices, ips))

    def node_ips(self, parsed: list[_NodeEntry], underlay: Underlay) -> list[IPv4Address]:
        """Explicit addresses checked; the others are host NODE_IP_OFFSET + n of the underlay (node n from 1)."""
        net = underlay.cidr
        base, last = net.network_address, net.broadcast_address - 1
        taken = {ip for _, _, ip, _ in parsed if ip is not None}
        for i, (node, _, ip, _) in enumerate(parsed):
            if ip is None:
                continue
            at = f"nodes[{i}].ip"
            if ip not in net:
                self.fail(at, f"{ip} is outside underlay.cidr {net}",
                          f"use an address inside {net}, e.g. {base + NODE_IP_OFFSET + i + 1}")
            if ip in (base, net.broadcast_address, underlay.gateway):
                role = {base: "network", net.broadcast_address: "broadcast", underlay.gateway: "underlay gateway"}[ip]
                self.fail(at, f"{ip} is the {role} address of {net}", f"use a host address from {base + 2} to {last}")
        ips: list[IPv4Address] = []
        for i, (node, _, ip, _) in enumerate(parsed):
            if ip is None:
                ip = base + NODE_IP_OFFSET + i + 1
                if ip > last:
                    bigger = net.supernet(new_prefix=cidr.prefix_for(NODE_IP_OFFSET + len(parsed), 2))
                    self.fail("underlay.cidr", f"{net} is too small for {len(parsed)} nodes: node n gets host "
                              f"{NODE_IP_OFFSET} + n, so nodes[{i}] ({node}) would get {ip}, past the last host {last}",
                              f"use a larger underlay such as {bigger}, or give the nodes explicit 'ip' addresses")
            ips.append(ip)
        first: dict[IPv4Address, int] = {}
        for i, ip in enumerate(ips):
            if ip in first:
                j = first[ip]
                explicit = i if parsed[i][2] is not None else j
                other = j if explicit == i else i
                how = ("given" if parsed[other][2] is not None
                       else f"assigned automatically: host {NODE_IP_OFFSET} + {other + 1}")
                free = next((a for a in net.hosts() if a > underlay.gateway and a not in taken and a not in ips), None)
                self.fail(f"nodes[{explicit}].ip", f"{ip} is already the address of nodes[{other}] "
                          f"({parsed[other][0]}, {how})", f"give each node its own address, e.g. {free}")
            first[ip] = i
        return ips

    # -- pods -----------------------------------------------------------------------------------------------
    def pods(self, raw: object, nodes: tuple[Node, ...], cluster: IPv4Network) -> tuple[Pod, ...]:
        entries = self.list_of(raw, "pods", "pods", "[{name: web-1, node: node-1}]")
        node_at = {n.name: i for i, n in enumerate(nodes)}
        seen: dict[tuple[str, str], int] = {}
        parsed: list[dict[str, Any]] = []
        for i, entry in enumerate(entries):
            at = f"pods[{i}]"
            data = self.mapping(entry, at, POD_KEYS, "a pod")
            pod = self.dns_name(data.get("name"), f"{at}.name", "pod", names.MAX_OBJECT_NAME, reserved=True,
                                why=" (it becomes part of the pod's network namespace name, <lab>-<pod>)",
                                example=f"web-{i + 1}")
            namespace = self.object_namespace(data.get("namespace", "default"), f"{at}.namespace")
            if (namespace, pod) in seen:
                self.fail(f"{at}.name", f"pod name '{pod}' is already used in namespace {namespace} by "
                          f"pods[{seen[(namespace, pod)]}]", "give each pod of a namespace its own name")
            if pod in node_at and namespace == "default":
                self.fail(f"{at}.name", f"pod name '{pod}' is also the name of nodes[{node_at[pod]}]: both would be "
                          f"network namespace <lab>-{pod}", f"rename the pod, e.g. {pod}-pod")
            seen[(namespace, pod)] = i
            node = data.get("node")
            if node is not None and (not isinstance(node, str) or node not in node_at):
                hint = did_you_mean(node, list(node_at))
                self.fail(f"{at}.node", f"unknown node {show(node)}; known nodes: {', '.join(node_at)}",
                          (hint + " " if hint else "") + "use one of the known node names, or drop 'node' to let "
                          "the scheduler choose")
            parsed.append(dict(
                name=pod, node=node, namespace=namespace, key=f"{namespace}/{pod}",
                labels=self.labels(data.get("labels"), f"{at}.labels"),
                containers=self.containers(data.get("containers"), f"{at}.containers"),
                link=self.link_shape(data.get("link"), f"{at}.link")))
        placed, pending = self.place(parsed, nodes, cluster)
        return tuple(Pod(name=p["name"], node=placed.get(p["key"], ""), containers=p["containers"],
                         labels=p["labels"], namespace=p["namespace"], link=p["link"],
                         unschedulable=pending.get(p["key"], "")) for p in parsed)

    def place(self, parsed: list[dict[str, Any]], nodes: tuple[Node, ...],
              cluster: IPv4Network) -> tuple[dict[str, str], dict[str, str]]:
        """Check the pinned pods fit their node's slice, then spread the others, then the hostPort filter
        (``hostports``); returns ({namespace/pod: node}, {pod: the scheduler's message for a pod left Pending})."""
        capacity = {n.name: 0 if n.runtime == "docker" else n.pod_capacity for n in nodes}
        for i, p in enumerate(parsed):
            if p["node"] is not None and capacity[p["node"]] == 0 and next(
                    n for n in nodes if n.name == p["node"]).runtime == "docker":
                kube = [n.name for n in nodes if n.runtime != "docker"]
                self.fail(f"pods[{i}].node", f"node '{p['node']}' has runtime: docker: it runs containers, not a "
                          "kubelet, so no pod can be placed there", f"pin the pod to a Kubernetes node "
                          f"({', '.join(kube) or 'none'}), or declare a Docker container under 'containers:'")
        if parsed and not any(capacity.values()):
            self.fail("pods", "every node has runtime: docker, so no node runs a kubelet for the pods",
                      "add a node without 'runtime: docker', or move the workloads to 'containers:'")
        counts: dict[str, int] = {n.name: 0 for n in nodes}
        for p in parsed:
            if p["node"] is not None:
                counts[p["node"]] += 1
        running = dict.fromkeys(counts, 0)
        for i, p in enumerate(parsed):
            node = p["node"]
            if node is None:
                continue
            running[node] += 1
            if running[node] > capacity[node]:
                slice_ = next(n.pod_cidr for n in nodes if n.name == node)
                self.fail(f"pods[{i}].node", f"node '{node}' would hold {counts[node]} pods but its slice {slice_} "
                          f"holds {capacity[node]} (the /{slice_.prefixlen} less network, broadcast and gateway)",
                          self.room_fix(counts[node], cluster, slice_.prefixlen))
        placed = {p["key"]: p["node"] for p in parsed if p["node"] is not None}
        try:
            placed.update(spread([p["key"] for p in parsed if p["node"] is None], capacity, counts))
        except Unschedulable as exc:
            i = next(i for i, p in enumerate(parsed) if p["key"] == exc.pod)
            mask = nodes[0].pod_cidr.prefixlen
            self.fail(f"pods[{i}]", f"no node has room for pod '{parsed[i]['name']}': the {len(nodes)} nodes hold "
                      f"{exc.capacity} pods in all ({cidr.pod_capacity(mask)} per /{mask} slice) and are full",
                      self.room_fix(max(capacity.values()) + 1, cluster, mask))
        return hostports.place(parsed, placed, nodes, capacity)

    @staticmethod
    def room_fix(wanted: int, cluster: IPv4Network, mask: int) -> str:
        """Fix for a full node: move or add, or a shorter mask that holds ``wanted`` pods (if the cluster allows)."""
        fix = "move pods to other nodes or add nodes"
        shorter = cidr.prefix_for(wanted, 3)
        if cluster.prefixlen < shorter < mask:
            fix += (f", or use a shorter cluster.nodeCIDRMaskSize, e.g. {shorter} "
                    f"({cidr.pod_capacity(shorter)} pods per node)")
        return fix
