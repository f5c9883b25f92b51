"""The pump of an exec session: a WebSocket (or SPDY) client's channels joined to a process's file descriptors.

``Session`` runs one ``poll`` loop in the connection's thread: channel 0 goes to the process's stdin (with a
bounded buffer: while the process has not taken 1 MiB, the client is not read), ``[255, 0]`` closes it (v5; on a
tty it is ^D), channel 4's sizes go to ``resize``, the process's outputs become channels 1/2, and the process's
``fileno`` says when it ended; after that the outputs are drained (up to 2 s: a background child may hold a pipe)
and its exit code returned. If the client leaves first, the process is killed. The process is a ``Process``: a
child of this server (``Child``, by its pidfd) or, in a multi-host lab, a command on the pod's host relayed over
SSH (``hosts.api_streams``), so both speak the same protocol code.
"""
from __future__ import annotations

import errno
import os
import select
import signal
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

from emulator.apiserver.stream_ws import OP_BINARY, OP_CLOSE, OP_TEXT, Closed, WebSocket

STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
DRAIN_AFTER_EXIT = 2.0
STDIN_BUFFER = 1 << 20


def session_members(sid: int) -> list[int]:
    """The processes whose session is ``sid`` (field 6 of /proc/PID/stat)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue  # ended while we looked
        if int(fields[3]) == sid:
            out.append(int(d))
    return out


class Child:
    """The exec's process, a child of this one: its pidfd says when it exits."""

    def __init__(self, pid: int) -> None:
        self.pid, self.fd = pid, os.pidfd_open(pid)

    def fileno(self) -> int:
        return self.fd

    def reap(self) -> int:
        _, status = os.waitpid(self.pid, 0)
        code = os.waitstatus_to_exitcode(status)
        return 128 - code if code < 0 else code  # killed by signal N: 128 + N, as a shell and runc report it

    def kill(self) -> None:
        """The process, its group and every process of its session (a shell's background jobs on a tty have
        groups of their own): SIGKILL, before it is reaped, so its PID cannot have been reused meanwhile."""
        for who in (-self.pid, self.pid, *(p for p in session_members(self.pid) if p != self.pid)):
            try:
                os.kill(who, signal.SIGKILL)
            except OSError:
                pass  # the group or the process is already gone
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass  # already reaped

    def close(self) -> None:
        os.close(self.fd)


class Process(Protocol):
    """What a ``Session`` waits for: a child here (``Child``) or a command on another host (``hosts.api_streams``).
    ``fileno`` is readable once it ended; ``reap`` then gives its exit code; ``kill`` ends it before that."""

    def fileno(self) -> int: ...
    def reap(self) -> int: ...
    def kill(self) -> None: ...
    def close(self) -> None: ...


@dataclass
class Session:
    """One WebSocket client and the file descriptors it is joined to (see the module docstring).

    ``stdin``: where channel 0 goes (None: dropped); ``outputs``: fd -> channel; ``resize``: what channel 4's
    sizes are given to; ``tty``: the end of input is ^D written to ``stdin``; ``proc``: the process to wait for.
    Every fd given is closed once, at the end (a pty master is stdin and output at once).
    """
    ws: WebSocket
    v5: bool
    stdin: int | None
    outputs: dict[int, int]
    proc: Process
    resize: Callable[[bytes], None] | None = None
    tty: bool = False
    owned: list[int] = field(default_factory=list)
    code: int | None = None
    pending: bytearray = field(default_factory=bytearray)
    close_stdin: bool = False

    def run(self) -> int | None:
        """Pump until the process exits (its code) or the client leaves (None, the process killed)."""
        self.poller = poller = select.poll()
        self.masks: dict[int, int] = {}
        self._set(self.ws.fileno(), select.POLLIN)
        for fd in self.outputs:
            os.set_blocking(fd, False)
            self._set(fd, select.POLLIN)
        done = self.proc.fileno()
        self._set(done, select.POLLIN)
        if self.stdin is not None:
            os.set_blocking(self.stdin, False)
        drain_until = None
        try:
            while True:
                if self.code is not None and (not self.outputs or time.monotonic() > drain_until):
                    return self.code
                timeout = 1000 if drain_until is None else max(int((drain_until - time.monotonic()) * 1000), 0)
                ready = self.ws.readable_now() and len(self.pending) <= STDIN_BUFFER
                events = [(self.ws.fileno(), select.POLLIN)] if ready else poller.poll(timeout)
                for fd, ev in events:
                    if fd == self.ws.fileno():
                        if not self._from_client():
                            return None
                    elif fd == done:
                        self._set(done, 0)
                        self.code = self.proc.reap()
                        drain_until = time.monotonic() + DRAIN_AFTER_EXIT
                    else:
                        if fd == self.stdin and ev & select.POLLOUT:
                            self._flush_stdin()
                        if fd in self.outputs and ev & (select.POLLIN | select.POLLHUP | select.POLLERR):
                            self._from_process(fd)
        except Closed:
            return None
        finally:
            if self.code is None:
                self.proc.kill()
            self.proc.close()
            fds = {*self.owned, *self.outputs, *([self.stdin] if self.stdin is not None else [])}
            for fd in fds:
                try:
                    os.close(fd)
                except OSError:
                    pass  # closed by the process's own end (EBADF) or already gone

    def _set(self, fd: int, mask: int) -> None:
        """Poll ``fd`` for ``mask`` (0: not at all)."""
        old = self.masks.get(fd)
        if mask == old or (not mask and old is None):
            return
        if not mask:
            self.poller.unregister(fd)
            del self.masks[fd]
        elif old is None:
            self.poller.register(fd, mask)
            self.masks[fd] = mask
        else:
            self.poller.modify(fd, mask)
            self.masks[fd] = mask

    def _mask(self, fd: int) -> int:
        return (select.POLLIN if fd in self.outputs else 0) | \
            (select.POLLOUT if fd == self.stdin and self.pending else 0)

    def _from_client(self) -> bool:
        self.ws.fill()
        for op, data in self.ws.messages():
            if op == OP_CLOSE:
                return False
            if op not in (OP_BINARY, OP_TEXT) or not data:  # the Python client sends text frames
                continue
            ch, body = data[0], data[1:]
            if ch == STDIN and self.stdin is not None and body:
                self.pending += body
                self._flush_stdin()
            elif ch == RESIZE and self.resize is not None:
                self.resize(body)
            elif ch == CLOSE and self.v5 and body[:1] == bytes([STDIN]):
                self.close_stdin = True
                self._flush_stdin()
        return True

    def _flush_stdin(self) -> None:
        fd = self.stdin
        if fd is None:
            return
        while self.pending:
            try:
                n = os.write(fd, self.pending)
            except BlockingIOError:
                break
            except OSError:  # the process closed its stdin: what it did not read is dropped
                self.pending.clear()
                break
            del self.pending[:n]
        # backpressure: while the process has not taken 1 MiB of input, the client is not read
        self._set(self.ws.fileno(), 0 if len(self.pending) > STDIN_BUFFER else select.POLLIN)
        self._set(fd, self._mask(fd))
        if self.pending or not self.close_stdin:
            return
        self.close_stdin = False
        if self.tty:  # a tty: the end of input is ^D
            try:
                os.write(fd, b"\x04")
            except OSError:
                pass  # the process closed the pty: its input has ended anyway
            return
        self.stdin = None
        self._set(fd, 0)
        os.close(fd)

    def _from_process(self, fd: int) -> None:
        try:
            data = os.read(fd, 256 * 1024)
        except BlockingIOError:
            return
        except OSError as e:  # EIO: the pty's last slave is closed
            if e.errno != errno.EIO:
                raise
            data = b""
        if data:
            self.ws.send_binary(bytes([self.outputs[fd]]) + data)
            return
        del self.outputs[fd]
        self._set(fd, self._mask(fd))
        if fd != self.stdin and fd not in self.owned:
            os.close(fd)
