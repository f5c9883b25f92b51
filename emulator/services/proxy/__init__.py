"""kube-proxy: the pure desired state (``state``), kube-proxy's chain names (``names``), the two rule renderers
(``iptables``, ``nft``), the tools that apply them (``backends``) and the per-node program (``kubeproxy``)."""
