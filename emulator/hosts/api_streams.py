"""The streaming verbs of a multi-host lab's API server: exec, attach, port-forward and logs of a pod on any host.

The controller's API server (``hosts.api_across``) speaks the protocols itself, with the one-machine code
(``apiserver.streams``: the WebSocket and SPDY upgrades; ``exec_session.Session``: the channels of an exec;
``portforward``: its SPDY and channel sessions); only where the session's far end is differs. ``Remote`` is the
``streams.Backend`` whose far end is on the pod's host: for each session it opens a fresh SSH channel on its
connection to that host (``Links``: one paramiko connection per host, made from the controller's namespace on
first use and kept; a new channel per session, ``Transport.open_session``) running ``podlab host stream SPEC``
there (``hosts.serve_stream``: the check, the command in the pod's namespace, the relay). The host's first line
says how the check went (a Status answered before the upgrade, as on one machine); then the channel's bytes are
the session's:

- **exec**: ``RemoteCommand`` joins the channel to the ``Session`` through local pipes, pumped by threads (stdin
  to the channel, its end as the channel's EOF; the channel's stdout and stderr to channels 1/2), and is the
  session's ``Process``: ``fileno`` is readable once the channel's exit status arrived (the command's exit code:
  kubectl prints "command terminated with exit code N"), ``kill`` closes the channel (the host then kills the
  command's whole session). ``-t`` asks the channel for a pty (``get_pty``) and channel 4's sizes become
  ``resize_pty``; the end of stdin on a tty is ^D, as on one machine. A host that stops answering mid-session
  (its TCP acknowledges nothing of the keepalives for 15 s: ``TCP_USER_TIMEOUT``) ends it with a Failure Status
  naming the host.
- **port-forward**: the target's ``dial`` opens a channel per connection, whose far end connects inside the
  pod's namespace on its host to the pod's localhost (so nothing is opened in any host's root namespace toward
  an emulated address; no direct-tcpip); the channel is joined to a local socketpair the port-forward session
  polls like a pod socket. A refused port gives the same error text as on one machine.
- **logs**: the host's answer, streamed as it comes (``follow``: until the container's process changes there, or
  the client leaves: the channel is then closed and the host's relay ends).

- **attach**: as exec, the host joining the channel to the container's holder (its frames, ``images.attachable``)
  or, for a container without stdin or tty, following its log; the holder's exit ends it with Success.
"""
from __future__ import annotations

import errno
import json
import os
import shlex
import socket
import threading
from typing import Callable, Iterator

import paramiko

from emulator.apiserver import exec as pexec
from emulator.apiserver import logs as plogs
from emulator.apiserver import portforward
from emulator.apiserver.exec_session import Session
from emulator.apiserver.rest import Request, Response, Target
from emulator.apiserver.status import ApiError, not_found
from emulator.apiserver.streams import Prepared
from emulator.errors import HostUnreachableError
from emulator.hosts.transport import CONNECT_TIMEOUT, HostSession
from emulator.state.store import Store
from emulator.topology.hosts_section import Host

CHUNK = 256 * 1024
STATUS_TIMEOUT = 30.0  # the host's podlab starts and checks the request within this
KEEPALIVE = 5  # seconds between the connection's keepalives
DEAD_AFTER = 15.0  # a host whose TCP does not acknowledge for this long is gone: its sessions end, naming it


def stream_command(host: Host, spec: dict) -> str:
    cmd = f"{host.command} host stream {shlex.quote(json.dumps(spec, separators=(',', ':')))}"
    return cmd if host.user == "root" else f"sudo -n {cmd}"


class Links:
    """SSH connections to each host for the sessions, opened on first use, kept, made again once broken. A host
    whose sshd refuses another channel on a connection (``MaxSessions``, 10 by default) gets one more connection."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clients: dict[str, list[paramiko.SSHClient]] = {}

    def open(self, host: Host, spec: dict, pty: bool = False) -> tuple[paramiko.Channel, dict]:
        """A channel running ``host stream SPEC`` on ``host``, and the host's first line (its check)."""
        try:
            ch = self._channel(host)
            if pty:
                ch.get_pty(term="xterm", width=80, height=24)
            ch.exec_command(stream_command(host, spec))
            return ch, first_line(ch, host)
        except (OSError, EOFError, paramiko.SSHException) as e:
            raise ApiError(503, "ServiceUnavailable", f"host {host.name} did not answer for the session "
                           f"({e or type(e).__name__}); check that it is up") from None

    def _channel(self, host: Host) -> paramiko.Channel:
        for t in self._transports(host):
            try:
                return t.open_session(timeout=CONNECT_TIMEOUT)
            except paramiko.ChannelException:
                continue  # this connection carries as many channels as the host allows: try the next
        return self._connect(host).open_session(timeout=CONNECT_TIMEOUT)

    def _transports(self, host: Host) -> list[paramiko.Transport]:
        with self._lock:
            live = [c for c in self._clients.get(host.name, []) if (t := c.get_transport()) and t.is_active()]
            self._clients[host.name] = live
            return [t for c in live if (t := c.get_transport()) is not None]

    def _connect(self, host: Host) -> paramiko.Transport:
        try:
            c = HostSession(host).connect()
        except HostUnreachableError as e:
            raise ApiError(503, "ServiceUnavailable", str(e)) from None
        t = c.get_transport()
        assert t is not None
        t.set_keepalive(KEEPALIVE)
        if isinstance(t.sock, socket.socket):  # a host gone without a FIN: the keepalive's bytes stay unacked
            t.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(DEAD_AFTER * 1000))
        with self._lock:
            self._clients.setdefault(host.name, []).append(c)
        return t

    def close(self) -> None:
        with self._lock:
            clients, self._clients = [c for cs in self._clients.values() for c in cs], {}
        for c in clients:
            c.close()


def first_line(ch: paramiko.Channel, host: Host) -> dict:
    """The host's JSON line, read byte by byte (what follows it is the session's and stays in the channel)."""
    ch.settimeout(STATUS_TIMEOUT)
    line = bytearray()
    while not line.endswith(b"\n"):
        b = ch.recv(1)
        if not b:
            break
        line += b
    ch.settimeout(None)
    try:
        return json.loads(line)
    except ValueError:
        err = b""
        while ch.recv_stderr_ready():
            err += ch.recv_stderr(4096)
        ch.close()
        text = (bytes(line) + err).decode(errors="replace").strip()[-300:]
        raise ApiError(500, "InternalError", f"host {host.name} could not start the session: {text or 'no output'}; "
                       f"run `{host.command} host stream` there by hand to see why") from None


def checked(ch: paramiko.Channel, st: dict) -> dict:
    """``st``, or the Status the host answered raised (the channel closed)."""
    err = st.get("error")
    if err:
        ch.close()
        raise ApiError(int(err["code"]), str(err["reason"]), str(err["message"]), err.get("details"))
    return st


def _pump(read: Callable[[int], bytes], fd: int | None) -> None:
    """Copy ``read``'s bytes into ``fd`` (None: drop them) until it ends; then close ``fd``."""
    sink = fd
    try:
        while data := read(CHUNK):
            while sink is not None and data:
                try:
                    data = data[os.write(sink, data):]
                except OSError:  # the session closed its end: the rest is not wanted
                    sink = None
    except (OSError, EOFError, paramiko.SSHException):
        return  # the channel broke: the reader sees the pipe end
    finally:
        if fd is not None:
            os.close(fd)


def _thread(fn: Callable, *args) -> None:
    threading.Thread(target=fn, args=args, daemon=True, name="stream-pump").start()


class RemoteCommand:
    """The command behind a channel, as the ``Session``'s ``Process``; ``stdin``/``outputs`` are its pipe ends."""

    def __init__(self, ch: paramiko.Channel, host: Host, stdin: bool, stdout: bool, stderr: bool, tty: bool) -> None:
        self.ch, self.host, self.lost = ch, host, False
        self._done_r, self._done_w = os.pipe()
        self.stdin: int | None = None
        self.outputs: dict[int, int] = {}
        if stdin:
            r, self.stdin = os.pipe()
            _thread(self._to_channel, r)
        for want, read, channel in ((stdout, ch.recv, pexec.STDOUT), (stderr and not tty, ch.recv_stderr,
                                                                      pexec.STDERR)):
            w = None
            if want:
                r, w = os.pipe()
                self.outputs[r] = channel
            _thread(_pump, read, w)
        _thread(self._wait)

    def _to_channel(self, r: int) -> None:
        try:
            while True:
                data = os.read(r, CHUNK)
                if not data:
                    self.ch.shutdown_write()  # the client closed stdin: the command's stdin ends
                    return
                self.ch.sendall(data)
        except (OSError, EOFError, paramiko.SSHException):
            return
        finally:
            os.close(r)

    def _wait(self) -> None:
        code = self.ch.recv_exit_status()  # (-1: the channel closed without one)
        self.code, self.lost = code, code < 0
        try:
            os.write(self._done_w, b"x")
        except OSError:
            pass  # the session ended first (its client left): nobody waits for it
        finally:
            os.close(self._done_w)

    def resize(self, payload: bytes) -> None:
        size = pexec.size_of(payload)
        if size is not None:
            try:
                self.ch.resize_pty(width=size[0], height=size[1])
            except (OSError, EOFError, paramiko.SSHException):
                pass  # the channel ended: a late resize is moot

    def fileno(self) -> int:
        return self._done_r

    def reap(self) -> int:
        return max(self.code, 0) if not self.lost else 1

    def kill(self) -> None:
        self.ch.close()  # the host sees its channel close and kills the command's session

    def close(self) -> None:
        self.ch.close()
        os.close(self._done_r)


class Remote:
    """``streams.Backend`` for a pod on another host; ``host_of`` gives the pod's host (None: not placed)."""

    def __init__(self, lab: str, store: Store, links: Links, host_of: Callable[[str], Host | None]) -> None:
        self.lab, self.store, self.links, self.host_of = lab, store, links, host_of

    def _where(self, t: Target) -> Host:
        pod = self.store.get("pods", t.name, t.ns)
        if pod is None:
            raise not_found("pods", t.name or "")
        st = self.store.get_status("pods", t.name, t.ns) or {}
        node = st.get("nodeName") or pod["spec"].get("nodeName")
        host = self.host_of(node) if node else None
        if host is None:
            raise ApiError(400, "BadRequest", f"pod {t.name} does not have a host assigned")
        return host

    def _spec(self, op: str, t: Target, query: dict, **more) -> dict:
        return {"op": op, "lab": self.lab, "namespace": t.ns, "name": t.name, "query": query, **more}

    def exec(self, req: Request, t: Target) -> Prepared:
        """exec, and attach (the container's own process: a tty only if the container has one)."""
        host = self._where(t)
        tty = pexec.flag(req.query, "tty")
        if t.sub == "attach":
            containers = (self.store.get("pods", t.name, t.ns) or {}).get("spec", {}).get("containers") or []
            c = req.q("container") or (containers[0]["name"] if len(containers) == 1 else None)
            tty = tty and any(x.get("name") == c and x.get("tty") for x in containers)
        ch, st = self.links.open(host, self._spec(t.sub or "exec", t, req.query), pty=tty)
        checked(ch, st)
        return Prepared(lambda conn, proto: self._exec(conn, proto, ch, st, host, req.query, tty), cancel=ch.close)

    def _exec(self, conn, proto: str, ch: paramiko.Channel, st: dict, host: Host, query: dict, tty: bool) -> None:
        if "failure" in st:
            ch.close()
            pexec.finish(conn, None, str(st["failure"]).encode())
            return
        cmd = RemoteCommand(ch, host, pexec.flag(query, "stdin"), pexec.flag(query, "stdout"),
                            pexec.flag(query, "stderr"), tty)
        s = Session(conn, proto.startswith("v5"), cmd.stdin, dict(cmd.outputs), cmd,
                    resize=cmd.resize if tty else None, tty=tty)
        code = s.run()
        failure = pexec.failure_status(f"host {host.name} stopped answering during the exec; check that it is "
                                       "up") if code is not None and cmd.lost else None
        pexec.finish(conn, code, failure)

    def portforward(self, req: Request, t: Target) -> Prepared:
        host = self._where(t)
        st = self.store.get_status("pods", t.name, t.ns) or {}
        if st.get("phase") != "Running":
            raise ApiError(400, "BadRequest", f"pod {t.name} is not running (phase {st.get('phase') or 'Pending'})")
        pod = self.store.get("pods", t.name, t.ns) or {}
        ft = portforward.Target(t.name or "", pod["metadata"].get("uid", ""),
                                (st.get("sandbox") or {}).get("netns", ""),
                                dial=lambda port: self._dial(host, t, port))
        return Prepared(lambda conn, proto: portforward.serve(conn, proto, ft, req.query))

    def _dial(self, host: Host, t: Target, port: int) -> socket.socket:
        """A local socket joined to a connection made to ``port`` inside the pod's namespace on its host."""
        try:
            ch, st = self.links.open(host, self._spec("portforward", t, {}, port=port))
        except ApiError as e:
            raise OSError(errno.EHOSTUNREACH, e.message) from None
        if st.get("error") or st.get("refused"):
            ch.close()
            raise OSError(errno.ECONNREFUSED, st.get("refused") or st["error"]["message"])
        mine, theirs = socket.socketpair()
        mine.setblocking(False)
        left = [2]  # the pumps still running; the last one closes ``theirs``
        lock = threading.Lock()

        def done() -> None:
            with lock:
                left[0] -= 1
                if left[0] == 0:
                    theirs.close()

        def to_channel() -> None:
            try:
                while True:
                    data = theirs.recv(CHUNK)
                    if not data:
                        ch.shutdown_write()
                        return
                    ch.sendall(data)
            except (OSError, EOFError, paramiko.SSHException):
                ch.close()
            finally:
                done()

        def from_channel() -> None:
            try:
                while True:
                    data = ch.recv(CHUNK)
                    if not data:
                        theirs.shutdown(socket.SHUT_WR)
                        return
                    theirs.sendall(data)
            except (OSError, EOFError, paramiko.SSHException):
                return
            finally:
                ch.close()
                done()
        _thread(to_channel)
        _thread(from_channel)
        return mine

    def logs(self, req: Request, t: Target) -> Response:
        host = self._where(t)
        ch, st = self.links.open(host, self._spec("logs", t, req.query))
        checked(ch, st)
        if (req.q("follow") or "").lower() != "true":
            data = bytearray()
            with ch:
                while chunk := ch.recv(CHUNK):
                    data += chunk
            return Response(200, bytes(data), plogs.TEXT)
        return Response(200, _follow(ch, req), plogs.TEXT)


def _follow(ch: paramiko.Channel, req: Request) -> Iterator[bytes]:
    """The channel's bytes as they come, until it ends or the client leaves; the channel closed at the end."""
    ch.settimeout(0.5)
    try:
        while True:
            try:
                data = ch.recv(CHUNK)
            except socket.timeout:
                if req.gone():
                    return
                yield b""
                continue
            if not data:
                return
            yield data
    finally:
        ch.close()
