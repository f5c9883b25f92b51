"""The checks ``podlab check`` runs, registered by name. Other layers add theirs (Services, DNS, SNAT) with
``@register(name, title, order, applies=...)``; ``applies(ctx)`` decides whether a lab has what a check needs
(a lab with no Services skips the Service checks rather than failing them)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from emulator.check.model import CheckResult


@dataclass(frozen=True)
class CheckDef:
    name: str
    title: str
    order: int
    fn: Callable[..., CheckResult]
    applies: Callable[..., bool]


CHECKS: dict[str, CheckDef] = {}


def register(name: str, title: str, order: int = 100, applies: Callable[..., bool] = lambda ctx: True):
    def deco(fn: Callable[..., CheckResult]) -> Callable[..., CheckResult]:
        CHECKS[name] = CheckDef(name, title, order, fn, applies)
        return fn
    return deco


def load() -> list[CheckDef]:
    import importlib
    for mod in ("emulator.check.core", "emulator.check.services"):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if not (e.name and mod.startswith(e.name)):
                raise
    return sorted(CHECKS.values(), key=lambda c: c.order)
