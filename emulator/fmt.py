"""Text shapes every layer may print: kubectl's aligned tables and its short ages (one formatter for both a
timestamp and a duration in seconds)."""
from __future__ import annotations

import calendar
import sys
import time
from typing import Any, Sequence


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], out=None) -> None:
    out = out or sys.stdout  # looked up at the call: a redirected stdout (tests, the Mininet CLI) is honoured
    cells = [list(map(str, headers))] + [[("<none>" if c in (None, "") else str(c)) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for r in cells:
        out.write("   ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() + "\n")


def age(ts: str | None, now: float | None = None) -> str:
    """kubectl's short age: 45s, 3m12s, 5h, 2d."""
    if not ts:
        return "<unknown>"
    try:
        t = calendar.timegm(time.strptime(ts, "%Y-%m-%dT%H:%M:%SZ"))
    except ValueError:
        return "<unknown>"
    return duration(max((now or time.time()) - t, 0))


def duration(seconds: float | None) -> str:
    """kubectl's short form of a duration: 45s, 3m12s, 25m, 5h, 2d ("-" for None)."""
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 120:
        return f"{s}s"
    if s < 600:
        return f"{s // 60}m{s % 60}s" if s % 60 else f"{s // 60}m"
    if s < 3 * 3600:
        return f"{s // 60}m"
    if s < 48 * 3600:
        return f"{s // 3600}h"
    return f"{s // 86400}d"


