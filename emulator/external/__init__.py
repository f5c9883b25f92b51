"""The lab's "internet": an external host behind a gateway router on the underlay, and pod-to-external SNAT.

``config`` (whether a topology has it, and its addresses), ``network`` (the router and host namespaces and their
desired state), ``masq`` (flannel's masquerade rules on each node), ``component`` (how ``up`` builds it).
"""
