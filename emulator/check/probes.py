"""Probes that prove the network model from inside the lab: ping, HTTP to netexec, the source IP a server saw.

Every probe runs a real program (ping, curl) in a lab namespace with ``nsenter --net`` and reports what the
*receiving* side observed where that matters (netexec's ``/clientip`` answers with the peer address of the TCP
connection as the server's kernel saw it), so "no NAT" is proven at the receiver, not inferred from routes.
Probes are independent processes, so a matrix runs them in parallel (``matrix``).
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterable, TypeVar

from emulator.lab.api import Lab, run_in

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class HttpResult:
    ok: bool
    body: str
    error: str = ""


def ping(lab: Lab, src: str, ip: str, count: int = 1, timeout: float = 2, size: int | None = None,
         dont_fragment: bool = False) -> bool:
    argv = ["ping", "-n", "-q", "-c", str(count), "-W", str(max(int(timeout), 1))]
    if count > 1:
        argv += ["-i", "0.2"]
    if size is not None:
        argv += ["-s", str(size)]
    if dont_fragment:
        argv += ["-M", "do"]
    return lab.exec(src, [*argv, ip], timeout=timeout * count + 5).returncode == 0


def http(lab: Lab, src: str, url: str, timeout: float = 3) -> HttpResult:
    r = lab.exec(src, ["curl", "-sS", "--max-time", str(timeout), url], timeout=timeout + 5)
    return HttpResult(r.returncode == 0, r.stdout.strip(), r.stderr.strip())


def http_ns(ns: str, url: str, timeout: float = 3) -> HttpResult:
    r = run_in(ns, ["curl", "-sS", "--max-time", str(timeout), url], timeout=timeout + 5)
    return HttpResult(r.returncode == 0, r.stdout.strip(), r.stderr.strip())


def observed_source(lab: Lab, src: str, ip: str, port: int = 8080, timeout: float = 3) -> str | None:
    """The source IP the netexec server at ip:port saw for a TCP connection from ``src``."""
    r = http(lab, src, f"http://{ip}:{port}/clientip", timeout)
    return r.body.rsplit(":", 1)[0] if r.ok and ":" in r.body else None


def wait_http(lab: Lab, src: str, ip: str, port: int = 8080, timeout: float = 10) -> bool:
    """Wait until a server answers (a Running pod's process may still be binding its port)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if http(lab, src, f"http://{ip}:{port}/healthz", timeout=1).ok:
            return True
        time.sleep(0.1)
    return False


def matrix(items: Iterable[T], fn: Callable[[T], R], workers: int = 8) -> list[tuple[T, R]]:
    """Run ``fn`` over ``items`` in parallel threads (each probe is its own process); keep the order."""
    items = list(items)
    with ThreadPoolExecutor(max_workers=workers) as ex:
        return list(zip(items, ex.map(fn, items)))
