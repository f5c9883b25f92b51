"""Running the checks: against a running lab, or bringing a topology up in each routing mode in turn."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

from emulator.check.context import Context
from emulator.check.model import CheckResult, ModeReport
from emulator.check.registry import load
from emulator.lab.api import Lab
from emulator.topology.loader import load as load_topo
from emulator.topology.model import ROUTING_MODES as ALL_MODES


def run_lab(lab: Lab, only: list[str] | None = None, full: bool | None = None,
            seed: int | None = None) -> ModeReport:
    """Run the checks on a running lab. ``full``: every pod pair (True), a spanning set (False) or by size
    (None: the full matrix up to ``plan.FULL_MAX_PODS`` pods); ``seed`` fixes the spanning set's sample."""
    t0 = time.monotonic()
    results = []
    with Context(lab, full=full, seed=seed) as ctx:
        for c in load():
            if only and c.name not in only:
                continue
            t = time.monotonic()
            if not c.applies(ctx):
                results.append(CheckResult(c.name, c.title, "SKIP", "not applicable to this lab"))
                continue
            try:
                r = c.fn(ctx)
            except Exception as e:  # a broken check is a failed check, with the reason
                r = CheckResult(c.name, c.title, "FAIL", f"the check itself failed: {type(e).__name__}: {e}")
            r.title, r.seconds = c.title, time.monotonic() - t
            results.append(r)
        planned = ctx.plan.as_dict() if "matrix" in ctx.__dict__ else None
        notes = ctx.notes()
    return ModeReport(lab.name, lab.record.get("routing", ""), results, time.monotonic() - t0, planned, notes)


def modes_for(routing: str) -> list[str]:
    if routing == "all":
        return list(ALL_MODES)
    return [m.strip() for m in routing.split(",") if m.strip()]


def run_file(path: str | Path, routing: str, progress: Callable[[str], None] = lambda s: None,
             only: list[str] | None = None, full: bool | None = None, seed: int | None = None) -> list[ModeReport]:
    """Bring the topology up once per mode (under a name of its own), check it, tear it down."""
    reports = []
    for i, mode in enumerate(modes_for(routing)):
        name = f"chk{os.getpid() % 100000}{i}"
        topo = load_topo(path, name=name, routing=mode)
        progress(f"{mode}: bringing up {len(topo.nodes)} nodes, {len(topo.pods)} pods as lab {name}")
        t0 = time.monotonic()
        lab = Lab.up(topo)
        try:
            rep = run_lab(lab, only, full, seed)
        finally:
            lab.down()
        rep.seconds = time.monotonic() - t0
        progress(f"{mode}: {'PASS' if rep.ok else 'FAIL'} in {rep.seconds:.1f}s")
        reports.append(rep)
    return reports
