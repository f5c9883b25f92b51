#!/usr/bin/env python3
"""Where a lab's processes hold their memory: /proc/PID/smaps of each process the lab's journal names, summed by
kind of process (``agent``, ``kube-proxy``, ...) and by kind of region, in MB (or kB per process with --per).

    sudo python3 scripts/mem_regions.py LAB [--per]

Regions: ``heap`` (the main arena, brk), ``arena`` (a thread's malloc arena: anonymous memory inside a 64 MB
aligned reservation), ``stack`` (the main thread's and threads' stacks: 8 MB anonymous regions below a guard
page), ``anon`` (other anonymous mappings: pymalloc's 1 MB arenas, large mallocs), ``file`` (the interpreter,
shared libraries and other file-backed mappings). For each: Pss, Private_Dirty, Shared_Dirty. Not a test: used to
find what to cut for the memory figures in the README.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from emulator.proc.lifecycle import alive  # noqa: E402
from emulator.state import record  # noqa: E402

FIELDS = ("Pss", "Private_Dirty", "Shared_Dirty", "Rss")
STACK_KB = 8192
ARENA_KB = 65536


def regions(pid: int) -> dict[str, dict[str, int]]:
    """region kind -> field -> kB for one process."""
    maps: list[dict] = []
    cur: dict | None = None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split()
            if "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
                lo, hi = (int(x, 16) for x in head[0].split("-"))
                cur = {"lo": lo, "hi": hi, "perms": head[1], "path": head[5] if len(head) > 5 else "",
                       "inode": head[4]}
                maps.append(cur)
            elif cur is not None and head[0].rstrip(":") in FIELDS:
                cur[head[0].rstrip(":")] = int(head[1])
    out: dict[str, dict[str, int]] = {}
    for i, m in enumerate(maps):
        size_kb = (m["hi"] - m["lo"]) // 1024
        if m["path"] == "[heap]":
            kind = "heap"
        elif m["path"] == "[stack]":
            kind = "stack"
        elif m["path"].startswith("["):
            kind = "file"  # vdso, vvar
        elif m["inode"] != "0":
            kind = "file"
        else:
            prev = maps[i - 1] if i else None
            nxt = maps[i + 1] if i + 1 < len(maps) else None
            guard_below = prev is not None and prev["hi"] == m["lo"] and prev["perms"].startswith("---")
            guard_above = nxt is not None and nxt["lo"] == m["hi"] and nxt["perms"].startswith("---")
            if guard_below and size_kb in (STACK_KB - 4, STACK_KB):
                kind = "stack"
            elif guard_above and (m["lo"] % (ARENA_KB * 1024) == 0 or
                                  (nxt["hi"] - m["lo"]) // 1024 in (ARENA_KB, ARENA_KB * 2)):
                kind = "arena"
            elif m["lo"] % (ARENA_KB * 1024) == 0 and size_kb == ARENA_KB and m["perms"].startswith("rw"):
                kind = "arena"
            else:
                kind = "anon"
        d = out.setdefault(kind, {})
        for k in FIELDS:
            d[k] = d.get(k, 0) + m.get(k, 0)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("lab")
    ap.add_argument("--per", action="store_true", help="kB per process instead of MB in all")
    a = ap.parse_args()
    groups: dict[str, dict[str, dict[str, int]]] = {}
    count: dict[str, int] = {}
    for e in record.processes(a.lab):
        if not alive(e.pid, e.start):
            continue
        g = e.what.split(" of ")[0]
        try:
            r = regions(e.pid)
        except OSError:
            continue
        count[g] = count.get(g, 0) + 1
        for kind, d in r.items():
            t = groups.setdefault(g, {}).setdefault(kind, {})
            for k, v in d.items():
                t[k] = t.get(k, 0) + v
    for g, kinds in sorted(groups.items()):
        n = count[g]
        div = n if a.per else 1024
        unit = "kB/process" if a.per else "MB"
        total = {k: sum(d.get(k, 0) for d in kinds.values()) for k in FIELDS}
        print(f"{g} ({n}) [{unit}]  total Pss {total['Pss'] / div:.1f} Private_Dirty "
              f"{total['Private_Dirty'] / div:.1f} Shared_Dirty {total['Shared_Dirty'] / div:.1f}")
        for kind, d in sorted(kinds.items()):
            print(f"    {kind:6} " + "  ".join(f"{k} {d.get(k, 0) / div:8.1f}" for k in FIELDS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
