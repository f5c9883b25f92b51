"""The composition root: the one module that says what plugs into podlab.

- routing modes: ``emulator.routing.modes.MODES`` (they sit below the lab, which picks one by name);
- lab components, started by ``up`` in their ``order`` and told about ``down``: ``COMPONENTS``;
- the checks of ``podlab check``: the modules in ``CHECK_MODULES``;
- the CLI's verb groups: ``emulator.cli.main.COMMAND_MODULES`` (the CLI is the one layer above this one);
- the NAT hooks of ``trace``: ``emulator.tools.trace_nat.NAT_HOOKS`` (listed in tools, below this module, because
  the checks trace failing pairs too; ``trace(..., nat_hooks=...)`` takes another list).

Nothing registers itself when imported. The program's entries call ``install()`` once — the CLI, ``from emulator
import Lab``, ``emulator.testing`` and the pytest plugin — and a module that fails to import fails here, with its
own traceback.
"""
from __future__ import annotations

from emulator.check import core as core_checks
from emulator.check import docker as docker_checks
from emulator.check import netpol as netpol_checks
from emulator.check import registry as check_registry
from emulator.check import services as service_checks
from emulator.docker.component import DockerComponent
from emulator.external.component import ExternalComponent
from emulator.lab import components
from emulator.netpol.component import NetworkPolicyComponent
from emulator.routing.modes import MODES as ROUTING_MODES
from emulator.services.component import ServicesComponent
from emulator.tools.component import LinkShaping

COMPONENTS: tuple[type[components.Component], ...] = (ExternalComponent, DockerComponent, ServicesComponent,
                                                       NetworkPolicyComponent, LinkShaping)
CHECK_MODULES = (core_checks, service_checks, netpol_checks, docker_checks)

__all__ = ["CHECK_MODULES", "COMPONENTS", "ROUTING_MODES", "install"]


def install() -> None:
    """Install the components and checks (idempotent)."""
    components.install(COMPONENTS)
    check_registry.install(check_registry.defined_in(CHECK_MODULES))
