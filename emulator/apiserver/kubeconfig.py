"""The lab's entries in the user's kubeconfig, as kind writes its own: a cluster, a user and a context, all named
``podlab-<lab>``, ``current-context`` set, merged into the first existing file of ``$KUBECONFIG`` (else its last
one) or ``~/.kube/config``, which is written with mode 0600 under client-go's lock (``<file>.lock``, created
exclusively; a lock whose writer died is broken, see ``_locked``). ``down`` removes exactly those three entries
(and ``current-context`` if it named them); the path written to is kept in the lab's ``apiserver/kubeconfig-path`` so ``down`` and ``cleanup`` find it whatever the
environment is then. ``render`` is what ``podlab kubeconfig`` prints.
"""
from __future__ import annotations

import base64
import contextlib
import fcntl
import os
import time
from pathlib import Path
from typing import Iterator

import yaml

from emulator.proc import lifecycle


def name_of(lab: str) -> str:
    return f"podlab-{lab}"


def default_path() -> Path:
    env = os.environ.get("KUBECONFIG", "")
    files = [Path(p) for p in env.split(os.pathsep) if p]
    for f in files:
        if f.exists():
            return f
    if files:
        return files[-1]
    return Path(os.path.expanduser("~")) / ".kube" / "config"


def entries(lab: str, server: str, ca_pem: bytes, token: str) -> dict:
    n = name_of(lab)
    return {"cluster": {"name": n, "cluster": {"server": server,
                                               "certificate-authority-data": base64.b64encode(ca_pem).decode()}},
            "user": {"name": n, "user": {"token": token}},
            "context": {"name": n, "context": {"cluster": n, "user": n}}}


def render(lab: str, server: str, ca_pem: bytes, token: str) -> str:
    e = entries(lab, server, ca_pem, token)
    doc = {"apiVersion": "v1", "kind": "Config", "preferences": {}, "clusters": [e["cluster"]],
           "users": [e["user"]], "contexts": [e["context"]], "current-context": name_of(lab)}
    return yaml.safe_dump(doc, sort_keys=False)


STALE_EMPTY_LOCK = 30.0   # seconds: kubectl holds its (empty) lock for milliseconds; older than this, it died


def _holder(lock: str) -> tuple[str, float] | None:
    """The lock's content and age, or None if it is gone."""
    try:
        with open(lock) as f:
            return f.read(), time.time() - os.fstat(f.fileno()).st_mtime
    except FileNotFoundError:
        return None


def _stale(content: str, age: float) -> bool:
    """Is the holder dead? Ours name ``pid start-time``; kubectl's are empty, so only age can tell."""
    parts = content.split()
    if len(parts) == 2 and all(p.isdigit() for p in parts):
        return not lifecycle.alive(int(parts[0]), int(parts[1]))
    return age > STALE_EMPTY_LOCK


def _break_if_stale(lock: str) -> bool:
    """Remove a lock whose holder died (a killed ``podlab up``/``down``, a killed kubectl) and say so.

    Breakers serialise on an flock of the lock's directory (no file left beside the user's kubeconfig) and
    re-read the lock under it, so two podlab processes never both break one lock, and a lock taken afresh
    after the first break is never removed."""
    guard = os.open(os.path.dirname(lock) or ".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(guard, fcntl.LOCK_EX)
        held = _holder(lock)
        if held is None or not _stale(*held):
            return False
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock)
        return True
    finally:
        os.close(guard)


@contextlib.contextmanager
def _locked(path: Path, timeout: float = 10.0) -> Iterator[None]:
    """client-go's lock: ``<file>.lock`` created exclusively, removed after (so kubectl's own writes wait too).

    podlab writes its PID and start time into the lock, so a lock left by a process that was killed while
    holding it is broken by the next writer instead of blocking every later ``up``/``down``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = str(path) + ".lock"
    deadline = time.monotonic() + timeout
    me = f"{os.getpid()} {lifecycle.start_time(os.getpid())}\n"
    while True:
        try:
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            if _break_if_stale(lock):
                continue
            if time.monotonic() > deadline:
                raise TimeoutError(f"{lock} is held (remove it if no kubectl or podlab is writing {path})") from None
            time.sleep(0.01)
            continue
        with os.fdopen(fd, "w") as f:
            f.write(me)
        break
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock)


def _load(path: Path) -> dict:
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        doc = {}
    if not isinstance(doc, dict):
        raise ValueError(f"{path} is not a kubeconfig file (not a YAML mapping)")
    doc.setdefault("apiVersion", "v1")
    doc.setdefault("kind", "Config")
    for k in ("clusters", "users", "contexts"):
        doc[k] = doc.get(k) or []
    return doc


def _save(path: Path, doc: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o600)
        yaml.safe_dump(doc, f, sort_keys=False)
    os.replace(tmp, path)


def merge(path: Path, lab: str, server: str, ca_pem: bytes, token: str) -> None:
    n, e = name_of(lab), entries(lab, server, ca_pem, token)
    with _locked(path):
        doc = _load(path)
        for key, item in (("clusters", e["cluster"]), ("users", e["user"]), ("contexts", e["context"])):
            doc[key] = [x for x in doc[key] if not (isinstance(x, dict) and x.get("name") == n)] + [item]
        doc["current-context"] = n
        _save(path, doc)


def remove(path: Path, lab: str) -> bool:
    """Remove the lab's three entries from ``path``; False if there were none."""
    n = name_of(lab)
    if not path.exists() and not os.path.exists(str(path) + ".lock"):
        return False
    with _locked(path):  # also when only a lock is left: a writer killed holding it, broken here
        doc = _load(path)
        before = sum(len(doc[k]) for k in ("clusters", "users", "contexts"))
        for key in ("clusters", "users", "contexts"):
            doc[key] = [x for x in doc[key] if not (isinstance(x, dict) and x.get("name") == n)]
        changed = sum(len(doc[k]) for k in ("clusters", "users", "contexts")) != before
        if doc.get("current-context") == n:
            doc["current-context"] = ""
            changed = True
        if changed:
            _save(path, doc)
        return changed
