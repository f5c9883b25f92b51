"""``pods/attach``: kubectl joined to a running container's own process (``kubectl attach``, ``kubectl run -it``).

Design. A container with ``stdin: true`` or ``tty: true`` runs under its holder (``emulator.images.attachable``),
which keeps the process's pty or pipes and listens on a Unix socket (``agent.pods.attach_socket``); ``plan``
connects to it before the upgrade, so a missing holder is an ordinary error answer. The session then relays:
WebSocket channel 0 (stdin), 4 (resize) and the v5 close of channel 0 become the holder's frames, and the
holder's stdout/stderr frames become channels 1/2. When the process exits the holder says so and closes; the
client gets ``Success`` on channel 3, as the kubelet answers an attach that ended (``kubectl run`` then reads
the exit code from the pod's status, which the node agent records from the holder's own exit). If the client
goes first, the holder is told that its stdin ended (with ``stdinOnce`` that ends the process's input too).

A container without stdin or tty (an ordinary server) has nothing to attach to but its output: the session
follows its log file from the current end (only what is printed from now on, as an attach shows) until the
container's process changes or the client leaves; input is dropped, as a real attach to such a container
drops it.
"""
from __future__ import annotations

import os
import select
import socket
import time
from dataclasses import dataclass

from emulator.agent.podenv import attach_socket
from emulator.apiserver.exec import ERROR, STDIN, CLOSE, RESIZE, Target, flag
from emulator.apiserver.status import ApiError
from emulator.apiserver.stream_ws import OP_BINARY, OP_CLOSE, OP_TEXT, Closed, WebSocket
from emulator.images.attachable import EXIT, STDIN_END, pack, unpack
from emulator.proc.lifecycle import alive
from emulator.state.paths import LabPaths

SUCCESS = b'{"metadata":{},"status":"Success"}'
HOLDER_START = 5.0


@dataclass
class Plan:
    target: Target
    tty: bool
    stdin: bool
    holder: socket.socket | None     # the holder's socket, or None: follow the log
    log: str = ""


def plan(paths: LabPaths, t: Target, query: dict[str, list[str]]) -> Plan:
    spec = t.spec
    tty = flag(query, "tty") and bool(spec.get("tty"))
    want_in = flag(query, "stdin")
    if spec.get("stdin") or spec.get("tty"):
        path = attach_socket(paths, t.pod, t.container)
        deadline = time.monotonic() + HOLDER_START
        while True:  # the holder is reported running as soon as it is started; it listens a few ms later
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.settimeout(5)
                s.connect(path)
                return Plan(t, tty, want_in and bool(spec.get("stdin")), s)
            except OSError as e:
                s.close()
                if time.monotonic() > deadline:
                    raise ApiError(500, "InternalError", f"unable to attach to container {t.container}: its "
                                   f"process holder does not answer ({e.strerror or e})") from None
                time.sleep(0.02)
    ns = t.pod["metadata"].get("namespace") or "default"
    return Plan(t, False, False, None, str(paths.container_log(t.pod["metadata"]["name"], t.container, ns)))


def serve(ws: WebSocket, proto: str, p: Plan) -> None:
    ended = _relay(ws, proto.startswith("v5"), p) if p.holder is not None else _follow(ws, p)
    if ended:
        try:
            ws.send_binary(bytes([ERROR]) + SUCCESS)
        except Closed:
            pass  # the client left as the session ended: nothing to tell it
        ws.finish()
    else:
        ws.close()


def _relay(ws: WebSocket, v5: bool, p: Plan) -> bool:
    """True when the process ended, False when the client went away."""
    h = p.holder
    assert h is not None
    h.setblocking(True)
    h.settimeout(10)
    poller = select.poll()
    poller.register(ws.fileno(), select.POLLIN)
    poller.register(h.fileno(), select.POLLIN)
    buf = bytearray()
    try:
        while True:
            events = [(ws.fileno(), select.POLLIN)] if ws.readable_now() else poller.poll(30_000)
            for fd, _ in events:
                if fd == ws.fileno():
                    ws.fill()
                    for op, data in ws.messages():
                        if op == OP_CLOSE:
                            return False
                        if op not in (OP_BINARY, OP_TEXT) or not data:
                            continue
                        ch, body = data[0], data[1:]
                        if ch == STDIN and p.stdin and body:
                            h.sendall(pack(STDIN, body))
                        elif ch == RESIZE and p.tty:
                            h.sendall(pack(RESIZE, body))
                        elif ch == CLOSE and v5 and body[:1] == bytes([STDIN]) and p.stdin:
                            h.sendall(pack(STDIN_END))
                    continue
                data = h.recv(256 * 1024)
                if not data:
                    return True
                buf += data
                for kind, payload in unpack(buf):
                    if kind == EXIT:
                        return True
                    if payload:
                        ws.send_binary(bytes([1 if p.tty else kind]) + payload)
    except Closed:
        return False
    except OSError:
        return True
    finally:
        try:
            if p.stdin:
                h.sendall(pack(STDIN_END))
        except OSError:
            pass  # the holder is gone (its process ended): nothing to tell it
        h.close()


def _follow(ws: WebSocket, p: Plan) -> bool:
    """A plain container: what it prints from now on, until its process is replaced or the client leaves."""
    t = p.target
    cs = next((c for c in t.status.get("containerStatuses") or [] if c.get("name") == t.container), {})
    running = (cs.get("pid"), cs.get("pidStart"))
    try:
        f = open(p.log, "rb")
    except OSError:
        return True
    poller = select.poll()
    poller.register(ws.fileno(), select.POLLIN)
    with f:
        f.seek(0, os.SEEK_END)
        last_check = time.monotonic()
        try:
            while True:
                data = f.read(256 * 1024)
                if data:
                    ws.send_binary(bytes([1]) + data)
                    continue
                if time.monotonic() - last_check > 1.0:
                    last_check = time.monotonic()
                    if not alive(*running):
                        return True
                if ws.readable_now() or poller.poll(100):
                    ws.fill()
                    for op, _ in ws.messages():
                        if op == OP_CLOSE:
                            return False
        except Closed:
            return False
    return True
