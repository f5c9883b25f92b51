"""The multi-host lab's API server as a daemon of the controller: started by ``up``, ended by ``down``/``cleanup``.

``start`` (right after the controller's record is written) forks the server (``hosts.api_across``, a fresh
interpreter) as a detached daemon (``proc.daemon.spawn``: it records itself in the controller's process journal
for the lab, ``<lab>.d/api/procs``, before it runs) and writes its PID and start time into the controller's record
(``apiserver``); the server imports itself, makes its certificates and opens its sessions to the hosts while they
build. ``ready`` (every host built) says ``go``, waits until it serves (``status.json``: every host answered the
mirror once, the port is bound) and merges the
``podlab-<lab>`` context into ``$KUBECONFIG`` / ``~/.kube/config``, as one machine's ``up`` does; the file it
wrote is kept beside the server, so ``stop`` removes exactly those entries. ``stop`` ends the daemon by the PID
and start time in the record and in the journal (SIGTERM, then SIGKILL after 2 s), never by name, and removes its
directory (a host left pending keeps only the record: ``controller.down`` removes the rest).
"""
from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path
from typing import Callable

from emulator.apiserver import kubeconfig
from emulator.apiserver.certs import Material
from emulator.errors import BuildError, LabTimeoutError
from emulator.hosts import records
from emulator.hosts.records import api_dir, api_status_path as status_path
from emulator.proc import journal, lifecycle
from emulator.proc.daemon import spawn
from emulator.state.store import read_json

PKG_PARENT = str(Path(__file__).resolve().parents[2])
Progress = Callable[[str], None]


def _journal(lab: str) -> Path:
    return api_dir(lab) / "procs"


def _exec(lab: str) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = PKG_PARENT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    os.execve(sys.executable, [sys.executable, "-m", "emulator.hosts.api_across", "--lab", lab], env)


def url(lab: str) -> str | None:
    st = read_json(status_path(lab))
    return f"https://127.0.0.1:{st['port']}" if st else None


def write_kubeconfig(lab: str, target: Path | None = None) -> Path:
    u = url(lab)
    if u is None:
        raise FileNotFoundError(f"the API server of multi-host lab {lab} is not serving")
    m = Material(api_dir(lab))
    target = target or kubeconfig.default_path()
    (api_dir(lab) / "kubeconfig-path").write_text(str(target.resolve()) + "\n")
    kubeconfig.merge(target, lab, u, m.ca.read_bytes(), m.token)
    return target


def go_path(lab: str) -> Path:
    return api_dir(lab) / "go"


def start(rec: dict) -> dict:
    """Start the server of the lab of ``rec`` (the record, saved with its PID, is returned). It imports itself,
    makes its certificates and connects to every host while the hosts build; it mirrors them from ``ready`` on."""
    lab = rec["name"]
    d = api_dir(lab)
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o700)
    journal.create(_journal(lab))
    pid = spawn(lambda: _exec(lab), d / "apiserver.log", title="kube-apiserver", journal=_journal(lab),
                what="API server of the multi-host lab")
    rec = {**rec, "apiserver": {"pid": pid, "start": lifecycle.start_time(pid)}}
    records.save(rec)
    return rec


def ready(rec: dict, progress: Progress, timeout: float = 60.0) -> None:
    """Every host's part is built: let the server mirror them, wait until it serves, merge the kubeconfig."""
    lab, d = rec["name"], api_dir(rec["name"])
    pid = rec["apiserver"]["pid"]
    go_path(lab).touch()
    deadline = time.monotonic() + timeout
    while not (read_json(status_path(lab)) or {}).get("port"):
        if not lifecycle.alive(pid, None):
            lines = (d / "apiserver.log").read_text(errors="replace").strip().splitlines()
            raise BuildError(f"the API server exited: {lines[-1] if lines else 'no log'} (see "
                             f"{d / 'apiserver.log'})", obj=lab)
        if time.monotonic() > deadline:
            raise LabTimeoutError(f"the API server did not serve within {timeout:.0f}s (see {d / 'apiserver.log'})",
                                  obj=lab)
        time.sleep(0.05)
    path = write_kubeconfig(lab)
    progress(f"API server {url(lab)} (every host's nodes and pods); kubectl context {kubeconfig.name_of(lab)} in "
             f"{path}")


def stop(rec: dict) -> None:
    """End the lab's API server (by its recorded PID and start time) and remove its kubeconfig entries."""
    lab = rec["name"]
    procs = [(e.pid, e.start) for e in journal.close(_journal(lab))] if api_dir(lab).is_dir() else []
    me = rec.get("apiserver") or {}
    if me.get("pid"):
        procs.append((me["pid"], me.get("start")))
    lifecycle.stop_many(procs, grace=2.0)
    try:
        target: Path | None = Path((api_dir(lab) / "kubeconfig-path").read_text().strip())
    except OSError:
        target = None
    if target is not None:
        try:
            kubeconfig.remove(target, lab)
        except (OSError, ValueError):
            pass  # the user's kubeconfig is unreadable or gone: nothing of the lab is left in it to remove
    # nothing of it is needed any more, even if a host stays pending (its record alone lists what is left)
    shutil.rmtree(api_dir(lab), ignore_errors=True)
    try:
        api_dir(lab).parent.rmdir()
    except OSError:
        pass  # not empty (the controller's store, removed with the lab by ``controller.down``) or gone: both fine
