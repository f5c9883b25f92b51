"""Optional parts of a lab that plug into ``up`` and ``down`` without touching the builder: components.

A component (the external "internet" host, kube-proxy on each node, cluster DNS, ...) declares the namespaces it
will create — recorded in the lab record *before* anything is made, so ``down`` and ``cleanup`` remove them even
after a crash — and starts its processes, each of which records itself (PID, start time) in the lab's process
journal before it runs (``emulator.proc.journal``; ``paths.proc_journal``). The
builder calls every registered component that ``wanted`` the topology, in ``order``: ``start`` after the
network, node files and store exist and before the agents start; ``ready`` after the pods are Running. Teardown
needs little from a component: it ends the recorded PIDs and deletes the recorded namespaces, then calls each
component's ``teardown`` for files it keeps outside the lab directory (a ledger it wrote first). Routing daemons
(BIRD in bgp mode) use the routing mode's own ``start`` and ``wait_ready`` hooks instead.

Components live in higher layers (services, external, tools), so this layer cannot name them: the composition
root (``emulator.plugins``) installs the list once, at the program's entry (the CLI, ``from emulator import
Lab``, the testing layer). Nothing registers itself when imported.
"""
from __future__ import annotations

from abc import ABC
from dataclasses import dataclass, field
from typing import Callable, ClassVar, Sequence

from emulator.errors import PodlabError
from emulator.state.paths import LabPaths
from emulator.state.store import Store
from emulator.topology.model import Topology

_INSTALLED: tuple[type["Component"], ...] | None = None


@dataclass
class BuildContext:
    topo: Topology
    paths: LabPaths
    store: Store
    progress: Callable[[str], None]
    data: dict = field(default_factory=dict)  # components may leave notes for each other here
    full: Topology | None = None  # a host's part of a multi-host lab: the whole lab (``topo`` is this host's part)

    @property
    def whole(self) -> Topology:
        """The whole lab: every node on every host (``topo`` alone on one machine)."""
        return self.full if self.full is not None else self.topo


class Component(ABC):
    name: ClassVar[str]
    order: ClassVar[int] = 100
    #: modules the agents' launcher imports before it forks, so that this component's daemons, forked there
    #: (``ctx.data["launcher"].spawn_daemons``), share them instead of inheriting ``up``'s heap
    preload: ClassVar[tuple[str, ...]] = ()

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


def install(classes: Sequence[type[Component]]) -> None:
    """Set the lab's components (the composition root calls this once; calling it again replaces the list)."""
    global _INSTALLED
    _INSTALLED = tuple(classes)


def installed() -> tuple[type[Component], ...]:
    if _INSTALLED is None:
        raise PodlabError("no lab components are installed: enter podlab through `emulator.plugins.install()` "
                          "(the CLI, `from emulator import Lab` and `emulator.testing` do)")
    return _INSTALLED


def teardown_all(lab: str, paths: LabPaths) -> None:
    for cls in installed():
        cls.teardown(lab, paths)


def active(topo: Topology) -> list[Component]:
    return [c for c in sorted((cls() for cls in installed()), key=lambda c: c.order) if c.wanted(topo)]
