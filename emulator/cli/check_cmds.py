"""``podlab check``: the network-model conformance suite, on a running lab or on a topology in every mode."""
from __future__ import annotations

import argparse
import json
import os
import sys

from emulator.check import registry, report, runner
from emulator.check.model import to_dict
from emulator.cli import common, host_cmds, output
from emulator.lab.api import Lab


def cmd_check(a: argparse.Namespace) -> int:
    if a.file and not os.path.exists(a.file) and a.file in {c.name for c in registry.load()}:
        a.only, a.file = ",".join(filter(None, [a.only, a.file])), None  # `podlab check netpol`: a check's name
    only = a.only.split(",") if a.only else None
    full = True if a.full else None
    if a.file:
        reports = runner.run_file(a.file, a.routing or "all", progress=output.progress, only=only, full=full,
                                  seed=a.seed)
    elif host_cmds.multihost_lab(a.lab) is not None:
        return host_cmds.check(host_cmds.multihost_lab(a.lab) or "", a.output)
    else:
        lab = Lab.get(a.lab)
        if a.routing and a.routing != lab.record.get("routing"):
            print(f"podlab: --routing {a.routing} needs a topology FILE (lab {lab.name} runs "
                  f"{lab.record.get('routing')})", file=sys.stderr)
            return 2
        reports = [runner.run_lab(lab, only, full, a.seed)]
    text = {"json": lambda r: json.dumps(to_dict(r), indent=2) + "\n", "junit": report.junit,
            "text": report.text}[a.output](reports)
    if a.junit_file:
        with open(a.junit_file, "w") as f:
            f.write(report.junit(reports))
    sys.stdout.write(text)
    return 0 if all(r.ok for r in reports) else 1


def register(sub: argparse._SubParsersAction) -> None:
    s = common.verb(sub, "check", help="check the network model (unique IPs, pod↔pod without NAT, node→pod, ...)")
    s.add_argument("file", nargs="?", help="a topology: bring it up per routing mode, check, tear down; or the name "
                   "of one check to run on the running lab (podlab check netpol)")
    s.add_argument("--routing", help="all | vxlan | host-gw | bgp | a comma list (with FILE; default all)")
    s.add_argument("--only", help="comma list of check names")
    s.add_argument("--full", action="store_true",
                   help="probe every pod pair (default: the full matrix up to 100 pods, a spanning set above)")
    s.add_argument("--seed", type=int, help="seed of the spanning set's random sample (the report shows the one used)")
    s.add_argument("-o", "--output", choices=["text", "json", "junit"], default="text")
    s.add_argument("--junit-file", help="also write JUnit XML here")
    s.set_defaults(fn=cmd_check)
