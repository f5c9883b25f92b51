"""``pods/exec``: a command in a running pod's container, its streams carried over WebSocket (``v5.channel.k8s.io``
for kubectl >= 1.30, ``v4.channel.k8s.io`` for the Python client), the exit code as a Status on channel 3.

Design. The request is checked first, with the real server's wording, before anything starts (``target``):
the pod exists, the container is one of its own, the pod is on a node and that container runs. Then the command
is started (``spawn``) the way ``podlab exec`` and the node agents start processes: ``posix_spawn`` from this
thread while it has entered the pod's network namespace (so the child is born there), through ``ip netns exec``
when the pod has its own ``/etc/netns`` files (its resolv.conf), with the container's environment, and behind the
process journal's shell lines (``proc.journal.wrap``), so the process has named itself in the lab's journal
before it runs and ``down``/``cleanup`` end it if it outlives the request. It gets its own session (``setsid``):
with ``tty=true`` a new pty is its controlling terminal (``TERM=xterm``, window size from channel 4), otherwise
pipes. Then one ``poll`` loop (``Session``) moves bytes: channel 0 to the process's stdin (``[255, 0]`` closes it,
v5), its stdout/stderr (or the pty) to channels 1/2, and a pidfd says when it exits; after the exit the output is
drained (up to 2 s, a background child may hold the pipe) and the Status is sent: ``Success``, or ``Failure``
with reason ``NonZeroExitCode`` and the code in ``details.causes`` (kubectl prints "command terminated with exit
code N" and exits N). If the client goes away first, the process's whole process group is killed (SIGKILL)
before it is reaped, so no exec outlives its client. ``Session`` is shared with ``attach``.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import select
import shutil
import signal
import struct
import termios
import time
from dataclasses import dataclass, field

from emulator.agent.podenv import container_env
from emulator.apiserver.status import ApiError, not_found
from emulator.apiserver.stream_ws import OP_BINARY, OP_CLOSE, OP_TEXT, Closed, WebSocket
from emulator.netlink import netns
from emulator.proc import journal
from emulator.state.store import Store

STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
DRAIN_AFTER_EXIT = 2.0
STDIN_BUFFER = 1 << 20
RESET_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


@dataclass
class Target:
    pod: dict                  # the manifest
    status: dict               # the agent's status (sandbox, podIP, nodeName, containerStatuses with pids)
    container: str
    netns: str

    @property
    def spec(self) -> dict:
        return next(c for c in self.pod["spec"]["containers"] if c["name"] == self.container)

    def env(self, tty: bool) -> dict[str, str]:
        st = self.status
        env = container_env(self.pod, st.get("nodeName", ""), st.get("hostIP", ""), st.get("podIP", ""), self.spec)
        if self.pod["spec"].get("hostNetwork"):
            env["HOSTNAME"] = st.get("nodeName", "")  # a hostNetwork pod has its node's hostname
        if tty:
            env.setdefault("TERM", "xterm")
        return env


def flag(q: dict[str, list[str]], key: str) -> bool:
    v = q.get(key)
    return bool(v) and v[-1].lower() in ("true", "1")


def target(store: Store, ns: str, name: str, container: str | None) -> Target:
    """The pod and container to exec into or attach to, or the ApiError a real server answers with."""
    pod = store.get("pods", name, ns)
    if pod is None:
        raise not_found("pods", name)
    names = [c["name"] for c in pod["spec"].get("containers") or []]
    if not container:
        if len(names) != 1:
            raise ApiError(400, "BadRequest", f"a container name must be specified for pod {name}, choose one "
                                              f"of: [{' '.join(names)}]")
        container = names[0]
    if container not in names:
        raise ApiError(400, "BadRequest", f"container {container} is not valid for pod {name}")
    st = store.get_status("pods", name, ns) or {}
    if not (st.get("nodeName") or pod["spec"].get("nodeName")):
        raise ApiError(400, "BadRequest", f"pod {name} does not have a host assigned")
    cs = next((c for c in st.get("containerStatuses") or [] if c.get("name") == container), {})
    sandbox = (st.get("sandbox") or {}).get("netns")
    if not sandbox or not netns.exists(sandbox) or not (cs.get("pid") or cs.get("process")):
        # the kubelet's answer, relayed by the API server: kubectl prints "unable to upgrade connection: ..."
        raise ApiError(500, "InternalError", f'container not found ("{container}")')
    return Target(pod, st, container, sandbox)


def which(cmd: str, env: dict[str, str]) -> str | None:
    if "/" in cmd:
        return cmd if os.access(cmd, os.X_OK) and not os.path.isdir(cmd) else None
    return shutil.which(cmd, path=env.get("PATH"))


def spawn(ns_name: str, argv: list[str], env: dict[str, str], journal_path, what: str,
          stdio: tuple[int, int, int] | None = None, tty: str | None = None) -> int:
    """Start ``argv`` (argv[0] already resolved) in the namespace, recorded in the lab's journal; its pid."""
    wrapped = netns.exec_argv(ns_name, argv)
    if wrapped:
        wrapped[0] = shutil.which("ip") or "/usr/sbin/ip"
    final = journal.wrap(journal_path, what, wrapped or argv, kind="tool")
    if tty is not None:  # opened after setsid, without O_NOCTTY: the pty becomes the controlling terminal
        actions = [(os.POSIX_SPAWN_OPEN, 0, tty, os.O_RDWR, 0), (os.POSIX_SPAWN_DUP2, 0, 1),
                   (os.POSIX_SPAWN_DUP2, 0, 2)]
    else:
        assert stdio is not None
        actions = [(os.POSIX_SPAWN_DUP2, fd, i) for i, fd in enumerate(stdio)]
    with netns.entered(ns_name):
        return os.posix_spawn(journal.SHELL, final, env, file_actions=actions, setsid=True,
                              setsigdef=RESET_SIGNALS)


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


def exit_status(code: int) -> bytes:
    if code == 0:
        return b'{"metadata":{},"status":"Success"}'
    return json.dumps({"metadata": {}, "status": "Failure", "message": f"command terminated with non-zero exit "
                       f"code: error executing command, exit status {code}", "reason": "NonZeroExitCode",
                       "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}},
                      separators=(",", ":")).encode()


def failure_status(message: str) -> bytes:
    return json.dumps({"metadata": {}, "status": "Failure", "message": message, "reason": "InternalError",
                       "code": 500}, separators=(",", ":")).encode()


def set_winsize(fd: int, payload: bytes) -> None:
    try:
        size = json.loads(payload)
        w, h = int(size.get("Width", 0)), int(size.get("Height", 0))
    except (ValueError, TypeError, AttributeError):
        return
    if w > 0 and h > 0:
        try:
            fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", min(h, 65535), min(w, 65535), 0, 0))
        except OSError:
            pass  # the pty is gone (the process ended): a late resize is moot


@dataclass
class Session:
    """One WebSocket client and the file descriptors it is joined to (see the module docstring).

    ``stdin``: where channel 0 goes (None: dropped); ``outputs``: fd -> channel; ``resize``: the pty to size;
    ``pid``: a child of this process to wait for (None for an attach, which ends when the outputs end).
    Every fd given is closed once, at the end (a pty master is stdin, output and resize target at once).
    """
    ws: WebSocket
    v5: bool
    stdin: int | None
    outputs: dict[int, int]
    resize: int | None = None
    pid: int | None = None
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
        pidfd = os.pidfd_open(self.pid) if self.pid else -1
        if pidfd >= 0:
            self.owned.append(pidfd)
            self._set(pidfd, select.POLLIN)
        if self.stdin is not None:
            os.set_blocking(self.stdin, False)
        drain_until = None
        try:
            while True:
                if self.pid is None and not self.outputs:
                    return 0
                if self.code is not None and (not self.outputs or time.monotonic() > drain_until):
                    return self.code
                timeout = 1000 if drain_until is None else max(int((drain_until - time.monotonic()) * 1000), 0)
                ready = self.ws.readable_now() and len(self.pending) <= STDIN_BUFFER
                events = [(self.ws.fileno(), select.POLLIN)] if ready else poller.poll(timeout)
                for fd, ev in events:
                    if fd == self.ws.fileno():
                        if not self._from_client():
                            return None
                    elif fd == pidfd:
                        self._set(pidfd, 0)
                        self.code = self._reap()
                        drain_until = time.monotonic() + DRAIN_AFTER_EXIT
                    else:
                        if fd == self.stdin and ev & select.POLLOUT:
                            self._flush_stdin()
                        if fd in self.outputs and ev & (select.POLLIN | select.POLLHUP | select.POLLERR):
                            self._from_process(fd)
        except Closed:
            return None
        finally:
            if self.code is None and self.pid:
                self._kill()
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
                set_winsize(self.resize, body)
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
        if fd == self.resize or fd in self.outputs:  # a tty: the end of input is ^D
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

    def _reap(self) -> int:
        _, status = os.waitpid(self.pid, 0)
        code = os.waitstatus_to_exitcode(status)
        return 128 - code if code < 0 else code  # killed by signal N: 128 + N, as a shell and runc report it

    def _kill(self) -> None:
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


def serve(ws: WebSocket, protocol: str, t: Target, query: dict[str, list[str]], journal_path) -> None:
    """Run the exec for an upgraded connection; the 101 has been sent."""
    argv = query.get("command") or []
    tty, want_in = flag(query, "tty"), flag(query, "stdin")
    want_out, want_err = flag(query, "stdout"), flag(query, "stderr") and not tty
    env = t.env(tty)
    exe = which(argv[0], env) if argv else None
    if exe is None:
        what = f'exec: "{argv[0]}": executable file not found in $PATH' if argv else "no command given"
        ws.send_binary(bytes([ERROR]) + failure_status(
            f"Internal error occurred: error executing command in container: failed to exec in container: "
            f"OCI runtime exec failed: exec failed: unable to start container process: {what}: unknown"))
        ws.finish()
        return
    what = f"kubectl exec {' '.join(argv)[:60]} in {t.netns}/{t.container}"
    owned: list[int] = []
    if tty:
        master, slave = os.openpty()
        path = os.ttyname(slave)
        owned.append(master)
        try:
            pid = spawn(t.netns, [exe, *argv[1:]], env, journal_path, what, tty=path)
        finally:
            os.close(slave)
        s = Session(ws, protocol.startswith("v5"), master if want_in else None, {master: STDOUT},
                    resize=master, pid=pid, owned=owned)
    else:
        ends: list[int] = []
        pipes = {}
        null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        ends.append(null)
        stdio = [null, null, null]
        if want_in:
            r, w = os.pipe()
            stdio[0], pipes["in"] = r, w
            ends.append(r)
        for i, want in ((1, want_out), (2, want_err)):
            if want:
                r, w = os.pipe()
                stdio[i], pipes[i] = w, r
                ends.append(w)
        try:
            pid = spawn(t.netns, [exe, *argv[1:]], env, journal_path, what, stdio=tuple(stdio))
        finally:
            for fd in ends:
                os.close(fd)
        s = Session(ws, protocol.startswith("v5"), pipes.get("in"),
                    {pipes[i]: (STDOUT if i == 1 else STDERR) for i in (1, 2) if i in pipes}, pid=pid)
    code = s.run()
    if code is None:
        ws.close()
        return
    try:
        ws.send_binary(bytes([ERROR]) + exit_status(code))
    except Closed:
        pass  # the client left as the process ended: nothing to tell it
    ws.finish()
