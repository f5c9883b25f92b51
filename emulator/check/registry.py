"""The checks ``podlab check`` can run: each is a function marked with ``@check(name, title, order, applies=...)``
in ``check.core`` (the network model) or ``check.services`` (Services, DNS, SNAT); ``applies(ctx)`` decides
whether a lab has what a check needs (a lab with no Services skips the Service checks rather than failing them).
The marker only attaches the definition to the function; which checks exist is said by the composition root
(``emulator.plugins.CHECK_MODULES``), which installs them here.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Callable, Sequence

from emulator.check.model import CheckResult
from emulator.errors import PodlabError


@dataclass(frozen=True)
class CheckDef:
    name: str
    title: str
    order: int
    fn: Callable[..., CheckResult]
    applies: Callable[..., bool]


_INSTALLED: tuple[CheckDef, ...] | None = None


def check(name: str, title: str, order: int = 100, applies: Callable[..., bool] = lambda ctx: True):
    def deco(fn: Callable[..., CheckResult]) -> Callable[..., CheckResult]:
        fn.check_def = CheckDef(name, title, order, fn, applies)  # type: ignore[attr-defined]
        return fn
    return deco


def defined_in(modules: Sequence[ModuleType]) -> list[CheckDef]:
    """The checks marked in ``modules``, in their order."""
    defs = [f.check_def for m in modules for f in vars(m).values() if hasattr(f, "check_def")]
    return sorted(defs, key=lambda c: c.order)


def install(defs: Sequence[CheckDef]) -> None:
    global _INSTALLED
    _INSTALLED = tuple(defs)


def load() -> list[CheckDef]:
    if _INSTALLED is None:
        raise PodlabError("no checks are installed: enter podlab through `emulator.plugins.install()`")
    return list(_INSTALLED)
