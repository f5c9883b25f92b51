"""Rendering check reports: a table of checks × routing modes with evidence for failures, JSON, JUnit XML.

JUnit follows the shape CI systems read: ``<testsuites>`` holding one ``<testsuite>`` per routing mode with
``tests``/``failures``/``skipped``/``time`` attributes, one ``<testcase classname="podlab.<mode>" name="<check>">``
per check, and ``<failure message=... type=...>`` (evidence as text) or ``<skipped/>`` inside.
"""
from __future__ import annotations

import io
import xml.etree.ElementTree as ET

from emulator.check.model import ModeReport
from emulator.fmt import table


def text(reports: list[ModeReport]) -> str:
    out = io.StringIO()
    names: list[str] = []
    for r in reports:
        for c in r.results:
            if c.name not in names:
                names.append(c.name)
    rows = []
    for n in names:
        row = [n]
        for r in reports:
            c = next((c for c in r.results if c.name == n), None)
            row.append(c.status if c else "-")
        rows.append(row)
    table(["CHECK"] + [r.routing.upper() for r in reports], rows, out=out)
    for r in reports:
        fails = [c for c in r.results if c.status == "FAIL"]
        out.write(f"\n{r.routing} (lab {r.lab}, {r.seconds:.1f}s): "
                  f"{'all checks passed' if not fails else f'{len(fails)} check(s) failed'}\n")
        for n in r.notes:
            out.write(f"  note: {n}\n")
        for c in r.results:
            out.write(f"  {c.status:4} {c.name}: {c.summary}\n")
            for f in c.findings:
                out.write(f"       - {f.subject}: expected {f.expected}, observed {f.observed}")
                out.write(f"; culprit: {f.culprit}\n" if f.culprit else "\n")
                if f.trace:
                    out.write("".join(f"         {line}\n" for line in f.trace.splitlines()))
    return out.getvalue()


def junit(reports: list[ModeReport]) -> str:
    root = ET.Element("testsuites", name="podlab check")
    for r in reports:
        suite = ET.SubElement(root, "testsuite", name=f"podlab check ({r.routing})",
                              tests=str(len(r.results)), failures=str(sum(c.status == "FAIL" for c in r.results)),
                              errors="0", skipped=str(sum(c.status == "SKIP" for c in r.results)),
                              time=f"{r.seconds:.3f}")
        for c in r.results:
            case = ET.SubElement(suite, "testcase", classname=f"podlab.{r.routing}", name=c.name,
                                 time=f"{c.seconds:.3f}")
            if c.status == "FAIL":
                body = "\n".join(f"{f.subject}: expected {f.expected}, observed {f.observed}"
                                 + (f" (culprit: {f.culprit})" if f.culprit else "") for f in c.findings)
                fail = ET.SubElement(case, "failure", message=c.summary, type="NetworkModelViolation")
                fail.text = body or c.summary
            elif c.status == "SKIP":
                ET.SubElement(case, "skipped", message=c.summary)
            else:
                out = ET.SubElement(case, "system-out")
                out.text = c.summary
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
