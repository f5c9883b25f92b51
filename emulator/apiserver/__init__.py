"""The lab's Kubernetes API server: real kubectl and the official clients drive a lab unchanged.

One process per lab (``server``), started by ``up`` as a recorded lab process (``component``) and ended by
``down``/``cleanup``: HTTPS on 127.0.0.1 with a per-lab CA and bearer token (``certs``), a ``podlab-<lab>``
context in the user's kubeconfig (``kubeconfig``). It is a front of the one store that podlab's CLI, controllers
and agents already share, never a second copy: reads come from a watch cache that follows the store's change
feed (``cache``), writes go to the store under its lock (``writes``) after podlab's own validation
(``admission``), so a pod created with kubectl reaches its node's agent exactly as one made by ``podlab apply``.
Discovery, ``/version`` and the minimal OpenAPI (``discovery``), server-side Table printing (``tables``),
selectors, strategic merge / merge / JSON patch (``patch``, with the real schemas' merge keys: ``schema``) and the
real server's Status wording (``status``) make kubectl print what it prints against a real cluster.

It sits above ``services`` (it admits Services and Deployments with their parsers and allocator) and is used
only by ``cli`` and the lab's component registry; nothing below imports it.
"""
