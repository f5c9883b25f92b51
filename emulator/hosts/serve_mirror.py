"""The op of ``podlab host serve`` that feeds the controller's API server: this host's objects, on change.

``mirror`` (``emulator.hosts.mirror`` on the controller asks it in a loop, one request per pass): ``since`` is
the store's resourceVersion the controller last saw, ``ready`` the node readiness it last saw. The op waits up to
``wait`` seconds (at most 5) for either to change — woken by inotify on the store's directory, readiness read
twice a second — so an idle lab costs one small answer per pass and a change in the store is answered within
milliseconds (a long poll: the pass runs "every second, or on change"). It answers:

- ``{"rv", "ready", "same": true}`` when nothing changed;
- else the whole of this host's part: ``nodes``, ``namespaces``, ``pods`` and their ``statuses`` as its store
  holds them, and every event line (``events``: ``{"<namespace>/<kind>-<name>": [lines]}``).

The whole part, not a delta: the controller compares each object with what it holds and writes only what
changed into its own store, whose journal gives the API server its resourceVersions and watch events, so a host
reconnecting after an outage, or a host's store compacting its journal, needs no special case. Readiness is what
the API server of one machine computes (``apiserver.server.Api.node_ready``): ``Unknown`` unless the node's
agent runs, ``NetworkNotReady`` while its CNI directory is empty, else ``Ready``.
"""
from __future__ import annotations

import json
import os
import time
from typing import Any, Callable

Progress = Callable[[str], None]
_stores: dict[str, Any] = {}  # one Store per lab for the life of this serve: its file cache spares re-parsing


def _ready(paths: Any, nodes: list[str]) -> dict[str, str]:
    from emulator.proc.lifecycle import alive
    from emulator.state import nodes as node_state
    from emulator.state.store import read_json
    out = {}
    for n in nodes:
        pf = read_json(paths.agent_pid(n)) or {}
        if not (pf.get("pid") and alive(pf["pid"], pf.get("start"))):
            out[n] = "Unknown"
        else:
            out[n] = "Ready" if node_state.network_ready(paths, n) else "NetworkNotReady"
    return out


def _events(root: str) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    base = os.path.join(root, "events")
    for ns in sorted(os.listdir(base)) if os.path.isdir(base) else []:
        d = os.path.join(base, ns)
        try:
            files = sorted(e.name for e in os.scandir(d) if e.name.endswith(".jsonl"))
        except OSError:
            continue  # the namespace's events went meanwhile
        for f in files:
            try:
                with open(os.path.join(d, f)) as fh:
                    out[f"{ns}/{f[:-6]}"] = [json.loads(x) for x in fh if x.strip()]
            except (OSError, ValueError):
                continue  # removed or being replaced: the next pass has it
    return out


def op_mirror(req: dict, progress: Progress) -> dict:
    from emulator.errors import NotFoundError
    from emulator.state import record
    from emulator.state.paths import LabPaths
    from emulator.state.store import Store
    lab = req["lab"]
    if record.load(lab) is None:
        raise NotFoundError("lab", lab, "this host")
    paths = LabPaths(lab)
    store = _stores.get(lab)
    if store is None:
        store = _stores[lab] = Store(paths.store)
    names = [n for _, n in store.keys("nodes")]
    since, seen = req.get("since"), req.get("ready")
    deadline = time.monotonic() + min(float(req.get("wait", 0)), 5.0)
    rv, ready = store.resource_version(), _ready(paths, names)
    if rv == since and ready == seen and time.monotonic() < deadline:
        from emulator.state.watch import Watcher
        watcher = Watcher([store.root], poll=0.05)  # inotify: a write to the store wakes it at once
        try:
            while rv == since and ready == seen and time.monotonic() < deadline:
                if not watcher.wait(min(0.5, max(deadline - time.monotonic(), 0.01))):
                    ready = _ready(paths, names)  # readiness (pid files, /proc) twice a second
                rv = store.resource_version()
        finally:
            watcher.close()
    if rv == since and ready == seen:
        return {"rv": rv, "ready": ready, "same": True}
    return {"rv": rv, "ready": ready, "nodes": list(store.list("nodes")), "namespaces": list(store.list("namespaces")),
            "pods": list(store.list("pods")), "statuses": list(store.list("pods", status=True)),
            "events": _events(str(store.root))}


OPS: dict[str, Callable[[dict, Progress], Any]] = {"mirror": op_mirror}
