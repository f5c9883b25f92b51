"""One long-lived paramiko connection per host, carrying one channel to ``podlab host serve``.

Connecting: the host's key must be known (``knownHosts`` of the host entry, else ``~/.ssh/known_hosts``;
paramiko's ``RejectPolicy``: an unknown or changed host key is refused, with the ``ssh-keyscan`` line that fixes
it), the client key is the entry's ``key`` (else paramiko's usual keys and the agent). A user other than root
runs ``sudo -n`` (never a password prompt: a missing sudo rule fails at once, as ``HostSudoError``). Every
failure is a ``HostError`` subclass naming the host and the fix; nothing is retried silently.

The channel's stderr is drained by a thread (so a chatty host never fills the SSH window and stalls the
protocol) and kept for the error message if the serve ends before saying hello. Requests carry a timeout: a
host that dies mid-lab (no FIN ever arrives) is reported as unreachable after it, by name.
"""
from __future__ import annotations

import json
import os
import socket
import threading
from typing import Any, Callable

import paramiko

from emulator.errors import HostError, HostSudoError, HostUnreachableError
from emulator.hosts import protocol
from emulator.topology.hosts_section import Host

Progress = Callable[[str], None]
CONNECT_TIMEOUT = 6.0


def serve_command(host: Host) -> str:
    cmd = f"{host.command} host serve"
    return cmd if host.user == "root" else f"sudo -n {cmd}"


class HostSession:
    """``with HostSession(host) as s: s.request("status", lab="x")``; ``hello`` is what the host said first."""

    def __init__(self, host: Host, connect_timeout: float = CONNECT_TIMEOUT) -> None:
        self.host = host
        self.connect_timeout = connect_timeout
        self.client: paramiko.SSHClient | None = None
        self.channel: paramiko.Channel | None = None
        self.hello: dict[str, Any] = {}
        self._next = 0
        self._stderr: list[bytes] = []
        self._rfile: Any = None

    def __enter__(self) -> "HostSession":
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- connecting -------------------------------------------------------------------------------------
    def connect(self) -> paramiko.SSHClient:
        """A new SSH connection to the host (no channel yet); a ``HostUnreachableError`` naming the fix."""
        h, where = self.host, f"{self.host.user}@{self.host.address}:{self.host.port}"
        client = paramiko.SSHClient()
        known = h.known_hosts or os.path.expanduser("~/.ssh/known_hosts")
        if os.path.exists(known):
            client.load_host_keys(known)
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            client.connect(str(h.address), port=h.port, username=h.user, key_filename=h.key,
                           look_for_keys=h.key is None, allow_agent=h.key is None, timeout=self.connect_timeout,
                           banner_timeout=self.connect_timeout, auth_timeout=self.connect_timeout)
        except paramiko.BadHostKeyException as e:
            client.close()
            raise HostUnreachableError(f"host {h.name} ({where}) presented a host key that differs from the one in "
                                       f"{known}: {e}; fix: if the host was reinstalled, remove its old line "
                                       f"(ssh-keygen -R {h.address} -f {known}) and add the new one", obj=h.name)
        except paramiko.AuthenticationException as e:
            client.close()
            raise HostUnreachableError(f"host {h.name} ({where}) refused the key {h.key or '(default keys)'}: {e}; "
                                       f"fix: add the public key to ~{h.user}/.ssh/authorized_keys there "
                                       "(ssh-copy-id), or set 'key' in the host entry", obj=h.name)
        except paramiko.SSHException as e:
            client.close()
            if "not found in known_hosts" in str(e):
                raise HostUnreachableError(f"host {h.name} ({where}): its host key is not in {known}; fix: check "
                                           f"it and add it: ssh-keyscan -p {h.port} {h.address} >> {known}",
                                           obj=h.name) from None
            raise HostUnreachableError(f"host {h.name} ({where}): SSH failed: {e}; fix: check that sshd runs "
                                       "there and answers", obj=h.name) from None
        except (OSError, socket.timeout) as e:
            client.close()
            raise HostUnreachableError(f"host {h.name} ({where}) is unreachable: {e or type(e).__name__}; fix: "
                                       "check that it is running, its address in the hosts list, and that sshd "
                                       f"listens on port {h.port}", obj=h.name) from None
        return client

    def open(self) -> dict[str, Any]:
        self.client = self.connect()
        transport = self.client.get_transport()
        assert transport is not None
        transport.set_keepalive(5)
        ch = transport.open_session(timeout=self.connect_timeout)
        ch.exec_command(serve_command(self.host))
        self.channel = ch
        self._rfile = ch.makefile("rb")
        self._drainer = threading.Thread(target=self._drain, daemon=True, name=f"stderr-{self.host.name}")
        self._drainer.start()
        ch.settimeout(30)
        try:
            first = self._rfile.readline()
        except socket.timeout:
            first = b""
        msg = json.loads(first) if first.strip() else {}
        if "hello" not in msg:
            self._no_hello(first)
        self.hello = msg["hello"]
        return self.hello

    def _drain(self) -> None:
        assert self.channel is not None
        f = self.channel.makefile_stderr("rb")
        try:
            while True:
                chunk = f.readline()
                if not chunk:
                    return
                if sum(len(c) for c in self._stderr) < 65536:
                    self._stderr.append(chunk)
        except (OSError, EOFError, socket.timeout):
            return

    def _no_hello(self, first: bytes) -> None:
        assert self.channel is not None
        h = self.host
        rc = self.channel.recv_exit_status() if self.channel.exit_status_ready() or not first else -1
        self._drainer.join(2.0)  # stderr may arrive after stdout's EOF: read all of it before judging
        err = (b"".join(self._stderr) + first).decode(errors="replace").strip()
        self.close()
        if h.user != "root" and ("sudo" in err or rc == 127):
            raise HostSudoError(f"host {h.name}: user {h.user} cannot run podlab as root without a password "
                                f"(`sudo -n` said: {err[-200:] or 'exit ' + str(rc)}); fix: install sudo and allow "
                                f"it without a password: echo '{h.user} ALL=(ALL) NOPASSWD: ALL' | sudo tee "
                                f"/etc/sudoers.d/podlab, or connect as root", obj=h.name)
        if rc == 127:
            raise HostError(f"host {h.name}: `{h.command}` is not found there ({err[-200:]}); fix: install podlab "
                            "on the host (scripts/setup.sh), or set 'command' in its host entry", obj=h.name)
        raise HostError(f"host {h.name}: `{serve_command(h)}` ended without greeting (exit {rc}): {err[-300:]}; "
                        "fix: run it there by hand to see why", obj=h.name)

    # -- requests ---------------------------------------------------------------------------------------
    def request(self, op: str, progress: Progress | None = None, timeout: float = 60.0, **args: Any) -> Any:
        if self.channel is None:
            raise HostUnreachableError(f"host {self.host.name}: not connected", obj=self.host.name)
        self._next += 1
        rid = self._next
        try:
            self.channel.settimeout(timeout)
            self.channel.sendall(protocol.encode({"id": rid, "op": op, **args}))
            while True:
                line = self._rfile.readline()
                if not line:
                    raise EOFError("the channel closed")
                msg = json.loads(line)
                if msg.get("id") != rid:
                    continue
                if "progress" in msg:
                    if progress is not None:
                        progress(f"{self.host.name}: {msg['progress']}")
                    continue
                if msg.get("ok"):
                    return msg.get("result")
                protocol.raise_remote(self.host.name, msg.get("error") or {})
        except (OSError, EOFError, socket.timeout, paramiko.SSHException) as e:
            self.close()
            raise HostUnreachableError(f"host {self.host.name} stopped answering during '{op}' "
                                       f"({e or type(e).__name__}); fix: check that it is up, then run the command "
                                       "again (`podlab cleanup` finishes a removal)", obj=self.host.name) from None

    def close(self) -> None:
        if self.channel is not None:
            try:
                self.channel.close()
            except (OSError, EOFError, paramiko.SSHException):
                pass  # the host is gone: nothing to close on its side
            self.channel = None
        if self.client is not None:
            self.client.close()
            self.client = None
