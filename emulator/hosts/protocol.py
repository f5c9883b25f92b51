"""The controller ↔ host wire format: JSON lines over one SSH channel to ``podlab host serve``.

The host speaks first: ``{"hello": {...}}`` (podlab version, hostname, uid, kernel facts). Then the controller
sends requests ``{"id": N, "op": "up", ...}`` one at a time; the host answers with any number of
``{"id": N, "progress": "..."}`` lines and one final ``{"id": N, "ok": true, "result": ...}`` or
``{"id": N, "ok": false, "error": {"type", "message", "obj"}}``. Errors cross the wire by class name and are
raised again on the controller as the same class of ``emulator.errors`` (unknown names become ``HostError``),
with the host's name prefixed to the message. One request in flight per channel keeps the host side a plain
loop; parallelism comes from one channel per host, all hosts at once.
"""
from __future__ import annotations

import json
import sys
from typing import Any

from emulator import errors
from emulator.errors import HostError, PodlabError

PROTOCOL = 1


def podlab_version() -> str:
    """The running podlab's version (``emulator.__version__``), read from the already imported package: an
    ``import emulator`` here would, to the layer contract, be an import of the top package from below."""
    return str(sys.modules["emulator"].__version__)


def encode(msg: dict[str, Any]) -> bytes:
    return (json.dumps(msg, separators=(",", ":"), default=str) + "\n").encode()


def error_body(e: BaseException) -> dict[str, Any]:
    return {"type": type(e).__name__, "message": str(e), "obj": getattr(e, "obj", None)}


def raise_remote(host: str, body: dict[str, Any]) -> None:
    """Raise the host's error on this side, as the same class where ``emulator.errors`` has it."""
    cls = getattr(errors, str(body.get("type")), None)
    message = f"host {host}: {body.get('message')}"
    obj = body.get("obj") or host
    if isinstance(cls, type) and issubclass(cls, PodlabError) and cls.__init__ is PodlabError.__init__:
        raise cls(message, obj=obj)
    if isinstance(cls, type) and issubclass(cls, PodlabError):
        e = HostError(message, obj=obj)
        e.exit_code = cls.exit_code  # keep the CLI's exit code of the original class (2, 3, 4, 6)
        raise e
    raise HostError(message, obj=obj)
