"""Services, endpoints, deployments, kube-proxy and cluster DNS: the Kubernetes Service layer of a lab.

Layout (one job per module): ``model`` (Service/Deployment values and their store manifests), ``parse``
(podlab and Kubernetes forms → model, with file/field/value/fix errors), ``config`` (what a topology asks for),
``alloc`` and ``registry`` (ClusterIP/NodePort allocation and admission into the store, as the API server),
``endpoints`` and ``deployments`` (the pure controllers), ``controller`` (the controller-manager process that
runs them), ``resolv`` (pods' resolv.conf), ``dns`` (cluster DNS answers), ``dnsserver`` (the
program of the ``coredns`` pods), ``coredns`` (their Deployment and the ``kube-dns`` Service), ``proxy`` (kube-proxy: pure rule generation for iptables and nftables, and the per-node program),
``daemon`` (starting recorded processes), ``component`` (how ``up`` builds all of it). See docs/services.md.
"""
