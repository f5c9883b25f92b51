"""``pods/log``: a container's output, as ``kubectl logs`` reads it (text/plain; chunked with ``follow=true``).

Design. The node agents start every container with its stdout and stderr appended to one file per container
(``LabPaths.container_log``); when the agent restarts a dead container it first moves the old file aside as
``<container>.previous.log`` (``previous=true`` reads that one, as the kubelet keeps the last terminated
instance's log). This module only reads those files: ``tailLines`` reads the end backwards in blocks,
``limitBytes`` cuts the answer, ``follow`` keeps polling the file (every 0.1 s) until the container's process is
no longer the one that was running when the request came (it exited, was restarted, or the pod was deleted),
or the client goes away. Errors carry the real server's wording: a missing pod is 404; a container name that is
not the pod's, or none for a pod of several containers, is 400; a container that never started is 400 "is
waiting to start"; ``previous`` for a container that never restarted is 400 "previous terminated container
... not found".

Timestamps. The files hold raw bytes without per-line times (a resident log shipper per container would cost
a process per pod), so ``timestamps`` and ``sinceSeconds``/``sinceTime`` use what the file system knows: the
lines already in the file are stamped with the file's modification time (the time of its last write, an upper
bound for each), the lines that arrive while following with the time they were read. ``since`` keeps the file's
old lines when its last write is not older than the cut-off, and every line that arrives later.
"""
from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path
from typing import Iterator

from emulator.apiserver import syspods
from emulator.apiserver.rest import Request, Response
from emulator.apiserver.status import ApiError, bad_request, not_found
from emulator.state.paths import LabPaths
from emulator.state.store import Store

POLL = 0.1
BLOCK = 64 * 1024
TEXT = "text/plain"


def previous_log(current: Path) -> Path:
    return current.with_name(current.stem + ".previous.log")


def stamp(t: float) -> bytes:
    d = dt.datetime.fromtimestamp(t, dt.timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%S.").encode() + b"%06d000Z " % d.microsecond


def tail(path: Path, n: int) -> bytes:
    """The last ``n`` lines of the file (a last line without newline counts)."""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        end = f.tell()
        data = b""
        pos = end
        while pos > 0 and data.count(b"\n", 0, len(data) - 1 if data.endswith(b"\n") else len(data)) < n:
            step = min(BLOCK, pos)
            pos -= step
            f.seek(pos)
            data = f.read(step) + data
    lines = data.splitlines(keepends=True)
    return b"".join(lines[-n:]) if n > 0 else b""


def _with_stamps(data: bytes, t: float) -> bytes:
    ts = stamp(t)
    return b"".join(ts + line for line in data.splitlines(keepends=True))


def _int(req: Request, key: str) -> int | None:
    v = req.q(key)
    if v is None or v == "":
        return None
    try:
        return int(v)
    except ValueError:
        raise bad_request(f"{key}: Invalid value: \"{v}\": must be an integer") from None


def _since(req: Request) -> float | None:
    s = _int(req, "sinceSeconds")
    if s is not None:
        if s <= 0:
            raise ApiError(422, "Invalid", 'PodLogOptions "" is invalid: sinceSeconds: Invalid value: '
                                           f'{s}: must be greater than 0')
        return time.time() - s
    st = req.q("sinceTime")
    if st:
        try:
            return dt.datetime.fromisoformat(st.replace("Z", "+00:00")).timestamp()
        except ValueError:
            raise bad_request(f'sinceTime: Invalid value: "{st}": must be RFC3339') from None
    return None


def serve(req: Request, store: Store, paths: LabPaths, ns: str, name: str) -> Response:
    pod = store.get("pods", name, ns)
    if pod is None:
        raise not_found("pods", name)
    names = [c["name"] for c in pod["spec"].get("containers") or []]
    container = req.q("container")
    if not container:
        if len(names) != 1:
            raise bad_request(f"a container name must be specified for pod {name}, choose one of: "
                              f"[{' '.join(names)}]")
        container = names[0]
    if container not in names:
        raise bad_request(f"container {container} is not valid for pod {name}")
    st = store.get_status("pods", name, ns) or {}
    cs = next((c for c in st.get("containerStatuses") or [] if c.get("name") == container), {})
    path = syspods.log_of(pod) or paths.container_log(name, container, ns)
    previous = (req.q("previous") or "").lower() == "true"
    if previous:
        path = previous_log(path)
        if not path.exists():
            raise bad_request(f'previous terminated container "{container}" in pod "{name}" not found')
    elif not path.exists():
        if "terminated" in (cs.get("state") or {}):
            return Response(200, b"", TEXT)  # it ended without writing anything (e.g. a StartError)
        waiting = (cs.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason") or st.get("reason") or "ContainerCreating"
        raise bad_request(f'container "{container}" in pod "{name}" is waiting to start: {reason}')
    n, limit = _int(req, "tailLines"), _int(req, "limitBytes")
    stamps = (req.q("timestamps") or "").lower() == "true"
    since = _since(req)
    follow = (req.q("follow") or "").lower() == "true" and not previous
    mtime = path.stat().st_mtime
    if since is not None and mtime < since:
        head, offset = b"", path.stat().st_size
    else:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            offset = f.tell()
        head = tail(path, n) if n is not None else path.read_bytes()[:offset]
        if stamps:
            head = _with_stamps(head, mtime)
    if limit is not None and limit > 0:
        head = head[:limit]
    if not follow:
        return Response(200, head, TEXT)
    running = tuple(cs["process"]) if cs.get("process") else (cs.get("pid"), cs.get("pidStart"))
    return Response(200, _follow(req, store, ns, name, container, path, offset, head, running, stamps, limit),
                    TEXT)


def _still(store: Store, ns: str, name: str, container: str, running: tuple) -> bool:
    st = store.get_status("pods", name, ns)
    if st is None or store.get("pods", name, ns) is None:
        return False
    cs = next((c for c in st.get("containerStatuses") or [] if c.get("name") == container), {})
    if cs.get("process"):
        return list(running) == cs["process"]
    return bool(running[0]) and (cs.get("pid"), cs.get("pidStart")) == running


def _follow(req: Request, store: Store, ns: str, name: str, container: str, path: Path, offset: int, head: bytes,
            running: tuple, stamps: bool, limit: int | None) -> Iterator[bytes]:
    sent = len(head)
    yield head
    partial = b""
    last_check = time.monotonic()
    alive = True
    try:
        f = open(path, "rb")
    except OSError:
        return
    with f:
        f.seek(offset)
        while True:
            data = f.read(BLOCK)
            if data:
                if stamps:
                    data = partial + data
                    cut = data.rfind(b"\n") + 1
                    data, partial = _with_stamps(data[:cut], time.time()), data[cut:]
                if limit is not None and limit > 0:
                    data = data[:max(limit - sent, 0)]
                sent += len(data)
                yield data
                if limit is not None and 0 < limit <= sent:
                    return
                continue
            if not alive or req.gone():
                if partial:
                    yield _with_stamps(partial, time.time())
                return
            if time.monotonic() - last_check > 1.0:
                last_check = time.monotonic()
                alive = _still(store, ns, name, container, running)
                if not alive:
                    continue  # one last read of what it wrote before it ended
            time.sleep(POLL)
            yield b""
