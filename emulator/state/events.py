"""Events, as ``kubectl describe`` shows them: what happened to an object, by whom, when.

One append-only JSON-lines file per object (``store/events/<kind>-<name>.jsonl``); each line is written with one
``write`` on an O_APPEND descriptor, so concurrent writers (the CLI scheduling a pod, the node's agent starting
it) never interleave within a line. The file goes away with the object's last event reader: ``delete`` removes
it when the object is deleted.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path


def _path(store_root: Path, kind: str, name: str) -> Path:
    return Path(store_root) / "events" / f"{kind}-{name}.jsonl"


def emit(store_root: Path, kind: str, name: str, reason: str, message: str, source: str,
         type_: str = "Normal") -> None:
    emit_many(store_root, kind, name, [(reason, message, type_)], source)


def emit_many(store_root: Path, kind: str, name: str, items: list[tuple[str, str, str]], source: str) -> None:
    ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    data = "".join(json.dumps({"time": ts, "type": t, "reason": r, "from": source, "message": m}) + "\n"
                   for r, m, t in items)
    p = _path(store_root, kind, name)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, data.encode())
    finally:
        os.close(fd)


def read(store_root: Path, kind: str, name: str) -> list[dict]:
    try:
        with open(_path(store_root, kind, name)) as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


def delete(store_root: Path, kind: str, name: str) -> None:
    try:
        os.unlink(_path(store_root, kind, name))
    except FileNotFoundError:
        pass  # no events were recorded: nothing to delete
