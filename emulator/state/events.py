"""Events, as ``kubectl describe`` shows them: what happened to an object, by whom, when.

One append-only JSON-lines file per object, in the object's Kubernetes namespace
(``store/events/<namespace>/<kind>-<name>.jsonl``; events of cluster-scoped objects such as nodes go to
``default``, as on a real cluster); each line is written with one
``write`` on an O_APPEND descriptor, so concurrent writers (the CLI scheduling a pod, the node's agent starting
it) never interleave within a line. Each line carries the lab-wide ``rv`` it got from the store's change feed
(``feed``), which also journals it, so the API server lists and watches events like any object. The file goes away with the object's last event reader: ``delete`` removes
it when the object is deleted.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from emulator.state import feed as feeds


DEFAULT_NS = "default"


def _path(store_root: Path, kind: str, name: str, ns: str = DEFAULT_NS) -> Path:
    return Path(store_root) / "events" / (ns or DEFAULT_NS) / f"{kind}-{name}.jsonl"


def emit(store_root: Path, kind: str, name: str, reason: str, message: str, source: str,
         type_: str = "Normal", ns: str = DEFAULT_NS) -> None:
    emit_many(store_root, kind, name, [(reason, message, type_)], source, ns)


def emit_many(store_root: Path, kind: str, name: str, items: list[tuple[str, str, str]], source: str,
              ns: str = DEFAULT_NS) -> None:
    ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    d = f"{store_root}/events/{ns or DEFAULT_NS}"
    p = f"{d}/{kind}-{name}.jsonl"
    feed = feeds.of(store_root)
    with feed.locked():
        last = feed.next(len(items))
        rvs = range(last - len(items) + 1, last + 1)
        texts = [json.dumps({"time": ts, "type": t, "reason": r, "from": source, "message": m, "rv": rv})
                 for (r, m, t), rv in zip(items, rvs)]
        try:
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        except FileNotFoundError:
            os.makedirs(d, exist_ok=True)
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, "".join(t + "\n" for t in texts).encode())
        finally:
            os.close(fd)
        feed.append([feeds.line(rv, "put", "events", ns or DEFAULT_NS, f"{kind}-{name}", t)
                     for rv, t in zip(rvs, texts)])


def read(store_root: Path, kind: str, name: str, ns: str = DEFAULT_NS) -> list[dict]:
    try:
        with open(_path(store_root, kind, name, ns)) as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


def delete(store_root: Path, kind: str, name: str, ns: str = DEFAULT_NS) -> None:
    feed = feeds.of(Path(store_root))
    with feed.locked():
        try:
            os.unlink(_path(store_root, kind, name, ns))
        except FileNotFoundError:
            return
        feed.record(feed.next(), "delete", "events", ns or DEFAULT_NS, f"{kind}-{name}")


def drop_namespace(store_root: Path, ns: str) -> None:
    """Every event of namespace ``ns`` (it is being deleted)."""
    import shutil
    shutil.rmtree(Path(store_root) / "events" / ns, ignore_errors=True)
