"""Import Debian's Mininet (``python3-mininet``) from whatever interpreter runs podlab.

Where podlab runs in a venv made with ``--system-site-packages`` from /usr/bin/python3 (what ``setup.sh`` and CI
make), ``import mininet`` simply works. Where it runs under another Python 3 (a pyenv build on a developer
machine), Debian's package is not on the path; we then load the ``mininet`` package alone from
``/usr/lib/python3/dist-packages/mininet`` (it is pure Python) by giving it an import spec of its own — without
putting the whole of Debian's dist-packages on ``sys.path``, which would shadow the interpreter's own packages.
The ``mnexec`` helper (a small C program from the same Debian package) must be on PATH as well.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import sys
import types

from emulator.errors import MininetMissingError

DEBIAN_DIST_PACKAGES = "/usr/lib/python3/dist-packages"
INSTALL_HINT = "install it with `apt-get install mininet` (Debian's python3-mininet and mnexec)"


def load(search: str = DEBIAN_DIST_PACKAGES) -> types.ModuleType:
    """The ``mininet`` package (imported normally, or from Debian's directory)."""
    if shutil.which("mnexec") is None:
        raise MininetMissingError(f"Mininet's mnexec helper is not on PATH; {INSTALL_HINT}", obj="mnexec")
    if "mininet" in sys.modules:
        return sys.modules["mininet"]
    try:
        return importlib.import_module("mininet")
    except ImportError:  # not on this interpreter's path (a venv): Debian's directory is tried next, and its
        pass  # absence is reported below as MininetMissingError
    pkg = os.path.join(search, "mininet")
    init = os.path.join(pkg, "__init__.py")
    if not os.path.exists(init):
        raise MininetMissingError(f"the mininet Python package is missing (looked in {search}); {INSTALL_HINT}",
                                  obj="mininet")
    spec = importlib.util.spec_from_file_location("mininet", init, submodule_search_locations=[pkg])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["mininet"] = module
    try:
        spec.loader.exec_module(module)
    except Exception:
        del sys.modules["mininet"]
        raise
    return module


def origin() -> str:
    """Where the loaded mininet package lives (for messages and docs)."""
    mod = sys.modules.get("mininet")
    return os.path.dirname(getattr(mod, "__file__", "") or "") if mod else ""
