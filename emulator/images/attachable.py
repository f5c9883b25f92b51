"""The holder of an attachable container (``stdin: true`` and/or ``tty: true``, as ``kubectl run -it`` makes).

``python -m emulator.images.attachable --socket PATH [--tty] [--stdin-once] -- ARGV...`` is what the node agent
starts instead of ARGV for such a container, in the pod's namespace with the container's environment and its
log file as stdout/stderr. It starts ARGV as its child, in a new session, on a new pty (``--tty``: the pty is
the child's controlling terminal, stdout and stderr merged into it, as a container runtime does) or on pipes, and
holds the other ends, so the process waits for input until someone attaches — what a container runtime's shim
does for the kubelet. Everything the child prints goes to the log (``kubectl logs``) and to every attached client.

Attach clients (the lab's API server, for ``pods/attach``) connect to the Unix socket PATH; both directions carry
frames of ``type (1 byte) | length (4 bytes, big-endian) | payload``. Client to holder: 0 stdin bytes, 4 a window
size (``{"Width":W,"Height":H}``), 255 the client's stdin ended. Holder to client: 1 stdout, 2 stderr, 3 the
child's exit code (ASCII), after which the holder closes. With ``--stdin-once`` (``stdinOnce: true``) the first
client's end of stdin is the child's: the pipe is closed, or on a pty an end-of-file (^D) is typed.

The child's exit is the holder's: it drains the output (up to 1 s), tells the clients the code and exits with
it, so the agent records the container's real exit code. SIGTERM (the pod stopped) hangs the child's session up
(SIGHUP, then SIGKILL after 2 s) before the holder exits; if the holder is killed outright, its end of the pty
closes and the kernel hangs the session up itself.
"""
from __future__ import annotations

import argparse
import errno
import fcntl
import os
import select
import shutil
import signal
import socket
import struct
import sys
import termios
import time

STDIN, STDOUT, STDERR, EXIT, RESIZE, STDIN_END = 0, 1, 2, 3, 4, 255
HEAD = struct.Struct("!BI")


def pack(kind: int, payload: bytes = b"") -> bytes:
    return HEAD.pack(kind, len(payload)) + payload


def unpack(buf: bytearray) -> list[tuple[int, bytes]]:
    """Whole frames taken off the front of ``buf``."""
    out = []
    while len(buf) >= HEAD.size:
        kind, n = HEAD.unpack_from(buf)
        if len(buf) < HEAD.size + n:
            break
        out.append((kind, bytes(buf[HEAD.size:HEAD.size + n])))
        del buf[:HEAD.size + n]
    return out


def winsize(fd: int, payload: bytes) -> None:
    import json
    try:
        size = json.loads(payload)
        w, h = int(size["Width"]), int(size["Height"])
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", h, w, 0, 0))
    except (ValueError, KeyError, TypeError, OSError):
        pass  # a malformed or late resize changes nothing


class Holder:
    def __init__(self, sock_path: str, argv: list[str], tty: bool, stdin_once: bool) -> None:
        self.tty, self.stdin_once = tty, stdin_once
        exe = argv[0] if "/" in argv[0] else shutil.which(argv[0])
        if exe is None:
            print(f'exec: "{argv[0]}": executable file not found in $PATH', flush=True)
            sys.exit(127)
        if tty:
            self.master, slave = os.openpty()
            actions = [(os.POSIX_SPAWN_OPEN, 0, os.ttyname(slave), os.O_RDWR, 0), (os.POSIX_SPAWN_DUP2, 0, 1),
                       (os.POSIX_SPAWN_DUP2, 0, 2)]
            self.stdin: int | None = self.master
            self.outputs = {self.master: STDOUT}
            ends = [slave]
        else:
            in_r, self.stdin = os.pipe()
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            actions = [(os.POSIX_SPAWN_DUP2, in_r, 0), (os.POSIX_SPAWN_DUP2, out_w, 1), (os.POSIX_SPAWN_DUP2, err_w, 2)]
            self.outputs = {out_r: STDOUT, err_r: STDERR}
            ends = [in_r, out_w, err_w]
        env = dict(os.environ)
        if tty:
            env.setdefault("TERM", "xterm")  # as a container runtime sets it for a tty
        self.pid = os.posix_spawn(exe, argv, env, file_actions=actions, setsid=True,
                                  setsigdef=(signal.SIGPIPE, signal.SIGTERM, signal.SIGHUP, signal.SIGINT))
        for fd in ends:
            os.close(fd)
        try:
            os.unlink(sock_path)
        except FileNotFoundError:
            pass  # no socket of an earlier holder
        os.makedirs(os.path.dirname(sock_path), exist_ok=True)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(sock_path)
        os.chmod(sock_path, 0o600)
        self.listener.listen(8)
        self.sock_path = sock_path
        self.clients: dict[int, tuple[socket.socket, bytearray]] = {}
        self.stdin_owner: int | None = None

    def _broadcast(self, kind: int, data: bytes) -> None:
        frame = pack(kind, data)
        for fd, (c, _) in list(self.clients.items()):
            try:
                c.settimeout(2)
                c.sendall(frame)
            except OSError:
                self._drop(fd)

    def _drop(self, fd: int) -> None:
        c, _ = self.clients.pop(fd)
        self.poller.unregister(fd)
        c.close()
        if self.stdin_owner == fd:
            self._stdin_ended()

    def _stdin_ended(self) -> None:
        self.stdin_owner = None
        if not self.stdin_once or self.stdin is None:
            return
        if self.tty:
            try:
                os.write(self.master, b"\x04")
            except OSError:
                pass  # the process closed its tty: its input has ended anyway
        else:
            os.close(self.stdin)
        self.stdin = None

    def _from_client(self, fd: int) -> None:
        c, buf = self.clients[fd]
        try:
            data = c.recv(65536)
        except OSError:
            data = b""
        if not data:
            self._drop(fd)
            return
        buf += data
        for kind, payload in unpack(buf):
            if kind == STDIN and self.stdin is not None:
                self.stdin_owner = fd if self.stdin_owner is None else self.stdin_owner
                try:
                    os.set_blocking(self.stdin, True)
                    os.write(self.stdin, payload)
                except OSError:
                    pass  # the process closed its stdin: what it did not read is dropped
            elif kind == RESIZE and self.tty:
                winsize(self.master, payload)
            elif kind == STDIN_END and (self.stdin_owner in (None, fd)):
                self._stdin_ended()

    def _from_child(self, fd: int) -> bool:
        try:
            data = os.read(fd, 65536)
        except OSError as e:
            if e.errno != errno.EIO:
                raise
            data = b""
        if not data:
            self.poller.unregister(fd)
            del self.outputs[fd]
            return False
        os.write(1, data)
        self._broadcast(self.outputs[fd], data)
        return True

    def run(self) -> int:
        self.poller = select.poll()
        pidfd = os.pidfd_open(self.pid)
        self.poller.register(pidfd, select.POLLIN)
        self.poller.register(self.listener.fileno(), select.POLLIN)
        for fd in self.outputs:
            self.poller.register(fd, select.POLLIN)
        code = None
        drain_until = 0.0
        while True:
            if code is not None and (not self.outputs or time.monotonic() > drain_until):
                break
            for fd, _ in self.poller.poll(200 if code is not None else 1000):
                if fd == pidfd:
                    self.poller.unregister(pidfd)
                    _, status = os.waitpid(self.pid, 0)
                    code = os.waitstatus_to_exitcode(status)
                    code = 128 - code if code < 0 else code
                    drain_until = time.monotonic() + 1.0
                elif fd == self.listener.fileno():
                    c, _ = self.listener.accept()
                    self.clients[c.fileno()] = (c, bytearray())
                    self.poller.register(c.fileno(), select.POLLIN)
                elif fd in self.clients:
                    self._from_client(fd)
                elif fd in self.outputs:
                    self._from_child(fd)
        self._broadcast(EXIT, str(code).encode())
        for fd in list(self.clients):
            self._drop(fd)
        try:
            os.unlink(self.sock_path)
        except OSError:
            pass  # already removed
        return code

    def terminate(self, *_: object) -> None:
        for sig, wait in ((signal.SIGHUP, 2.0), (signal.SIGKILL, 1.0)):
            try:
                os.killpg(self.pid, sig)
            except OSError:
                break
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                if os.waitpid(self.pid, os.WNOHANG)[0]:
                    break
                time.sleep(0.02)
            else:
                continue
            break
        try:
            os.unlink(self.sock_path)
        except OSError:
            pass  # already removed
        os._exit(143)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="attachable")
    ap.add_argument("--socket", required=True)
    ap.add_argument("--tty", action="store_true")
    ap.add_argument("--stdin-once", action="store_true")
    ap.add_argument("command", nargs=argparse.REMAINDER)
    a = ap.parse_args(argv)
    cmd = a.command[1:] if a.command[:1] == ["--"] else a.command
    if not cmd:
        ap.error("a command is needed after --")
    h = Holder(a.socket, cmd, a.tty, a.stdin_once)
    signal.signal(signal.SIGTERM, h.terminate)
    return h.run()


if __name__ == "__main__":
    sys.exit(main())
