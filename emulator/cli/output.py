"""kubectl-style output: aligned tables, ages (``emulator.fmt``), and JSON for scripts.

Every ``-o json`` of a list has one envelope, kubectl's: ``{"apiVersion": "v1", "kind": "List", "items": [...]}``,
with ``metadata`` holding what the list is of (``{"lab": "demo"}``) where that is not in the items.
"""
from __future__ import annotations

import json
import sys
from typing import Any

from emulator.fmt import age, duration, table  # noqa: F401  (the CLI's words for them)


def progress(msg: str) -> None:
    """Progress lines of long work go to stderr, so stdout stays parseable."""
    print(f"podlab: {msg}", file=sys.stderr, flush=True)


def emit_json(obj: Any, out=None) -> None:
    (out or sys.stdout).write(json.dumps(obj, indent=2, sort_keys=False) + "\n")


def list_object(items: list, **metadata: Any) -> dict:
    """kubectl's ``List`` envelope around ``items``."""
    return {"apiVersion": "v1", "kind": "List", **({"metadata": metadata} if metadata else {}), "items": items}


def emit_list(items: list, **metadata: Any) -> None:
    emit_json(list_object(items, **metadata))


def pod_status_word(status: dict) -> str:
    """The STATUS column: the waiting reason of a container if any (ContainerCreating, CrashLoopBackOff), else
    the phase."""
    for c in status.get("containerStatuses", []):
        w = c.get("state", {}).get("waiting")
        if w and w.get("reason"):
            return w["reason"]
    return status.get("phase") or "Pending"


def pod_ready(status: dict, spec: dict) -> str:
    total = len(spec.get("containers", []))
    ready = sum(1 for c in status.get("containerStatuses", []) if c.get("ready"))
    return f"{ready}/{total}"


def pod_restarts(status: dict) -> int:
    return sum(int(c.get("restartCount", 0)) for c in status.get("containerStatuses", []))
