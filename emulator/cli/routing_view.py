"""How the CLI shows a routing mode's live report (``RoutingMode.node_report``): one word for ``get nodes``, a
few lines for ``describe node``. The modes return data; the words are the CLI's."""
from __future__ import annotations

from emulator.fmt import duration


def status_word(mode: str, report: dict) -> str:
    """The ROUTING column's parenthesis: e.g. ``2/2 BGP sessions up`` in bgp mode, nothing in the others."""
    if mode != "bgp" or not report:
        return ""
    if not report.get("bird", {}).get("running"):
        return "BIRD not running"
    sessions = report.get("sessions", [])
    up = sum(1 for s in sessions if s.get("bgpState") == "Established")
    return f"{up}/{len(sessions)} BGP sessions up"


def describe_lines(mode: str, rep: dict) -> list[str]:
    if mode != "bgp" or not rep:
        return []
    head = (f"BIRD pid {rep['bird']['pid']}, AS {rep.get('asn')}, router id {rep.get('routerId')}, "
            f"{rep.get('mode')} layout" if rep["bird"]["running"] else "BIRD is not running")
    lines = [f"BGP: {head}"]
    for s in rep["sessions"]:
        lines.append(f"  {s['name']:<22} {s['peerNode'] or '':<10} {s['peer']:<15} {s['bgpState']:<12} "
                     f"{duration(s['uptimeSeconds'])} {s['info']}".rstrip())
    return lines
