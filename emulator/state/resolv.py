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
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from pathlib import Path

from emulator.netlink import netns
from emulator.state.paths import LabPaths
from emulator.state.store import Store, read_json, write_atomic, write_json
from emulator.topology import names

ETC_NETNS = Path(netns.NETNS_ETC_DIR)


def content(namespace: str, nameserver: str, domain: str = "cluster.local") -> str:
    return (f"search {namespace}.svc.{domain} svc.{domain} {domain}\nnameserver {nameserver}\n"
            f"options ndots:5\n")


class ResolvFiles:
    """The resolv.conf files of one lab's pods."""

    def __init__(self, lab: str, nameserver: str, domain: str = "cluster.local") -> None:
        self.lab, self.nameserver, self.domain = lab, nameserver, domain
        self.ledger = LabPaths(lab).root / "resolv-owned.json"

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

    def ensure(self, pods: list[dict], prune: bool = True) -> None:
        """Make the files of ``pods`` exist and (``prune``) remove those of pods that are not in the list."""
        with self._locked():
            self._ensure(pods, prune)

    def _ensure(self, pods: list[dict], prune: bool) -> None:
        owned = self.owned()
        want = {names.pod_ns(self.lab, p["metadata"]["name"], p["metadata"].get("namespace") or "default"):
                p["metadata"].get("namespace") or "default" for p in pods}
        new = {ns for ns in want if ns not in owned and not (ETC_NETNS / ns).exists()}
        if new:
            self._save(owned | new)  # recorded before anything is created
            owned |= new
        for ns, k8s_ns in want.items():
            if ns in owned:
                d = ETC_NETNS / ns
                d.mkdir(parents=True, exist_ok=True)
                text = content(k8s_ns, self.nameserver, self.domain)
                f = d / "resolv.conf"
                if not f.exists() or f.read_text() != text:
                    write_atomic(f, text)
        gone = {ns for ns in owned if ns not in want} if prune else set()
        if gone:
            self._remove(gone)

    def remove(self, which: set[str] | None = None) -> None:
        with self._locked():
            self._remove(which)

    def _remove(self, which: set[str] | None = None) -> None:
        owned = self.owned()
        for ns in sorted(owned if which is None else which & owned):
            shutil.rmtree(ETC_NETNS / ns, ignore_errors=True)  # gone already is fine; a leftover is overwritten
            # by the next pod of that name (its files are rewritten before it starts)
            owned.discard(ns)
        self._save(owned)


def prepare_pod(lab: str, pod: dict) -> None:
    """Write a new pod's resolv.conf before its manifest is stored, so its agent starts it with it (a no-op in a
    lab without cluster DNS). The controller-manager would write it too, but only after noticing the pod."""
    kube_dns = Store(LabPaths(lab).store).get("services", "kube-dns", "kube-system")
    if kube_dns and kube_dns.get("spec", {}).get("clusterIP"):
        ResolvFiles(lab, kube_dns["spec"]["clusterIP"]).ensure([pod], prune=False)
