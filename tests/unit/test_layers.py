"""The architecture as a test: podlab's packages import downwards only (the import-linter contract in
pyproject.toml, also run by scripts/test.sh), the package-level import graph has no cycle, nothing registers
itself at import time, and one place names the per-namespace /etc directory."""
from __future__ import annotations

import itertools
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
grimp = pytest.importorskip("grimp", reason="import-linter (grimp) is not installed")


def _packages(graph) -> list[str]:
    return sorted({m.split(".")[1] for m in graph.modules if m.count(".") >= 1})


def test_package_graph_has_no_cycle() -> None:
    graph = grimp.build_graph("emulator")
    pkgs = _packages(graph)
    edges = {p: set() for p in pkgs}
    for a, b in itertools.permutations(pkgs, 2):
        if graph.direct_import_exists(importer=f"emulator.{a}", imported=f"emulator.{b}", as_packages=True):
            edges[a].add(b)
    seen: dict[str, int] = {}

    def visit(p: str, stack: list[str]) -> None:
        seen[p] = 1
        for q in edges[p]:
            assert seen.get(q) != 1, f"import cycle: {' -> '.join(stack + [p, q])}"
            if q not in seen:
                visit(q, stack + [p])
        seen[p] = 2
    for p in pkgs:
        if p not in seen:
            visit(p, [])


def test_layers_contract_is_kept() -> None:
    exe = pathlib.Path(sys.executable).with_name("lint-imports")
    r = subprocess.run([str(exe) if exe.exists() else "lint-imports"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0 and "1 kept, 0 broken" in r.stdout, r.stdout[-2000:] + r.stderr[-2000:]


def test_no_registration_at_import() -> None:
    """No decorator or module-level call fills a global registry (the composition root, emulator.plugins, lists
    what plugs in); no import error is tolerated to make a part vanish."""
    bad = []
    for f in (ROOT / "emulator").rglob("*.py"):
        text = f.read_text()
        for pat in (r"^@register\b", r"^@\w+\.register\b", r"except (ImportError|ModuleNotFoundError)\b.*:\s*\n\s*pass"):
            if re.search(pat, text, re.M):
                bad.append(f"{f.relative_to(ROOT)}: {pat}")
    assert not bad, bad


def test_one_home_for_etc_netns() -> None:
    """``/etc/netns`` is named in netlink.netns only (iproute2 hard-codes it; a knob that could not take effect,
    PODLAB_ETC_NETNS, is gone)."""
    from emulator.netlink import netns
    assert netns.etc_dir("lab-web-1") == "/etc/netns/lab-web-1"
    assert netns.exec_argv("no-such-namespace-here", ["true"]) is None
    code = [f for f in (ROOT / "emulator").rglob("*.py")
            if re.search(r"['\"]/etc/netns", f.read_text()) and f.name != "netns.py"]
    assert not code, code
    assert not [f for f in (ROOT / "emulator").rglob("*.py") if "PODLAB_ETC_NETNS" in f.read_text()]


def test_contract_covers_every_package() -> None:
    """Every package and root module of emulator/ sits in a layer of the contract (a new one must be placed)."""
    import tomllib
    layers = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"][0]["layers"]
    placed = {m.strip().split(".", 1)[1] for layer in layers for m in re.split(r"[|:]", layer)}
    present = {p.name for p in (ROOT / "emulator").iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    present |= {p.stem for p in (ROOT / "emulator").glob("*.py") if p.stem not in ("__init__", "__main__")}
    assert present <= placed, f"not in any layer of pyproject.toml: {sorted(present - placed)}"
