"""Reachability truth tables, printed as the upstream e2e suite prints them, and compared cell by cell.

Rows are sources ("from"), columns destinations ("to"); a cell is ``.`` when the connection is (expected to be)
made, ``X`` when it is blocked and ``?`` when it was not measured (the upstream suite does not probe a pod to
itself: CNIs disagree on loopback through a Service, kubernetes/kubernetes#95879). ``compare`` gives the table of
agreement (``.`` same, ``X`` different), the third table the upstream suite prints when a case fails, and
``differences`` the cells that disagree.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TruthTable:
    froms: list[str]
    tos: list[str]
    values: dict[tuple[str, str], bool | None] = field(default_factory=dict)

    @classmethod
    def filled(cls, froms: list[str], tos: list[str], value: bool) -> "TruthTable":
        return cls(list(froms), list(tos), {(f, t): value for f in froms for t in tos})

    def set(self, frm: str, to: str, value: bool | None) -> None:
        self.values[(frm, to)] = value

    def get(self, frm: str, to: str) -> bool | None:
        return self.values.get((frm, to))

    def set_row(self, frm: str, value: bool) -> None:
        for t in self.tos:
            self.set(frm, t, value)

    def set_column(self, to: str, value: bool) -> None:
        for f in self.froms:
            self.set(f, to, value)

    def compare(self, other: "TruthTable") -> "TruthTable":
        """True where both tables hold the same value (None where either was not measured)."""
        out = TruthTable(self.froms, self.tos)
        for f in self.froms:
            for t in self.tos:
                a, b = self.get(f, t), other.get(f, t)
                out.set(f, t, None if a is None or b is None else a == b)
        return out

    def differences(self, other: "TruthTable") -> list[tuple[str, str]]:
        return [(f, t) for f in self.froms for t in self.tos
                if self.get(f, t) is not None and other.get(f, t) is not None and self.get(f, t) != other.get(f, t)]

    def counts(self) -> tuple[int, int]:
        """(connected, blocked) over the measured cells."""
        vals = [v for v in self.values.values() if v is not None]
        return sum(vals), len(vals) - sum(vals)

    def pretty(self, indent: str = "", marks: set[tuple[str, str]] | None = None) -> str:
        """Rows from, columns to; ``marks`` cells get a ``*`` after their symbol (the cells that differ)."""
        width = max([len(t) for t in self.tos] + [2]) + 1
        lead = max([len(f) for f in self.froms] + [1])
        lines = [indent + "-".ljust(lead) + " " + "".join(t.ljust(width) for t in self.tos).rstrip()]
        for f in self.froms:
            cells = []
            for t in self.tos:
                v = self.get(f, t)
                sym = "?" if v is None else "." if v else "X"
                cells.append((sym + ("*" if marks and (f, t) in marks else "")).ljust(width))
            lines.append(indent + f.ljust(lead) + " " + "".join(cells).rstrip())
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"froms": self.froms, "tos": self.tos,
                "cells": {f: {t: self.get(f, t) for t in self.tos} for f in self.froms}}
