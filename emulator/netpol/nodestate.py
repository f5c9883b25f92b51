"""A node's desired NetworkPolicy ruleset, as pure data, computed from the cluster incrementally.

The shape (names in ``names``), for the pods *of this node* that policies select:

    postrouting (hook postrouting, priority srcnat - 5, policy accept)
        ct state established,related accept          replies and the rest of allowed connections: stateful
        fib saddr type local accept                  from this node itself (always allowed)
        ip saddr @podips-v4 goto egress              a selected local pod sends ...
        ip daddr @podips-v4 goto ingress             ... or receives: evaluate, egress then ingress
    egress
        ip saddr != @egress-isolated-v4 goto ingress
        ip saddr @pods-<P> jump egress-<P>           one line per policy P with Egress that selects a local pod
        counter drop                                 isolated and no rule admits
    egress-<P>:  <peer match> <port match> counter goto ingress      (one line per rule, peer group, port shape)
    ingress
        ip daddr != @ingress-isolated-v4 accept
        ip daddr @pods-<P> jump ingress-<P>
        counter drop
    ingress-<P>: <peer match> <port match> counter accept

A rule's peers become ``ip saddr @peers-…`` (ingress) / ``ip daddr @peers-…`` (egress) for its pod and namespace
selectors (one set of the matching pods' IPs, cluster-wide) and ``ip saddr 10.0.0.0/8 ip saddr != { … }`` per
``ipBlock``; its ports ``meta l4proto . th dport { tcp . 80, udp . 81-85 }`` for numbers and ranges,
``meta l4proto { tcp }`` for a protocol without a port, and ``ip daddr . meta l4proto . th dport @ports-…`` for
named ports, whose set holds the serving pods' resolved (IP . protocol . port) — the selected local pods for
ingress, every pod for egress. A rule without peers or ports leaves that match out.

``NodeBuilder`` keeps the element sets between updates and recomputes only what a change touches: a pod change
re-evaluates that pod against every policy; a policy change re-evaluates that policy against every pod; a
namespace label change re-evaluates the policies with namespace selectors. ``build`` computes from scratch;
both give the same ``NodeState`` (tested).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from emulator.netpol import names
from emulator.netpol.engine import Cluster, PodInfo, peer_matches, selects
from emulator.netpol.model import EGRESS, INGRESS, Labels, NetworkPolicy, Rule

Match = tuple  # ("ct",) ("fiblocal",) ("addr", side, negate, value) ("except", side, cidrs) ("protos", protos)
#                ("ports", ((proto, lo, hi), ...)) ("named", set)
ADDR_TYPE = "ipv4_addr"
PORT_SET_TYPE = "ipv4_addr . inet_proto . inet_service"


@dataclass(frozen=True)
class NftRule:
    matches: tuple[Match, ...] = ()
    verdict: str = "accept"
    counter: bool = False
    comment: str = ""


@dataclass(frozen=True)
class SetDef:
    type: str = ADDR_TYPE
    comment: str = ""


@dataclass
class NodeState:
    node: str
    sets: dict[str, SetDef] = field(default_factory=dict)
    elements: dict[str, frozenset[str]] = field(default_factory=dict)
    chains: dict[str, tuple[NftRule, ...]] = field(default_factory=dict)  # regular chains, in order

    def rule_count(self) -> int:
        return sum(len(r) for r in self.chains.values()) + len(BASE_RULES)


BASE_RULES = (NftRule((("ct",),), "accept"),
              NftRule((("fiblocal",),), "accept", comment="from this node (kube-network-policies: meta skuid 0 accept)"),
              NftRule((("addr", "saddr", False, f"@{names.PODIPS}"),), f"goto {names.EGRESS_CHAIN}"),
              NftRule((("addr", "daddr", False, f"@{names.PODIPS}"),), f"goto {names.INGRESS_CHAIN}"))
GLOBAL_SETS = {names.PODIPS: SetDef(comment="this node's pods selected by a NetworkPolicy"),
               names.ISOLATED[INGRESS]: SetDef(comment="this node's pods isolated for ingress"),
               names.ISOLATED[EGRESS]: SetDef(comment="this node's pods isolated for egress")}


# -- one policy's rules (depend on the policy only) --------------------------------------------------------------
def _selector_peers(rule: Rule) -> bool:
    return any(p.ip_block is None for p in rule.peers)


def _named(rule: Rule) -> list:
    return [pp for pp in rule.ports if pp.named]


def policy_rules(p: NetworkPolicy, direction: str) -> tuple[NftRule, ...]:
    other = "saddr" if direction == INGRESS else "daddr"
    verdict = "accept" if direction == INGRESS else f"goto {names.INGRESS_CHAIN}"
    key = "from" if direction == INGRESS else "to"
    out: list[NftRule] = []
    for i, rule in enumerate(p.rules(direction)):
        groups: list[tuple[str, tuple[Match, ...]]] = []
        if not rule.peers:
            groups.append(("", ()))
        else:
            if _selector_peers(rule):
                groups.append(("pods", (("addr", other, False, "@" + names.peers_set(direction, p.namespace,
                                                                                     p.name, i)),)))
            for j, peer in enumerate(rule.peers):
                b = peer.ip_block
                if b is None or b.network.version != 4:
                    continue
                m: tuple[Match, ...] = (("addr", other, False, str(b.network)),)
                ex = tuple(str(e) for e in b.excepts if e.version == 4)
                if ex:
                    m += (("except", other, ex),)
                groups.append((f"{key}[{j}]", m))
        shapes: list[tuple[str, tuple[Match, ...]]] = []
        if not rule.ports:
            shapes.append(("", ()))
        else:
            nums = tuple((pp.protocol.lower(), pp.port, pp.end_port or pp.port) for pp in rule.ports
                         if isinstance(pp.port, int))
            protos = tuple(dict.fromkeys(pp.protocol.lower() for pp in rule.ports if pp.port is None))
            if nums:
                shapes.append(("ports", (("ports", nums),)))
            if protos:
                shapes.append(("protocols", (("protos", protos),)))
            if _named(rule):
                shapes.append(("named ports", (("named", names.ports_set(direction, p.namespace, p.name, i)),)))
        for gname, gm in groups:
            for sname, sm in shapes:
                extra = " ".join(x for x in (gname if len(groups) > 1 else "", sname if len(shapes) > 1 else "") if x)
                text = f"{p.ref} {direction.lower()}[{i}]" + (f" {extra}" if extra else "")
                out.append(NftRule(gm + sm, verdict, True, names.comment(text)))
    return tuple(out)


def policy_sets(p: NetworkPolicy) -> dict[str, SetDef]:
    out = {names.selected_set(p.namespace, p.name): SetDef(comment=names.comment(f"pods {p.ref} selects here"))}
    for d in (INGRESS, EGRESS):
        if not p.affects(d):
            continue
        for i, rule in enumerate(p.rules(d)):
            if _selector_peers(rule):
                out[names.peers_set(d, p.namespace, p.name, i)] = SetDef(
                    comment=names.comment(f"pods {p.ref} {d.lower()}[{i}] admits"))
            if _named(rule):
                out[names.ports_set(d, p.namespace, p.name, i)] = SetDef(
                    PORT_SET_TYPE, names.comment(f"named ports of {p.ref} {d.lower()}[{i}], resolved per pod"))
    return out


# -- membership ---------------------------------------------------------------------------------------------
class NamespaceLabels:
    """Namespace labels as the engine asks for them (``ns_labels``), each namespace's dict made once."""

    def __init__(self, namespaces: Mapping[str, Labels]) -> None:
        self.cluster = Cluster([], namespaces)
        self._memo: dict[str, dict[str, str]] = {}

    def ns_labels(self, ns: str) -> dict[str, str]:
        hit = self._memo.get(ns)
        if hit is None:
            hit = self._memo[ns] = self.cluster.ns_labels(ns)
        return hit


def pod_elements(p: NetworkPolicy, pod: PodInfo, node: str, nsl: NamespaceLabels) -> dict[str, set[str]]:
    """The elements ``pod`` contributes to the sets of policy ``p`` on ``node``."""
    out: dict[str, set[str]] = {}
    if pod.ip is None:
        return out
    cluster = nsl  # peer_matches only asks it for namespace labels
    selected_here = pod.node == node and selects(p, pod)
    if selected_here:
        out[names.selected_set(p.namespace, p.name)] = {pod.ip}
    for d in (INGRESS, EGRESS):
        if not p.affects(d):
            continue
        for i, rule in enumerate(p.rules(d)):
            if _selector_peers(rule) and any(peer.ip_block is None and peer_matches(peer, p.namespace, pod,
                                                                                    cluster)  # type: ignore[arg-type]
                                             for peer in rule.peers):
                out.setdefault(names.peers_set(d, p.namespace, p.name, i), set()).add(pod.ip)
            named = _named(rule)
            if named and (selected_here if d == INGRESS else True):
                for pp in named:
                    number = pod.named_port(pp.port, pp.protocol)  # type: ignore[arg-type]
                    if number is not None:
                        out.setdefault(names.ports_set(d, p.namespace, p.name, i), set()).add(
                            f"{pod.ip} . {pp.protocol.lower()} . {number}")
    return out


class NodeBuilder:
    """The desired state of one node, kept up to date change by change."""

    def __init__(self, node: str) -> None:
        self.node = node
        self.pods: dict[str, PodInfo] = {}
        self.namespaces: dict[str, Labels] = {}
        self.policies: dict[tuple[str, str], NetworkPolicy] = {}
        self.elements: dict[str, set[str]] = {}
        self.contrib: dict[tuple[tuple[str, str], str], dict[str, set[str]]] = {}  # (policy, pod) → elements
        self.rules: dict[tuple[str, str], dict[str, tuple[NftRule, ...]]] = {}  # policy → direction → rules
        self.set_defs: dict[tuple[str, str], dict[str, SetDef]] = {}
        self.nsl = NamespaceLabels({})
        self._frozen: dict[str, frozenset[str]] = {}  # sets unchanged since the last state() keep their object
        self._last: NodeState | None = None  # returned again while nothing changed

    def _drop(self, key: tuple[str, str], ref: str) -> None:
        if (key, ref) in self.contrib:
            self._last = None
        for s, els in self.contrib.pop((key, ref), {}).items():
            self.elements.get(s, set()).difference_update(els)
            self._frozen.pop(s, None)

    def _add(self, p: NetworkPolicy, pod: PodInfo) -> None:
        got = pod_elements(p, pod, self.node, self.nsl)
        if got:
            self._last = None
            self.contrib[(p.key, pod.ref)] = got
            for s, els in got.items():
                self.elements.setdefault(s, set()).update(els)
                self._frozen.pop(s, None)

    def _policy_out(self, key: tuple[str, str]) -> None:
        self._last = None
        for ref in self.pods:
            self.contrib.pop((key, ref), None)
        for s in self.set_defs.pop(key, {}):
            self.elements.pop(s, None)
            self._frozen.pop(s, None)
        self.rules.pop(key, None)
        self.policies.pop(key, None)

    def _policy_in(self, p: NetworkPolicy) -> None:
        self._last = None
        self.policies[p.key] = p
        self.set_defs[p.key] = policy_sets(p)
        for s in self.set_defs[p.key]:
            self.elements[s] = set()
        self.rules[p.key] = {d: policy_rules(p, d) for d in (INGRESS, EGRESS) if p.affects(d)}
        for pod in self.pods.values():
            self._add(p, pod)

    def update(self, pods: Mapping[str, PodInfo], namespaces: Mapping[str, Labels],
               policies: Mapping[tuple[str, str], NetworkPolicy], changed_pods: set[str] | None = None) -> NodeState:
        """The state for these inputs; ``changed_pods`` (refs) limits the pods looked at to those that may have
        changed since the last update (None: compare them all)."""
        ns_changed = dict(namespaces) != self.namespaces
        if ns_changed:
            self.namespaces = dict(namespaces)
            self.nsl = NamespaceLabels(self.namespaces)
        for key in [k for k, p in self.policies.items() if policies.get(k) != p]:
            self._policy_out(key)
        if changed_pods is None:
            gone = [ref for ref in self.pods if ref not in pods]
            changed = [pod for ref, pod in pods.items() if self.pods.get(ref) != pod]
        else:
            gone = [ref for ref in changed_pods if ref in self.pods and ref not in pods]
            changed = [pods[ref] for ref in changed_pods if ref in pods and self.pods.get(ref) != pods[ref]]
        for ref in gone:
            for key in self.policies:
                self._drop(key, ref)
            del self.pods[ref]
        for pod in changed:
            for key, p in self.policies.items():
                self._drop(key, pod.ref)
                self._add(p, pod)
            self.pods[pod.ref] = pod
        if ns_changed:
            for key, p in list(self.policies.items()):
                if any(peer.namespace_selector is not None for d in (INGRESS, EGRESS) for r in p.rules(d)
                       for peer in r.peers):
                    self._policy_out(key)
                    self._policy_in(p)
        for key in sorted(k for k in policies if k not in self.policies):
            self._policy_in(policies[key])
        return self.state()

    def state(self) -> NodeState:
        if self._last is not None:
            return self._last
        st = NodeState(self.node, dict(GLOBAL_SETS), chains={names.EGRESS_CHAIN: (), names.INGRESS_CHAIN: ()})
        podips: set[str] = set()
        isolated: dict[str, set[str]] = {INGRESS: set(), EGRESS: set()}
        dispatch: dict[str, list[NftRule]] = {INGRESS: [], EGRESS: []}
        for key in sorted(self.policies):
            p = self.policies[key]
            sel = self.elements.get(names.selected_set(*key), set())
            if not sel:
                continue  # selects no pod of this node: nothing to enforce here
            podips |= sel
            for s, d in self.set_defs[key].items():
                st.sets[s] = d
                fz = self._frozen.get(s)
                if fz is None:
                    fz = self._frozen[s] = frozenset(self.elements.get(s, ()))
                st.elements[s] = fz
            for d, rules in self.rules[key].items():
                isolated[d] |= sel
                chain = names.policy_chain(d, *key)
                st.chains[chain] = rules
                side = "daddr" if d == INGRESS else "saddr"
                dispatch[d].append(NftRule((("addr", side, False, "@" + names.selected_set(*key)),), f"jump {chain}",
                                           comment=names.comment(p.ref)))
        st.elements[names.PODIPS] = frozenset(podips)
        for d in (INGRESS, EGRESS):
            st.elements[names.ISOLATED[d]] = frozenset(isolated[d])
        st.chains[names.EGRESS_CHAIN] = (
            NftRule((("addr", "saddr", True, "@" + names.ISOLATED[EGRESS]),), f"goto {names.INGRESS_CHAIN}"),
            *dispatch[EGRESS],
            NftRule((), "drop", True, "no NetworkPolicy allows this egress"))
        st.chains[names.INGRESS_CHAIN] = (
            NftRule((("addr", "daddr", True, "@" + names.ISOLATED[INGRESS]),), "accept"),
            *dispatch[INGRESS],
            NftRule((), "drop", True, "no NetworkPolicy allows this ingress"))
        self._last = st
        return st


def build(cluster: Cluster, node: str) -> NodeState:
    return NodeBuilder(node).update({p.ref: p for p in cluster.pods}, cluster.namespaces,
                                    {p.key: p for p in cluster.policies})
