"""``pods/attach`` (placeholder until written)."""
from __future__ import annotations

from emulator.apiserver.status import ApiError


def plan(paths, tgt, query):
    raise ApiError(400, "BadRequest", "attach is not served yet")


def serve(ws, proto, plan) -> None:
    ws.close()
