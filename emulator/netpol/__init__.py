"""NetworkPolicy (``networking.k8s.io/v1``): the API model, its semantics, and its enforcement on every node.

Pure modules first, usable without root or a lab:

- ``model``: frozen values (``NetworkPolicy``, rules, peers, ports, label selectors) and the store's manifests;
- ``parse``: validation as the API server validates (errors carry the field path: ``spec.ingress[0].from[1].
  ipBlock.except[0]``) and its defaulting (``policyTypes``, a port's protocol);
- ``engine``: the semantics — which pods a policy selects, which peers and ports a rule admits, egress of the
  source and ingress of the destination — as a calculator that answers one connection and explains it;
- ``truthtable``: reachability tables printed as the upstream e2e suite prints them (rows from, columns to,
  ``.`` connected, ``X`` blocked), compared cell by cell;
- ``names`` and ``render``: the nftables table each node holds, named after sig-network's kube-network-policies
  (``inet kube-network-policies``, base chain ``postrouting`` at ``srcnat - 5``, set ``podips-v4``), with the
  verdicts rendered into chains instead of kube-network-policies' userspace queue; ``nodestate`` builds a node's
  desired state from the cluster incrementally.

Then the node side: ``enforcer`` (one process per node, in the node's namespace, watching the store and applying
one nftables transaction per change), ``component`` (starts the enforcers with the lab), ``cluster`` (the
store read as the engine's inputs), ``probe`` and ``matrix`` (the reachability table measured from inside pods).
"""
