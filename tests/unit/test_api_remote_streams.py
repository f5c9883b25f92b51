"""The relay of a multi-host lab's streaming verbs without hosts (emulator.hosts.api_streams, hosts.serve_stream):
the host's command line, the host's first line, the pipes that join an SSH channel to an exec session, window
sizes, and how the host side sees its channel close."""
from __future__ import annotations

import os
import select
import shlex
import threading
import time
from ipaddress import IPv4Address

import pytest

from emulator.apiserver import exec as pexec, portforward
from emulator.apiserver.status import ApiError
from emulator.hosts import api_streams, serve_stream
from emulator.topology.hosts_section import Host


def host(user: str = "root") -> Host:
    return Host(name="h1", address=IPv4Address("192.0.2.1"), user=user, key=None, port=22, known_hosts=None,
                command="podlab")


class FakeChannel:
    """What ``RemoteCommand`` and ``first_line`` use of a paramiko channel."""

    def __init__(self, out: bytes = b"", err: bytes = b"", code: int = 0) -> None:
        self.out, self.err, self.code = bytearray(out), bytearray(err), code
        self.sent = bytearray()
        self.eof_sent = self.closed = False
        self.sizes: list[tuple[int, int]] = []
        self.done = threading.Event()

    def recv(self, n: int) -> bytes:
        data, self.out[:n] = bytes(self.out[:n]), b""
        return data

    def recv_stderr(self, n: int) -> bytes:
        data, self.err[:n] = bytes(self.err[:n]), b""
        return data

    def recv_stderr_ready(self) -> bool:
        return bool(self.err)

    def settimeout(self, t: float | None) -> None:
        pass

    def sendall(self, data: bytes) -> None:
        self.sent += data

    def shutdown_write(self) -> None:
        self.eof_sent = True
        self.done.set()

    def recv_exit_status(self) -> int:
        self.done.wait(5)
        return self.code

    def resize_pty(self, width: int, height: int) -> None:
        self.sizes.append((width, height))

    def close(self) -> None:
        self.closed = True
        self.done.set()


def read_all(fd: int) -> bytes:
    out = b""
    while chunk := os.read(fd, 65536):
        out += chunk
    return out


def test_the_hosts_command_line_carries_the_spec_quoted() -> None:
    spec = {"op": "exec", "query": {"command": ["sh", "-c", "echo 'it''s' \"$HOME\"; exit 3"]}}
    cmd = api_streams.stream_command(host(), spec)
    words = shlex.split(cmd)
    assert words[:3] == ["podlab", "host", "stream"] and len(words) == 4
    import json
    assert json.loads(words[3]) == spec
    assert api_streams.stream_command(host("student"), spec).startswith("sudo -n podlab host stream ")


def test_first_line_reads_only_the_hosts_line() -> None:
    ch = FakeChannel(b'{"ok":true}\nthe session\'s bytes')
    assert api_streams.first_line(ch, host()) == {"ok": True}
    assert bytes(ch.out) == b"the session's bytes"
    bad = FakeChannel(b"Traceback (most recent call last)", b"ModuleNotFoundError: emulator")
    with pytest.raises(ApiError) as e:
        api_streams.first_line(bad, host())
    assert e.value.code == 500 and "host h1 could not start the session" in e.value.message
    assert "ModuleNotFoundError" in e.value.message and bad.closed


def test_a_status_the_host_answered_is_raised_as_it_is() -> None:
    ch = FakeChannel()
    with pytest.raises(ApiError) as e:
        api_streams.checked(ch, {"error": {"code": 400, "reason": "BadRequest", "message": "container x is not "
                                                                                            "valid for pod p"}})
    assert (e.value.code, e.value.reason, e.value.message) == (400, "BadRequest", "container x is not valid for pod p")
    assert ch.closed
    assert api_streams.checked(FakeChannel(), {"ok": True}) == {"ok": True}


def test_remote_command_joins_the_channel_to_pipes() -> None:
    ch = FakeChannel(b"out", b"err", code=3)
    cmd = api_streams.RemoteCommand(ch, host(), stdin=True, stdout=True, stderr=True,  # type: ignore[arg-type]
                                    tty=False)
    assert sorted(cmd.outputs.values()) == [pexec.STDOUT, pexec.STDERR]
    assert cmd.stdin is not None
    os.write(cmd.stdin, b"typed")
    os.close(cmd.stdin)  # the client closed stdin: the channel's EOF
    got = {ch_no: read_all(fd) for fd, ch_no in cmd.outputs.items()}
    assert got == {pexec.STDOUT: b"out", pexec.STDERR: b"err"}
    assert select.select([cmd.fileno()], [], [], 5)[0] == [cmd.fileno()]
    assert cmd.reap() == 3 and not cmd.lost
    assert bytes(ch.sent) == b"typed" and ch.eof_sent
    cmd.resize(b'{"Width":111,"Height":33}')
    cmd.resize(b"not a size")
    assert ch.sizes == [(111, 33)]
    for fd in cmd.outputs:
        os.close(fd)
    cmd.close()
    assert ch.closed


def test_a_channel_that_closes_without_exit_status_is_lost() -> None:
    ch = FakeChannel(code=-1)
    cmd = api_streams.RemoteCommand(ch, host(), stdin=False, stdout=True, stderr=False,  # type: ignore[arg-type]
                                    tty=True)
    assert list(cmd.outputs.values()) == [pexec.STDOUT]  # a tty: one output, no stderr
    cmd.kill()
    assert select.select([cmd.fileno()], [], [], 5)[0]
    assert cmd.reap() == 1 and cmd.lost
    for fd in cmd.outputs:
        os.close(fd)
    cmd.close()


def test_window_sizes_of_channel_4() -> None:
    assert pexec.size_of(b'{"Width":80,"Height":24}') == (80, 24)
    assert pexec.size_of(b'{"Width":0,"Height":24}') is None
    assert pexec.size_of(b'{"Width":99999,"Height":24}') == (65535, 24)
    assert pexec.size_of(b"[]") is None


def test_the_host_side_sees_its_channel_close() -> None:
    r, w = os.pipe()
    try:
        assert not serve_stream.hung_up(w)
        os.close(r)
        deadline = time.monotonic() + 2
        while not serve_stream.hung_up(w):
            assert time.monotonic() < deadline
        assert not serve_stream.write_all(w, b"x")  # EPIPE: the channel is gone
    finally:
        os.close(w)


def test_a_port_forward_target_dials_through_its_relay() -> None:
    calls: list[int] = []

    def dial(port: int):
        calls.append(port)
        raise OSError(111, "IPv4: dial tcp4 127.0.0.1:81: connect: connection refused")
    t = portforward.Target("web-1", "uid", "", dial=dial)
    with pytest.raises(OSError, match="connection refused"):
        t.connect(81)
    assert calls == [81]
