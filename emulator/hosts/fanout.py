"""Asking every host at once: one thread per host, each result or the exception it raised, by host name."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, TypeVar

from emulator.topology.hosts_section import Host

T = TypeVar("T")


def each(hosts: list[Host], fn: Callable[[Host], T]) -> dict[str, T | BaseException]:
    """``fn(host)`` for every host at once; {host: result or the exception it raised}."""
    def run(h: Host) -> T | BaseException:
        try:
            return fn(h)
        except Exception as e:
            return e
    with ThreadPoolExecutor(max(1, len(hosts))) as ex:
        return dict(zip([h.name for h in hosts], ex.map(run, hosts)))


def first_error(results: dict[str, Any]) -> BaseException | None:
    errs = [r for r in results.values() if isinstance(r, BaseException)]
    return errs[0] if errs else None


def raise_first(results: dict[str, T | BaseException]) -> dict[str, T]:
    """The results, or the first error raised."""
    err = first_error(results)
    if err is not None:
        raise err
    return results  # type: ignore[return-value]
