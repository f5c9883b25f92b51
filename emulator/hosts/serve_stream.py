"""``podlab host stream SPEC``: one streaming session of a multi-host lab, run on the pod's host.

The controller's API server (``hosts.api_streams``) and ``podlab logs -f`` across hosts open a fresh SSH channel
on their connection to the pod's host for each session and run this there (the host's ``command``, as ``host
serve`` is started; the slim entry, no CLI). SPEC is one JSON object: ``op`` (``exec``, ``attach``, ``logs``,
``portforward`` or ``podlab``), ``lab``, ``namespace``, ``name`` and the request's ``query`` (the pod's ``port`` for
``portforward``). The host checks the request with the one-machine server's own code and wording against its own
store and namespaces (``apiserver.exec.target``, ``apiserver.logs.serve``, ``apiserver.portforward.target``) and
says how it went in one JSON line on stdout: ``{"ok": true}``; ``{"error": {code, reason, message}}`` (the
Status the API server answers instead of upgrading); ``{"failure": STATUS}`` (exec: the command could not start,
the Status kubectl gets on channel 3); ``{"refused": MESSAGE}`` (portforward: the pod's port did not answer).
Then the channel carries the session's raw bytes:

- ``exec``: the command is started as the one-machine server starts it (``apiserver.exec.spawn``: in the pod's
  namespace, with its container's environment, in its own session, recorded in the host's lab journal). Without
  a tty it is given the channel's stdin, stdout and stderr themselves (those not asked for: /dev/null). With a
  tty (the controller asked the channel for a pty) that pty is set raw, so bytes pass unchanged, and the command
  gets a pty of its own, as on one machine, this process copying bytes between the two and the window size on
  SIGWINCH (sshd's answer to ``resize_pty``). The exit code is this process's (a signal N: 128 + N).
- ``attach``: the container's holder (``apiserver.attach.plan``) joined to the channel: its output frames become
  the channel's stdout/stderr, the channel's bytes its stdin frames, the channel's EOF its end of stdin, the pty's
  size (on SIGWINCH) its resize frames; its exit ends the session (exit 0: Success, as on one machine). A
  container without stdin or tty: its log from now on.
- ``podlab``: ``podlab --lab LAB ARGV...`` on this host's part with the channel's stdio (``podlab exec -i``).
- ``logs``: the log's bytes (``follow``: until the container's process changes, as on one machine).
- ``portforward``: a connection made inside the pod's namespace to its localhost (``apiserver.portforward
  .connect``: the socket is born in the pod's namespace; nothing is opened in the host's own), relayed.

The client going away (the channel closed: sshd closes this process's stdout, or hangs up the pty) is seen on
fd 1 or 0 (POLLHUP/POLLERR, EIO, EPIPE): the command and its whole session are then killed (SIGKILL), as the
one-machine server kills an exec whose client left, and this process ends. SIGHUP is ignored for that reason
(the pty's hangup must not end this process before it has killed the command).
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import select
import signal
import socket
import struct
import termios
import time
import tty as ttymod
from typing import Any

from emulator.state.paths import LabPaths
from emulator.state.store import Store

HANGUP = select.POLLHUP | select.POLLERR
CHUNK = 256 * 1024


def say(msg: dict[str, Any]) -> None:
    os.write(1, (json.dumps(msg, separators=(",", ":")) + "\n").encode())


def hung_up(fd: int) -> bool:
    """The channel behind ``fd`` is closed (the controller's client left)."""
    p = select.poll()
    p.register(fd, 0)
    return any(ev & HANGUP for _, ev in p.poll(0))


def write_all(fd: int, data: bytes) -> bool:
    """False: the channel is gone."""
    while data:
        try:
            n = os.write(fd, data)
        except BlockingIOError:
            select.select([], [fd], [], 1.0)
            continue
        except OSError:
            return False
        data = data[n:]
    return True


def main(text: str) -> int:
    from emulator.apiserver.status import ApiError
    spec = json.loads(text)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    query = spec.get("query") or {}
    if spec["op"] in ("exec", "attach") and os.isatty(0):
        ttymod.setraw(0)  # the channel's pty carries bytes; the command's own pty does the terminal's work
    elif os.isatty(1):  # a sudo that puts the command on a pty of its own (use_pty): keep the bytes unchanged
        ttymod.setraw(1)
    paths = LabPaths(spec["lab"])
    store = Store(paths.store)
    try:
        return {"exec": exec_, "attach": attach, "logs": logs, "portforward": portforward, "podlab": podlab}[
            spec["op"]](spec, query, paths, store)
    except ApiError as e:
        say({"error": {"code": e.code, "reason": e.reason, "message": e.message, "details": e.details}})
        return 0


def exec_(spec: dict, query: dict, paths: LabPaths, store: Store) -> int:
    from emulator.apiserver import exec as pexec
    t = pexec.target(store, spec["namespace"], spec["name"], (query.get("container") or [None])[-1])
    argv = query.get("command") or []
    tty = pexec.flag(query, "tty")
    env = t.env(tty)
    exe, failure = pexec.not_started(argv, env)
    if exe is None:
        say({"failure": (failure or b"").decode()})
        return 0
    say({"ok": True})
    what = f"kubectl exec {' '.join(argv)[:60]} in {t.netns}/{t.container} (from the controller)"
    if tty:
        return _tty(pexec, t, [exe, *argv[1:]], env, paths)
    null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    stdio = (0 if pexec.flag(query, "stdin") else null, 1 if pexec.flag(query, "stdout") else null,
             2 if pexec.flag(query, "stderr") else null)
    try:
        child = pexec.Child(pexec.spawn(t.netns, [exe, *argv[1:]], env, paths.proc_journal, what, stdio=stdio))
    finally:
        os.close(null)
    return _until_done(child)


def podlab(spec: dict, query: dict, paths: LabPaths, store: Store) -> int:
    """``podlab --lab LAB ARGV...`` on this host's part (``PODLAB_LOCAL_PART``, as ``host serve``'s ``cli`` op) with
    the channel's stdin, stdout and stderr: ``podlab exec -i`` and ``run -i`` across hosts. Its exit status is this
    process's; the channel closing kills its whole session."""
    import sys
    from emulator.apiserver.exec_session import Child
    say({"ok": True})
    env = dict(os.environ, PODLAB_LOCAL_PART="1")
    argv = [sys.executable, "-m", "emulator", "--lab", spec["lab"], *spec["argv"]]
    child = Child(os.posix_spawn(sys.executable, argv, env, setsid=True, setsigdef=(signal.SIGHUP, signal.SIGPIPE)))
    return _until_done(child)


def _until_done(child: Any) -> int:
    """Wait for ``child`` (its exit status), or for the channel to close (its whole session killed: 129). Stdin
    is the command's now; this process keeps fd 1 only to see the channel close."""
    os.close(0)
    p = select.poll()
    p.register(child.fileno(), select.POLLIN)
    p.register(1, 0)
    while True:
        for fd, ev in p.poll():
            if fd == child.fileno():
                return child.reap()
            if ev & HANGUP:
                child.kill()
                return 129


def _tty(pexec: Any, t: Any, argv: list[str], env: dict[str, str], paths: LabPaths) -> int:
    master, slave = os.openpty()

    def size(*_: object) -> None:
        try:
            fcntl.ioctl(master, termios.TIOCSWINSZ, fcntl.ioctl(0, termios.TIOCGWINSZ, b"\0" * 8))
        except OSError:
            pass  # not a tty (the controller asked for none) or the pty is gone
    size()
    signal.signal(signal.SIGWINCH, size)
    what = f"kubectl exec -t {' '.join(argv)[:60]} in {t.netns}/{t.container} (from the controller)"
    try:
        child = pexec.Child(pexec.spawn(t.netns, argv, env, paths.proc_journal, what, tty=os.ttyname(slave)))
    finally:
        os.close(slave)
    p = select.poll()
    for fd in (0, master, child.fileno()):
        p.register(fd, select.POLLIN)
    code = None
    drain_until = 0.0
    while True:
        if code is not None and time.monotonic() > drain_until:
            return code
        for fd, ev in p.poll(200 if code is not None else None):
            if fd == child.fileno():
                p.unregister(fd)
                code = child.reap()
                drain_until = time.monotonic() + 2.0
                continue
            try:
                data = os.read(fd, CHUNK)
            except OSError as e:  # EIO: a pty's other side is closed
                if e.errno != errno.EIO:
                    raise
                data = b""
            if fd == master:
                if not data:  # the command's pty closed: the output is complete
                    p.unregister(master)
                    if code is not None:
                        return code
                elif not write_all(1, data) and code is None:
                    child.kill()
                    return 129
            elif data:
                write_all(master, data)
            elif code is None:  # the channel is gone
                child.kill()
                return 129
            else:
                p.unregister(0)


def attach(spec: dict, query: dict, paths: LabPaths, store: Store) -> int:
    """The container's own process: its holder's frames (``images.attachable``) to and from the channel's bytes;
    a container without stdin or tty: its log from now on, until its process changes (``apiserver.attach``)."""
    from emulator.apiserver import attach as pattach, exec as pexec
    t = pexec.target(store, spec["namespace"], spec["name"], (query.get("container") or [None])[-1])
    plan = pattach.plan(paths, t, query)
    say({"ok": True})
    if plan.holder is None:
        return _follow_log(t, plan.log)
    from emulator.images.attachable import EXIT, RESIZE, STDIN, STDIN_END, pack, unpack
    h = plan.holder
    h.settimeout(None)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)  # SIGWINCH wakes the loop, which sends the size (no frame cut by a handler)
    signal.signal(signal.SIGWINCH, lambda *_: None)

    def size() -> None:
        try:
            rows, cols = struct.unpack("HHHH", fcntl.ioctl(0, termios.TIOCGWINSZ, b"\0" * 8))[:2]
        except OSError:
            return  # no pty on the channel
        h.sendall(pack(RESIZE, json.dumps({"Width": cols, "Height": rows}).encode()))
    if plan.tty:
        size()
    p = select.poll()
    for fd, mask in ((0, select.POLLIN), (1, 0), (h.fileno(), select.POLLIN), (wake_r, select.POLLIN)):
        p.register(fd, mask)
    buf = bytearray()
    try:
        while True:
            for fd, ev in p.poll():
                if fd == wake_r:
                    os.read(wake_r, 512)
                    if plan.tty:
                        size()
                elif fd == 1:
                    return 0  # the channel is gone
                elif fd == 0:
                    try:
                        data = os.read(0, CHUNK)
                    except OSError:  # EIO: the channel's pty hung up
                        return 0
                    if data and plan.stdin:
                        h.sendall(pack(STDIN, data))
                    elif not data:
                        if plan.tty:
                            return 0  # a pty's end is the channel's
                        p.unregister(0)
                        if plan.stdin:
                            h.sendall(pack(STDIN_END))
                            plan.stdin = False
                else:
                    data = h.recv(CHUNK)
                    if not data:
                        return 0
                    buf += data
                    for kind, payload in unpack(buf):
                        if kind == EXIT:
                            return 0
                        if payload and not write_all(1 if plan.tty or kind != 2 else 2, payload):
                            return 0
    except OSError:
        return 0  # the holder went away: its process ended
    finally:
        try:
            if plan.stdin:
                h.sendall(pack(STDIN_END))
        except OSError:
            pass  # the holder is gone: nothing to tell it
        h.close()


def _follow_log(t, log: str) -> int:
    from emulator.proc.lifecycle import alive
    cs = next((c for c in t.status.get("containerStatuses") or [] if c.get("name") == t.container), {})
    running = (cs.get("pid"), cs.get("pidStart"))
    with open(log, "rb") as f:
        f.seek(0, os.SEEK_END)
        last = time.monotonic()
        while not hung_up(1):
            data = f.read(CHUNK)
            if data:
                if not write_all(1, data):
                    return 0
                continue
            if time.monotonic() - last > 1.0:
                last = time.monotonic()
                if not alive(*running):
                    return 0
            time.sleep(0.1)
    return 0


def logs(spec: dict, query: dict, paths: LabPaths, store: Store) -> int:
    from emulator.apiserver import logs as plogs
    from emulator.apiserver.rest import Request
    req = Request("GET", "", query, {}, gone=lambda: hung_up(1))
    resp = plogs.serve(req, store, paths, spec["namespace"], spec["name"])
    say({"ok": True})
    body = resp.body
    if isinstance(body, (bytes, bytearray)):
        write_all(1, bytes(body))
        return 0
    try:
        for chunk in body:
            if chunk and not write_all(1, chunk):
                return 0
    finally:
        getattr(body, "close", lambda: None)()
    return 0


def portforward(spec: dict, query: dict, paths: LabPaths, store: Store) -> int:
    from emulator.apiserver import portforward as pf
    t = pf.target(store, spec["namespace"], spec["name"])
    try:
        sock = pf.connect(t.netns, int(spec["port"]))
    except OSError as e:
        say({"refused": e.strerror or str(e)})
        return 0
    say({"ok": True})
    sock.setblocking(True)
    p = select.poll()
    p.register(0, select.POLLIN)
    p.register(1, 0)
    p.register(sock.fileno(), select.POLLIN)
    with sock:
        while True:
            for fd, ev in p.poll():
                if fd == 1:  # the channel is gone
                    return 0
                if fd == 0:
                    data = os.read(0, CHUNK)
                    if data:
                        try:
                            sock.sendall(data)
                        except OSError:
                            return 0  # the pod's side closed the connection
                        continue
                    p.unregister(0)
                    try:
                        sock.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass  # the pod's side closed already
                    continue
                try:
                    data = sock.recv(CHUNK)
                except OSError:
                    data = b""
                if not data or not write_all(1, data):
                    return 0  # the pod's side ended (the channel's EOF tells the controller) or the channel did
