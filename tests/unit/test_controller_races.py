"""The controller-manager's pass against writers that come between its look at the store and what it does.

A pass lists the store, then deletes what the list shows without an owner (Endpoints without a Service, the
resolv.conf of a pod it did not list, ...). Another process may write in between: the API server writes the
``default/kubernetes`` Service and then its Endpoints, a user re-creates a Service and its hand-written
Endpoints, the API server stores a new pod whose resolv.conf it wrote just before. The seam is the store the
controller reads (``ControllerManager.store``): ``AfterList`` returns what the store held when ``list`` was
called and then lets the other writer run, exactly the interleaving of a write that lands right after the
list; the write lock is the real one (the same feed, taken by threads of this process in turn).
"""
from __future__ import annotations

import ipaddress
import threading
from pathlib import Path
from typing import Callable

from emulator.apiserver import kubesvc
from emulator.services import endpoints
from emulator.services.controller import ControllerManager
from emulator.services.model import Service, ServicePort
from emulator.state.resolv import preparing_pod
from emulator.state.store import Store

CIDR = ipaddress.ip_network("10.96.0.0/16")


class AfterList(Store):
    """A store whose ``list(kind)`` (not of statuses) returns what was there when it was called, then runs
    ``then`` once: a write by someone else that lands just after the controller's list."""

    def __init__(self, root: Path, kind: str, then: Callable[[], None]) -> None:
        super().__init__(root)
        self.kind, self.then = kind, then

    def list(self, kind: str, status: bool = False, ns: str | None = None):
        items = list(super().list(kind, status, ns))
        if kind == self.kind and not status and self.then is not None:
            then, self.then = self.then, None
            then()
        return iter(items)


class OnGet(Store):
    """A store whose ``get(kind, name)`` runs ``then`` once, after reading (someone writes right after we read)."""

    def __init__(self, root: Path, key: tuple[str, str], then: Callable[[], None]) -> None:
        super().__init__(root)
        self.key, self.then = key, then

    def get(self, kind: str, name: str, ns: str = "default"):
        obj = super().get(kind, name, ns)
        if (kind, name) == self.key and self.then is not None:
            then, self.then = self.then, None
            then()
        return obj


def manager(tmp_path, monkeypatch) -> tuple[ControllerManager, Store]:
    monkeypatch.setenv("PODLAB_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setattr("emulator.state.resolv.ETC_NETNS", tmp_path / "netns")
    cm = ControllerManager("lab", "10.96.0.10", "cluster.local", seed=1)
    store = Store(cm.store.root)
    store.init()
    store.put("namespaces", "default", {"metadata": {"name": "default"}, "status": {"phase": "Active"}})
    store.put("nodes", "node-1", {"metadata": {"name": "node-1"}})
    return cm, store


def hand_endpoints(name: str, ip: str) -> dict:
    return endpoints.manifest(name, "default", [{"addresses": [{"ip": ip}], "ports": [{"port": 80}]}])


def test_kubernetes_endpoints_written_after_the_services_were_listed_stay(tmp_path, monkeypatch) -> None:
    """The CI failure fixed in 3a7e883: the API server wrote ``kubernetes`` (Service, then Endpoints) after the
    pass had listed Services; the pass then deleted the Endpoints, whose Service was not in its list."""
    cm, store = manager(tmp_path, monkeypatch)
    store.put("endpoints", "gone", hand_endpoints("gone", "10.244.1.9"))  # its Service was deleted: an orphan
    cm.store = AfterList(store.root, "services", lambda: kubesvc.put(store, CIDR, "192.168.0.1"))
    cm.reconcile()
    assert cm.store.then is None  # the API server did write in between
    assert endpoints.addresses(store.get("endpoints", "kubernetes")) == [("192.168.0.1", 6443, "TCP", "https")]
    assert store.get("endpoints", "gone") is None  # a real orphan still goes


def test_endpoints_recreated_with_their_service_between_check_and_delete_stay(tmp_path, monkeypatch) -> None:
    """The pass finds an orphan Endpoints ``x`` and looks its Service up again: absent. Just then a user
    re-creates Service ``x`` (no selector) and its hand-written Endpoints. The look-up and the delete are
    under the store's write lock, so the user's writes wait for the delete (of the old object) and survive."""
    cm, store = manager(tmp_path, monkeypatch)
    store.put("endpoints", "x", hand_endpoints("x", "10.244.1.9"))
    wrote = threading.Event()

    def user() -> None:
        w = Store(store.root)
        w.put("services", "x", Service("x", cluster_ip="10.96.0.50", ports=(ServicePort(80, 80),)).manifest())
        w.put("endpoints", "x", hand_endpoints("x", "192.168.7.7"))
        wrote.set()
    t = threading.Thread(target=user)

    def start_user() -> None:
        t.start()
        wrote.wait(0.5)  # without the lock it writes both now; with it, it waits for the pass's delete
    cm.store = OnGet(store.root, ("services", "x"), start_user)
    cm.reconcile()
    t.join(10)
    assert wrote.is_set() and cm.store.then is None
    assert endpoints.addresses(store.get("endpoints", "x")) == [("192.168.7.7", 80, "TCP", "")]


def kube_dns(store: Store) -> None:
    store.put("services", "kube-dns", Service("kube-dns", "kube-system", cluster_ip="10.96.0.10",
                                              ports=(ServicePort(53, 53, "UDP", "dns"),)).manifest())


def new_pod(name: str) -> dict:
    return {"metadata": {"name": name, "namespace": "default", "uid": f"u-{name}"},
            "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": "busybox"}]}}


def test_resolv_conf_of_a_pod_stored_after_the_pods_were_listed_stays(tmp_path, monkeypatch) -> None:
    """The API server writes a new pod's resolv.conf, then stores the pod, after the pass listed the pods; the
    pass must not prune the file as that of a pod that is gone (the pod would start without cluster DNS)."""
    cm, store = manager(tmp_path, monkeypatch)
    kube_dns(store)
    cm.reconcile()

    def api_server_creates() -> None:
        with preparing_pod("lab", new_pod("late")):
            store.put("pods", "late", new_pod("late"))
    cm.store = AfterList(store.root, "pods", api_server_creates)
    cm.reconcile()
    assert cm.store.then is None
    assert (tmp_path / "netns" / "lab-late" / "resolv.conf").exists()
    store.delete("pods", "late")
    cm.reconcile()  # gone from the store: now it goes
    assert not (tmp_path / "netns" / "lab-late").exists()
    cm.resolv.remove()


def test_resolv_conf_written_but_its_pod_not_yet_stored_stays(tmp_path, monkeypatch) -> None:
    """The narrower window: the file is in the ledger, the pod not yet in the store, when the pass prunes.
    ``preparing_pod`` holds the ledger's lock until the pod is stored, so the prune waits and then sees it."""
    cm, store = manager(tmp_path, monkeypatch)
    kube_dns(store)
    cm.reconcile()
    written, go = threading.Event(), threading.Event()

    def api_server() -> None:
        with preparing_pod("lab", new_pod("slow")):
            written.set()
            go.wait(10)
            store.put("pods", "slow", new_pod("slow"))
    t = threading.Thread(target=api_server)

    def start() -> None:
        t.start()
        written.wait(10)
        threading.Timer(0.3, go.set).start()  # the API server stores the pod a little later
    cm.store = AfterList(store.root, "pods", start)
    cm.reconcile()
    t.join(10)
    assert go.is_set() and (tmp_path / "netns" / "lab-slow" / "resolv.conf").exists()
    cm.resolv.remove()
