"""How kube-proxy's two modes reach the kernel: one ``iptables-restore`` or one ``nft -f`` per sync.

Each backend takes the pure renderers' text and runs the one tool that applies it as a single transaction, in the
network namespace of the calling process (kube-proxy lives in its node's namespace). ``healthy`` is the cheap
check run every two seconds: the ``KUBE-PROXY-CANARY`` chains kube-proxy keeps in the mangle, nat and filter tables
(iptables mode, as kube-proxy's iptables monitor), or the ``kube-proxy`` table with its base chains (nftables
mode); someone flushing the tables or deleting the table by hand makes it false and the next sync a full one.
iptables mode asks the kernel for the chains' names itself (``nfchains``: one nfnetlink dump, no library in the
process; iptables-nft keeps its tables as ``ip mangle``/``ip nat``/``ip filter``), falling back to ``nft list
chains ip`` and, without nft, ``iptables -S`` per table; nftables mode uses ``nft list chains ip``. nft commands go through libnftables in-process
(``libnft``): the same one-transaction semantics as ``nft -f`` without starting a process per sync.
"""
from __future__ import annotations

import shutil
import subprocess
import time

from emulator.errors import PodlabError, SyncError
from emulator.services.proxy import iptables, nfchains, nft
from emulator.services.proxy.libnft import Nft, NftError
from emulator.services.proxy.state import ProxyState, SvcKey

STALE_CHAIN_DELAY = 1.0  # seconds before a flushed nftables chain is deleted (see nft.render)


def run(argv: list[str], data: str = "") -> str:
    r = subprocess.run(argv, input=data, capture_output=True, text=True)
    if r.returncode != 0:
        raise SyncError(f"{' '.join(argv[:2])} failed: {(r.stderr or r.stdout).strip()[:2000]}", obj=argv[0])
    return r.stdout


def list_chains(nftc: Nft) -> dict[str, set[str]]:
    """{"family table": {chain, ...}} of the ip family, from ``nft list chains ip``."""
    out: dict[str, set[str]] = {}
    table = ""
    try:
        text = nftc.run("list chains ip\n")
    except NftError as e:
        raise SyncError(str(e), obj="nft") from None
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("table "):
            table = s[len("table "):].rstrip(" {")
            out.setdefault(table, set())
        elif s.startswith("chain "):
            out.setdefault(table, set()).add(s[len("chain "):].rstrip(" {"))
    return out


class Backend:
    """Created before the kube-proxy process enters its namespace: anything bound to a namespace (libnftables'
    netlink socket) is made on first use, inside it."""

    mode = ""
    _nft: Nft | None = None

    @property
    def nft(self) -> Nft:
        if self._nft is None:
            self._nft = Nft()
        return self._nft

    @property
    def pending(self) -> bool:
        """Housekeeping left for a later sync even when nothing changed (stale nftables chains)."""
        return False

    def healthy(self) -> bool:
        raise NotImplementedError

    def sync(self, state: ProxyState, changed: set[SvcKey] | None, previous: ProxyState | None) -> int:
        """Apply ``state`` (full when ``changed`` is None); return the number of lines sent."""
        raise NotImplementedError


class IptablesBackend(Backend):
    mode = "iptables"

    def healthy(self) -> bool:
        tables = ("mangle", "nat", "filter")
        try:  # one nfnetlink dump: no libnftables in this process (``nfchains``: ~4 MB less per kube-proxy)
            chains = nfchains.chains()
        except OSError:
            if not self.nft.in_process and shutil.which("nft") is None:  # one iptables call per table instead
                return all(subprocess.run(["iptables", "-w", "5", "-t", t, "-S", iptables.CANARY],
                                          capture_output=True).returncode == 0 for t in tables)
            chains = list_chains(self.nft)
        return all(iptables.CANARY in chains.get(f"ip {t}", set()) for t in tables)

    def sync(self, state: ProxyState, changed: set[SvcKey] | None, previous: ProxyState | None) -> int:
        existing = iptables.parse_save(run(["iptables-save"])) if changed is None else None
        text = iptables.render(state, changed, previous, existing)
        run(["iptables-restore", "-w", "5", "--noflush"], text)
        return text.count("\n")


class NftBackend(Backend):
    mode = "nftables"

    def __init__(self) -> None:
        self.stale: dict[str, float] = {}  # chain -> when it was flushed

    def healthy(self) -> bool:
        chains = list_chains(self.nft).get(f"ip {nft.TABLE}")
        return chains is not None and all(c[0] in chains for c in nft.BASE_CHAINS)

    def _run(self, text: str) -> str:
        try:
            return self.nft.run(text)
        except NftError as e:
            raise SyncError(str(e), obj="nft") from None

    def _sets(self) -> set[str]:
        out = set()
        for line in self._run("list sets ip\n").splitlines():
            s = line.strip()
            if s.startswith("set "):
                out.add(s[len("set "):].rstrip(" {"))
        return out

    def sync(self, state: ProxyState, changed: set[SvcKey] | None, previous: ProxyState | None) -> int:
        now = time.monotonic()
        existing_chains = existing_sets = None
        if changed is None:
            existing_chains = list_chains(self.nft).get(f"ip {nft.TABLE}", set())
            existing_sets = self._sets()
            self.stale = {c: t for c, t in self.stale.items() if c in existing_chains}
        in_use = nft.wanted_chains(state, changed)  # a stale chain may be wanted again (an endpoint came back)
        self.stale = {c: t for c, t in self.stale.items() if c not in in_use}
        due = {c for c, t in self.stale.items() if now - t >= STALE_CHAIN_DELAY}
        text = nft.render(state, changed, previous, existing_chains, existing_sets, delete_chains=due)
        self._run(text)
        for c in due:
            self.stale.pop(c, None)
        for c in nft.stale_chains(state, changed, previous, existing_chains) - due:
            self.stale.setdefault(c, now)
        return text.count("\n")

    @property
    def pending(self) -> bool:
        return bool(self.stale)


def backend(mode: str) -> Backend:
    if mode == "iptables":
        return IptablesBackend()
    if mode == "nftables":
        return NftBackend()
    raise PodlabError(f"kube-proxy mode {mode!r} is not supported; use iptables or nftables", obj=mode)
