"""The single-host Docker model, beside the pod model: ``runtime: docker`` nodes and their containers.

A Docker node is a lab node (a namespace on the underlay with its ``eth0``, and the routing mode's devices) that
runs what ``dockerd`` makes on a fresh host instead of a kubelet and its pods (the builder starts no agent and
writes no CNI configuration there; the loader places no pod there): the ``docker0`` bridge holding 172.17.0.1/16, one namespace per container
with ``eth0`` 172.17.0.N/16 on it (numbered from .2 by each node, so every Docker host reuses the same range),
and Docker's own netfilter rules with their real chain names (Docker 28: ``DOCKER``, ``DOCKER-USER``,
``DOCKER-FORWARD``, ``DOCKER-CT``, ``DOCKER-BRIDGE``, ``DOCKER-ISOLATION-STAGE-1/2`` in ``filter``; ``DOCKER`` in
``nat`` with one DNAT per published port; the MASQUERADE of 172.17.0.0/16 leaving other than through docker0;
the ``raw`` drops of direct access to published container ports).

- ``state``: the desired links, addresses and routes of a node's docker0 and of each container (pure);
- ``rules``: the ``iptables-restore --noflush`` input for a node (pure; only missing built-in-chain rules are
  added, Docker's own chains are rewritten whole, so applying twice changes nothing);
- ``component``: the lab component that builds it during ``up`` (after the nodes, before the agents), runs each
  container's program (podlab's netexec answering ``/hostname`` and ``/clientip``) and writes one
  ``containers/<node>.<name>.json`` object per container to the lab's store, which ``get containers`` and the
  target grammar (``container/NODE/NAME``) read.

The package sits beside ``external`` and ``netpol`` in the layers and is wired in by ``emulator.plugins``.
"""
