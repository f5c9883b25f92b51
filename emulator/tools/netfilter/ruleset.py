"""The netfilter rules one namespace holds, read from its kernel: nftables tables, iptables tables, xt_recent.

One read per namespace, inside it (nothing runs in the root one): ``nft -j list ruleset`` through libnftables
in-process by a thread that enters the namespace (no process; the same JSON as ``nft -j``), then, when the
namespace has iptables tables, ``iptables-save`` (run in the namespace like every lab command, ``lab.nsrun``:
recorded in the lab's process journal). With
iptables-nft (Debian's default) the nft listing says whether there are any: a namespace without rules costs no
process at all. With the legacy backend, ``iptables-save`` always runs. The ``xt_recent`` lists (``-m recent``:
kube-proxy's ClientIP affinity in iptables mode) come from ``/proc/thread-self/net/xt_recent``.

The order of ``tables`` is the order the kernel runs base chains of equal priority in: iptables' first (flannel's
masquerade rules exist before kube-proxy's table in a lab), then the other nftables tables as listed.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field

from emulator.errors import NftError, ToolError
from emulator.lab.nsrun import run_in
from emulator.netlink import netns
from emulator.services.proxy.libnft import Nft
from emulator.tools.netfilter import iptables, nft
from emulator.tools.netfilter.model import Table

RECENT_DIR = "/proc/thread-self/net/xt_recent"


@dataclass
class Ruleset:
    ns: str
    tables: list[Table] = field(default_factory=list)
    recent: dict[str, frozenset[str]] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)  # how each part was read, for the trace's words

    @property
    def empty(self) -> bool:
        return not any(t.base_chains(h) for t in self.tables for h in ("prerouting", "input", "forward", "output",
                                                                         "postrouting"))


def iptables_is_nft() -> bool:
    path = shutil.which("iptables-save")
    return path is not None and "nft" in os.path.realpath(path)


def has_iptables_tables(doc: dict) -> bool:
    return any("table" in item and item["table"].get("name") in nft.IPTABLES_NFT_TABLES
               and item["table"].get("family") == "ip" for item in doc.get("nftables", []))


def parse_recent(text: str) -> frozenset[str]:
    """Sources in one ``xt_recent`` list (lines ``src=10.244.1.2 ttl: 64 last_seen: ... oldest_pkt: ...``)."""
    return frozenset(line.split()[0][4:] for line in text.splitlines() if line.startswith("src="))


def from_dumps(ns: str, nft_json: dict | None, iptables_save: str | None,
               recent: dict[str, frozenset[str]] | None = None) -> Ruleset:
    """A ruleset from recorded dumps (pure: what ``read`` does after reading)."""
    rs = Ruleset(ns, recent=dict(recent or {}))
    if iptables_save:
        tabs = iptables.parse_save(iptables_save)
        rs.tables += [tabs[n] for n in iptables.TABLES if n in tabs]
        rs.sources.append("iptables-save")
    if nft_json:
        others = nft.parse_json(nft_json)
        rs.tables += others
        if others:
            rs.sources.append("nft -j list ruleset")
    return rs


def read(ns: str) -> Ruleset:
    """What namespace ``ns`` holds now (nothing of a tool that is not installed)."""
    with netns.entered(ns):
        doc: dict | None = None
        with Nft(json=True) as n:
            if n.in_process or shutil.which("nft"):
                try:
                    text = n.run("list ruleset")
                except NftError as e:
                    raise ToolError(f"cannot list the nftables ruleset of {ns}: {e}", obj=ns) from None
                doc = json.loads(text) if text.strip() else {"nftables": []}
        recent: dict[str, frozenset[str]] = {}
        if os.path.isdir(RECENT_DIR):
            for name in os.listdir(RECENT_DIR):
                with open(os.path.join(RECENT_DIR, name)) as f:
                    recent[name] = parse_recent(f.read())
    saved = None
    if shutil.which("iptables-save") and (doc is None or not iptables_is_nft() or has_iptables_tables(doc)):
        r = run_in(ns, ["iptables-save"])
        if r.returncode != 0:
            raise ToolError(f"iptables-save in {ns} failed: {r.stderr.strip()}", obj=ns)
        saved = r.stdout
    return from_dumps(ns, doc, saved, recent)
