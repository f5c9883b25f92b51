"""kubectl-style output: aligned tables, ages, and JSON for scripts."""
from __future__ import annotations

import calendar
import json
import sys
import time
from typing import Any, Sequence


def progress(msg: str) -> None:
    """Progress lines of long work go to stderr, so stdout stays parseable."""
    print(f"podlab: {msg}", file=sys.stderr, flush=True)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], out=sys.stdout) -> None:
    cells = [list(map(str, headers))] + [[("<none>" if c in (None, "") else str(c)) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for r in cells:
        out.write("   ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() + "\n")


def emit_json(obj: Any, out=sys.stdout) -> None:
    out.write(json.dumps(obj, indent=2, sort_keys=False) + "\n")


def age(ts: str | None, now: float | None = None) -> str:
    """kubectl's short age: 45s, 3m12s, 5h, 2d."""
    if not ts:
        return "<unknown>"
    try:
        t = calendar.timegm(time.strptime(ts, "%Y-%m-%dT%H:%M:%SZ"))
    except ValueError:
        return "<unknown>"
    s = max(int((now or time.time()) - t), 0)
    if s < 120:
        return f"{s}s"
    if s < 600:
        return f"{s // 60}m{s % 60}s" if s % 60 else f"{s // 60}m"
    if s < 3 * 3600:
        return f"{s // 60}m"
    if s < 48 * 3600:
        return f"{s // 3600}h"
    return f"{s // 86400}d"


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
