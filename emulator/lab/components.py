"""Optional parts of a lab that plug into ``up`` and ``down`` without touching the builder: components.

A component (the external "internet" host, kube-proxy on each node, cluster DNS, ...) declares the namespaces it
will create — recorded in the lab record *before* anything is made, so ``down`` and ``cleanup`` remove them even
after a crash — and starts its processes, whose PIDs (with start times) go into the record as they start. The
builder calls every registered component that ``wanted`` the topology, in ``order``: ``start`` after the
network, node files and store exist and before the agents start; ``ready`` after the pods are Running. Teardown
needs little from a component: it ends the recorded PIDs and deletes the recorded namespaces, then calls each
component's ``teardown`` for files it keeps outside the lab directory (a ledger it wrote first). Routing daemons
(BIRD in bgp mode) use the routing mode's own ``start`` hook instead.
"""
from __future__ import annotations

from abc import ABC
from dataclasses import dataclass, field
from typing import Callable, ClassVar

from emulator.state.paths import LabPaths
from emulator.state.store import Store
from emulator.topology.model import Topology

_REGISTRY: list[type["Component"]] = []


@dataclass
class BuildContext:
    topo: Topology
    paths: LabPaths
    store: Store
    progress: Callable[[str], None]
    record_pid: Callable[[int, str], None]  # (pid, what) → saved in the lab record at once
    data: dict = field(default_factory=dict)  # components may leave notes for each other here


class Component(ABC):
    name: ClassVar[str]
    order: ClassVar[int] = 100

    def wanted(self, topo: Topology) -> bool:
        return True

    def namespaces(self, topo: Topology) -> list[str]:
        """Namespaces this component will create (recorded before creation)."""
        return []

    def start(self, ctx: BuildContext) -> None:
        """Create namespaces/processes (before the agents start)."""

    def ready(self, ctx: BuildContext) -> None:
        """Called once every pod is Running (e.g. to sync rules that need pod IPs)."""

    @classmethod
    def teardown(cls, lab: str, paths: LabPaths) -> None:
        """Remove what the component owns outside namespaces and the lab's directory (from its own ledger there);
        called by ``down`` after the processes are gone, whether or not the component was active."""


def teardown_all(lab: str, paths: LabPaths) -> None:
    load_builtin()
    for cls in _REGISTRY:
        cls.teardown(lab, paths)


def register(cls: type[Component]) -> type[Component]:
    if cls not in _REGISTRY:
        _REGISTRY.append(cls)
    return cls


def load_builtin() -> None:
    """Import the modules that register components (each is optional while it is being built)."""
    import importlib
    for mod in ("emulator.services.component", "emulator.external.component", "emulator.tools.component",
                "emulator.apiserver.component"):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name and not mod.startswith(e.name):
                raise


def active(topo: Topology) -> list[Component]:
    load_builtin()
    return [c for c in sorted((cls() for cls in _REGISTRY), key=lambda c: c.order) if c.wanted(topo)]
