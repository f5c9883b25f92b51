"""``pods/portforward`` (placeholder until written)."""
from __future__ import annotations

from emulator.apiserver.status import ApiError

PROTOCOLS = ("SPDY/3.1+portforward.k8s.io", "v4.channel.k8s.io")


def target(store, ns, name):
    raise ApiError(400, "BadRequest", "portforward is not served yet")


def serve(ws, proto, t, query) -> None:
    ws.close()
