"""Each pod's ``/etc/resolv.conf``, as the kubelet writes it, at the place ``ip netns exec`` looks for it.

A pod with ``dnsPolicy: ClusterFirst`` gets::

    search <namespace>.svc.cluster.local svc.cluster.local cluster.local
    nameserver 10.96.0.10
    options ndots:5

``ip netns exec <lab>-<pod>`` bind-mounts ``/etc/netns/<lab>-<pod>/resolv.conf`` (``<lab>-<pod>.<namespace>``
outside ``default``, see ``names.pod_ns``) over ``/etc/resolv.conf`` (and
the agent starts containers that way when the directory exists), so the pod's processes resolve short names
through the cluster DNS while the host's resolver stays untouched. The files are owned by the lab: every
directory podlab creates is listed in ``<lab state>/resolv-owned.json`` before it is made, and only listed
directories are ever removed (a directory that existed before is left alone and not used).

A pod's ``/etc/netns/<ns>`` is a symbolic link to the directory of its Kubernetes namespace in the lab's state
(``<lab state>/etc-netns/<namespace>/resolv.conf``, on tmpfs): the file's content depends on the namespace only,
and /etc is usually on a disk file system, where removing a directory is slow (~2.5 ms each on this VM's ext4
mounted with ``discard``: 12 s for 5,000 pods at ``down``, against 0.1 s to unlink 5,000 links, which hold no
block). ``ip netns exec`` and ``emulator.proc.etcns`` follow the link as they would read a directory.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from pathlib import Path
from typing import Callable, Iterable, Iterator

from emulator.netlink import netns
from emulator.state.paths import LabPaths
from emulator.state.store import Store, read_json, write_atomic, write_json
from emulator.topology import names

ETC_NETNS = Path(netns.NETNS_ETC_DIR)
SHARED = "etc-netns"  # in the lab's state: one directory per Kubernetes namespace, which the pods' links point to


def content(namespace: str, nameserver: str, domain: str = "cluster.local") -> str:
    return (f"search {namespace}.svc.{domain} svc.{domain} {domain}\nnameserver {nameserver}\n"
            f"options ndots:5\n")


def shared_dir(lab: str, k8s_ns: str) -> Path:
    """The directory every pod of Kubernetes namespace ``k8s_ns`` has its ``/etc/netns/<pod ns>`` link to."""
    return LabPaths(lab).root / SHARED / k8s_ns


class ResolvFiles:
    """The resolv.conf files of one lab's pods.

    ``ensure`` is called by the controller-manager on every pass (1000s of pods): it remembers what it last saw
    and wrote, and while the ledger is the file it last read or wrote (same inode and mtime: every write is a
    rename of a new file) and every pod's file is one it wrote with the same text, it touches nothing (no lock,
    no read). ``verify=True`` re-reads everything (a file removed by hand is made again)."""

    def __init__(self, lab: str, nameserver: str, domain: str = "cluster.local") -> None:
        self.lab, self.nameserver, self.domain = lab, nameserver, domain
        self.ledger = LabPaths(lab).root / "resolv-owned.json"
        self.shared = LabPaths(lab).root / SHARED  # one directory per Kubernetes namespace, linked to
        self._ledger_stamp: tuple[int, int] | None = None  # the ledger as last read or written here
        self._owned: set[str] = set()  # ... and what it listed then
        self._written: dict[str, str] = {}  # netns name -> the text its resolv.conf is known to hold

    def _stamp(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.ledger)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns)

    def _want(self, pods: list[dict]) -> dict[str, str]:
        """netns name -> Kubernetes namespace of each pod."""
        out = {}
        for p in pods:
            meta = p["metadata"]
            k8s_ns = meta.get("namespace") or "default"
            out[names.pod_ns(self.lab, meta["name"], k8s_ns)] = k8s_ns
        return out

    def _current(self, want: dict[str, str], prune: bool) -> bool:
        """True if nothing is to be done: the ledger is as we left it and every file is as we wrote it."""
        if self._ledger_stamp is None or self._stamp() != self._ledger_stamp:
            return False
        if prune and any(ns not in want for ns in self._owned):
            return False
        written = self._written
        return all(ns in self._owned and written.get(ns) == content(k8s_ns, self.nameserver, self.domain)
                   for ns, k8s_ns in want.items())

    def owned(self) -> set[str]:
        return set(read_json(self.ledger) or [])

    def _save(self, owned: set[str]) -> None:
        self.ledger.parent.mkdir(parents=True, exist_ok=True)
        write_json(self.ledger, sorted(owned))

    @contextlib.contextmanager
    def _locked(self):
        """One writer of the ledger and the directories at a time (the controller-manager prunes while the API
        server adds a pod's file)."""
        self.ledger.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(str(self.ledger) + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def ensure(self, pods: list[dict], prune: bool = True, verify: bool = False,
               live: Callable[[], Iterable[dict]] | None = None) -> None:
        """Make the files of ``pods`` exist and (``prune``) remove those of pods that are not in the list.

        ``pods`` is a list taken earlier: a pod stored since (the API server's, whose file ``preparing_pod``
        wrote just before) is not in it, and its file must stay. ``live`` lists the pods again, under the
        ledger's lock, before anything is pruned; ``preparing_pod`` holds that lock until its pod is stored, so
        a file is either in the ledger with its pod in the store, or not yet in the ledger."""
        want = self._want(pods)
        if not verify and self._current(want, prune):
            return
        with self._locked():
            self._ensure(want, prune, verify, live)

    def _ensure(self, want: dict[str, str], prune: bool, verify: bool,
                live: Callable[[], Iterable[dict]] | None = None) -> None:
        owned = self.owned()
        if verify:
            self._written = {}  # asked to look: trust nothing
        else:  # another writer (the API server, preparing a new pod's file) only adds; what left the ledger went
            self._written = {ns: t for ns, t in self._written.items() if ns in owned}
        new = {ns for ns in want if ns not in owned and not os.path.lexists(f"{ETC_NETNS}/{ns}")}
        if new:
            self._save(owned | new)  # recorded before anything is created
            owned |= new
        shared: dict[str, str] = {}  # Kubernetes namespace -> its directory, written in this pass
        for ns, k8s_ns in want.items():
            if ns not in owned:
                continue
            text = content(k8s_ns, self.nameserver, self.domain)
            if self._written.get(ns) == text:
                continue
            target = shared.get(k8s_ns)
            if target is None:
                target = shared[k8s_ns] = self._shared_dir(k8s_ns, text)
            d = f"{ETC_NETNS}/{ns}"
            if ns in new:  # a name nobody had: linked here, before any pod of it starts
                os.makedirs(ETC_NETNS, exist_ok=True)
                os.symlink(target, d)
            else:
                _relink(d, target)
            self._written[ns] = text
        gone = {ns for ns in owned if ns not in want} if prune else set()
        if gone and live is not None:
            gone -= set(self._want(list(live())))
        if gone:
            self._remove(gone)
        else:
            self._remember(owned)

    def write_shared(self, k8s_namespaces: Iterable[str]) -> None:
        """Write the shared directories of these Kubernetes namespaces (not the pods' links: ``ensure`` makes those,
        ~1 ms each on an ext4 /etc). A pod started before its link exists gets the same files from its directory
        (``proc.spawn``'s ``etc_fallback``), so ``up`` writes these and lets the controller-manager make the links
        while the agents start the pods."""
        with self._locked():
            for k8s_ns in sorted(set(k8s_namespaces)):
                self._shared_dir(k8s_ns, content(k8s_ns, self.nameserver, self.domain))

    def remove(self, which: set[str] | None = None) -> None:
        with self._locked():
            self._remove(which)

    def _remove(self, which: set[str] | None = None) -> None:
        owned = self.owned()
        for ns in sorted(owned if which is None else which & owned):
            _remove_entry(ETC_NETNS / ns)  # gone already is fine; a leftover is replaced by the next pod of
            # that name (its link is made again before it starts)
            owned.discard(ns)
            self._written.pop(ns, None)
        if which is None:
            shutil.rmtree(self.shared, ignore_errors=True)
        self._save(owned)
        self._remember(owned)

    def _shared_dir(self, k8s_ns: str, text: str) -> str:
        """The directory whose resolv.conf holds ``text`` for the pods of ``k8s_ns`` (written if it does not)."""
        d = shared_dir(self.lab, k8s_ns)
        f = d / "resolv.conf"
        try:
            same = f.read_text() == text
        except FileNotFoundError:
            same = False
        if not same:
            d.mkdir(parents=True, exist_ok=True)
            write_atomic(f, text)
        return str(d)

    def _remember(self, owned: set[str]) -> None:
        self._ledger_stamp, self._owned = self._stamp(), set(owned)
        self._written = {ns: t for ns, t in self._written.items() if ns in owned}


def _relink(path: str, target: str) -> None:
    """Make ``path`` a link to ``target`` (a directory of an older podlab there, or a link elsewhere, replaced)."""
    try:
        if os.readlink(path) == target:
            return
    except FileNotFoundError:
        pass  # nothing there: linked below
    except OSError:  # not a link: the per-pod directory of an older podlab
        shutil.rmtree(path, ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    os.symlink(target, path)


def _remove_entry(path: Path) -> None:
    """Remove a pod's /etc/netns entry: the link (or an older podlab's directory)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass  # gone already: what we wanted
    except (IsADirectoryError, PermissionError):  # unlink of a directory: EISDIR (Linux says so) or EPERM
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def preparing_pod(lab: str, pod: dict) -> Iterator[None]:
    """Write a new pod's resolv.conf before its manifest is stored (inside the ``with``), so its agent starts it
    with it (a no-op in a lab without cluster DNS). The controller-manager would write it too, but only after
    noticing the pod. The ledger stays locked until the ``with`` ends: the controller-manager, pruning the
    files of pods it did not list, looks at the store again under that lock, and must find the pod there."""
    kube_dns = Store(LabPaths(lab).store).get("services", "kube-dns", "kube-system")
    if not (kube_dns and kube_dns.get("spec", {}).get("clusterIP")):
        yield
        return
    files = ResolvFiles(lab, kube_dns["spec"]["clusterIP"])
    with files._locked():
        files._ensure(files._want([pod]), prune=False, verify=False)
        yield
