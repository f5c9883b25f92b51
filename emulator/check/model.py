"""Results of the network-model conformance checks: findings, check results, a report per routing mode."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

Status = Literal["PASS", "FAIL", "SKIP"]


@dataclass
class Finding:
    """One failed expectation, with the evidence a reader needs to act on it."""

    subject: str  # "web-1 → web-3", "pod web-2", "node-1 → web-1"
    expected: str
    observed: str
    culprit: str = ""  # the object to look at ("node-1", "pod web-2"), when it can be named
    trace: str = ""  # the path the packet takes (from the kernel), when useful


@dataclass
class CheckResult:
    name: str
    title: str
    status: Status
    summary: str
    findings: list[Finding] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class ModeReport:
    lab: str
    routing: str
    results: list[CheckResult]
    seconds: float = 0.0
    plan: dict | None = None  # which pairs were probed (``plan.Plan.as_dict``)
    notes: list[str] = field(default_factory=list)  # how the probes ran (spanning set, pacing, overflows)

    @property
    def ok(self) -> bool:
        return all(r.status != "FAIL" for r in self.results)


def to_dict(reports: list[ModeReport]) -> dict:
    return {"ok": all(r.ok for r in reports),
            "modes": [{"lab": r.lab, "routing": r.routing, "ok": r.ok, "seconds": round(r.seconds, 2),
                       **({"plan": r.plan} if r.plan else {}), **({"notes": r.notes} if r.notes else {}),
                       "checks": [{**{k: v for k, v in asdict(c).items() if k != "findings"},
                                   "seconds": round(c.seconds, 2),
                                   "findings": [asdict(f) for f in c.findings]} for c in r.results]}
                      for r in reports]}
