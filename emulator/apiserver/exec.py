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
before it is reaped, so no exec outlives its client. ``Session`` waits for a ``Process``: a child here
(``Child``), or, in a multi-host lab, a command on the pod's host (``hosts.api_streams``).
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import struct
import termios
from dataclasses import dataclass

from emulator.agent.podenv import container_env
from emulator.apiserver.exec_session import (CLOSE, ERROR, RESIZE, STDERR, STDIN, STDOUT, Child, Process,  # noqa: F401
                                             Session, session_members)  # (the names attach and the hosts use)
from emulator.apiserver.status import ApiError, not_found
from emulator.apiserver.stream_ws import Closed, WebSocket
from emulator.netlink import netns
from emulator.proc import journal
from emulator.state.store import Store

PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
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


def size_of(payload: bytes) -> tuple[int, int] | None:
    """(width, height) of channel 4's message, each at most 65535; None if it is no valid size."""
    try:
        size = json.loads(payload)
        w, h = int(size.get("Width", 0)), int(size.get("Height", 0))
    except (ValueError, TypeError, AttributeError):
        return None
    return (min(w, 65535), min(h, 65535)) if w > 0 and h > 0 else None


def set_winsize(fd: int, payload: bytes) -> None:
    size = size_of(payload)
    if size is not None:
        w, h = size
        try:
            fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", h, w, 0, 0))
        except OSError:
            pass  # the pty is gone (the process ended): a late resize is moot


def not_started(argv: list[str], env: dict[str, str]) -> tuple[str | None, bytes | None]:
    """(the executable, None), or (None, the Status the runtime's failure to start it is)."""
    exe = which(argv[0], env) if argv else None
    if exe is not None:
        return exe, None
    what = f'exec: "{argv[0]}": executable file not found in $PATH' if argv else "no command given"
    return None, failure_status(f"Internal error occurred: error executing command in container: failed to exec in "
                                f"container: OCI runtime exec failed: exec failed: unable to start container "
                                f"process: {what}: unknown")


def finish(ws: WebSocket, code: int | None, failure: bytes | None = None) -> None:
    """End the session: the exit code's (or a failure's) Status on channel 3; None: the client left, just close."""
    if code is None and failure is None:
        ws.close()
        return
    try:
        ws.send_binary(bytes([ERROR]) + (failure if failure is not None else exit_status(code or 0)))
    except Closed:
        pass  # the client left as the process ended: nothing to tell it
    ws.finish()


def serve(ws: WebSocket, protocol: str, t: Target, query: dict[str, list[str]], journal_path) -> None:
    """Run the exec for an upgraded connection; the 101 has been sent."""
    argv = query.get("command") or []
    tty, want_in = flag(query, "tty"), flag(query, "stdin")
    want_out, want_err = flag(query, "stdout"), flag(query, "stderr") and not tty
    env = t.env(tty)
    exe, failure = not_started(argv, env)
    if exe is None:
        finish(ws, None, failure)
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
        s = Session(ws, protocol.startswith("v5"), master if want_in else None, {master: STDOUT}, Child(pid),
                    resize=lambda body: set_winsize(master, body), tty=True, owned=owned)
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
                    {pipes[i]: (STDOUT if i == 1 else STDERR) for i in (1, 2) if i in pipes}, Child(pid))
    finish(ws, s.run())
