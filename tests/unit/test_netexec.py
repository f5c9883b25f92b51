"""Tests of the built-in agnhost-like echo server (emulator.images.netexec).

Each server runs as a subprocess bound to 127.0.0.1 on free ports; nothing here talks to any other address.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from emulator.images import netexec

ROOT = Path(__file__).resolve().parents[2]
LOOPBACK = "127.0.0.1"


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


@dataclass
class Server:
    proc: subprocess.Popen
    http_port: int
    udp_port: int

    def url(self, path: str) -> str:
        return f"http://{LOOPBACK}:{self.http_port}{path}"

    def get(self, path: str, method: str = "GET", data: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, str, dict[str, str]]:
        req = urllib.request.Request(self.url(path), data=data, method=method, headers=headers or {})
        opener = urllib.request.build_opener(NoRedirect)
        try:
            with opener.open(req, timeout=10) as resp:
                return resp.status, resp.read().decode(), dict(resp.headers)
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(), dict(exc.headers)

    def udp(self, payload: bytes, expect_reply: bool = True) -> bytes | None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((LOOPBACK, 0))
            s.settimeout(5 if expect_reply else 0.5)
            s.sendto(payload, (LOOPBACK, self.udp_port))
            try:
                return s.recv(65535)
            except TimeoutError:
                return None


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def start(*extra: str, env: dict[str, str] | None = None) -> Server:
    for _ in range(5):  # a free port can be taken between the probe and the bind: try again
        http_port, udp_port = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_DGRAM)
        args = [sys.executable, "-m", "emulator.images.netexec", "netexec", f"--http-port={http_port}",
                f"--udp-port={udp_port}", f"--bind-address={LOOPBACK}", *extra]
        proc = subprocess.Popen(args, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        server = Server(proc, http_port, udp_port)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if server.get("/healthz")[0] == 200:
                    return server
            except OSError:
                time.sleep(0.02)
        stop(server)
    raise RuntimeError(f"netexec did not start: {proc.stderr.read().decode() if proc.stderr else ''}")


def stop(server: Server) -> tuple[str, str]:
    if server.proc.poll() is None:
        server.proc.kill()
    out, err = server.proc.communicate(timeout=10)
    return out.decode(), err.decode()


@pytest.fixture
def server() -> Iterator[Server]:
    s = start(env={"POD_NAME": "web-1"})
    try:
        yield s
    finally:
        stop(s)


def test_hostname_endpoints(server: Server) -> None:
    for path in ("/", "/hostname", "/hostName", "/no-such-path"):
        status, body, headers = server.get(path)
        assert (status, body) == (200, "web-1"), path
        assert headers["Content-Type"] == "text/plain; charset=utf-8"


def test_clientip(server: Server) -> None:
    status, body, _ = server.get("/clientip")
    host, port = body.rsplit(":", 1)
    assert status == 200 and host == LOOPBACK and 0 < int(port) < 65536


def test_echo_small_large_and_code(server: Server) -> None:
    assert server.get("/echo?msg=hello%20world")[:2] == (200, "hello world")
    big = "42" * 1000
    assert server.get(f"/echo?msg={big}")[:2] == (200, big)
    assert server.get("/echo?msg=nope&code=404")[:2] == (404, "nope")
    assert server.get("/echo?msg=x&code=abc")[1] == "argument 'code' must be an integer or empty, got \"abc\"\n"
    form = server.get("/echo", "POST", b"msg=from-body", {"Content-Type": "application/x-www-form-urlencoded"})
    assert form[:2] == (200, "from-body")


def test_healthz(server: Server) -> None:
    assert server.get("/healthz")[:2] == (200, "ok")


def test_redirect(server: Server) -> None:
    status, _, headers = server.get("/redirect?location=/echo%3Fmsg%3Dx&code=307")
    assert status == 307 and headers["Location"] == "/echo?msg=x"


def test_dial_http_to_itself(server: Server) -> None:
    status, body, _ = server.get(f"/dial?host={LOOPBACK}&port={server.http_port}&protocol=http"
                                 "&request=hostname&tries=3")
    assert status == 200 and json.loads(body) == {"responses": ["web-1"] * 3}
    echo = json.loads(server.get(f"/dial?host={LOOPBACK}&port={server.http_port}&request=echo%3Fmsg%3Dhi")[1])
    assert echo == {"responses": ["hi"]}


def test_dial_udp_to_itself(server: Server) -> None:
    body = server.get(f"/dial?host={LOOPBACK}&port={server.udp_port}&protocol=udp&request=hostname&tries=2")[1]
    assert json.loads(body) == {"responses": ["web-1", "web-1"]}
    body = server.get(f"/dial?host={LOOPBACK}&port={server.udp_port}&protocol=udp&request=echo%20abc")[1]
    assert json.loads(body) == {"responses": ["abc"]}


def test_dial_errors(server: Server) -> None:
    closed = free_port(socket.SOCK_STREAM)
    body = server.get(f"/dial?host={LOOPBACK}&port={closed}&request=hostname")[1]
    out = json.loads(body)
    assert "responses" not in out and len(out["errors"]) == 1  # as agnhost: a key only when it has content
    assert "connection refused" in out["errors"][0] and "\\u003e" not in body
    udp_closed = free_port(socket.SOCK_DGRAM)
    body = server.get(f"/dial?host={LOOPBACK}&port={udp_closed}&protocol=udp&request=hostname")[1]
    assert "\\u003e" in body  # Go's json escapes the ">" of "local->remote"
    assert json.loads(body)["errors"][0].startswith("reading from udp connection failed. err:'read udp 127.0.0.1:")
    assert server.get(f"/dial?host={LOOPBACK}&port=1")[:2] == (400, "request parameter not specified. <nil>\n")
    assert server.get(f"/dial?host={LOOPBACK}&port=1&request=x&tries=z")[0] == 400
    assert server.get(f"/dial?host={LOOPBACK}&port=1&request=x&protocol=sctp")[0] == 400
    assert server.get(f"/dial?host={LOOPBACK}&port=notaport&request=x")[0] == 400


def test_udp_commands(server: Server) -> None:
    assert server.udp(b"hostname") == b"web-1"
    assert server.udp(b"  HOSTNAME\n") == b"web-1"  # trimmed and case-insensitive, as agnhost
    assert server.udp(b"echo hello") == b"hello"
    host, port = server.udp(b"clientip").decode().rsplit(":", 1)
    assert host == LOOPBACK and int(port) > 0
    assert server.udp(b"what is this", expect_reply=False) is None


def test_udp_large_echo(server: Server) -> None:
    payload = "42" * 1000  # the e2e test's 2000 bytes
    assert server.udp(f"echo {payload}".encode()) == payload.encode()
    huge = "7" * 65000
    assert server.udp(f"echo {huge}".encode()) == huge.encode()


def test_requests_are_logged_on_stdout(server: Server) -> None:
    server.get("/hostname")
    server.udp(b"hostname")
    out, _ = stop(server)
    assert '"GET /healthz HTTP/1.1" 200' in out and '"GET /hostname HTTP/1.1" 200' in out
    assert "Sending udp hostName response" in out
    assert "Started HTTP server" in out


def test_exit_with_code() -> None:
    s = start()
    try:
        status = None
        try:
            status = s.get("/exit?code=3")[0]
        except OSError:
            pass  # the process may be gone before the answer is read
        assert s.proc.wait(timeout=10) == 3
        assert status in (200, None)
    finally:
        stop(s)


def test_exit_graceful_and_bad_arguments() -> None:
    s = start()
    try:
        assert s.get("/exit?timeout=banana")[1].startswith("argument 'timeout' must be a valid golang duration")
        assert s.get("/exit?code=x")[1].startswith("argument 'code' must be an integer")
        assert s.get("/exit?code=4&timeout=2s")[0] == 200
        assert s.proc.wait(timeout=10) == 4
    finally:
        stop(s)


def test_flags_unknown_ignored_and_hostname_default() -> None:
    s = start("--some-agnhost-flag=1", "--another", "value")
    try:
        assert s.get("/hostname")[1] == (os.environ.get("POD_NAME") or socket.gethostname())
        assert s.udp(b"hostname") is not None
    finally:
        _, err = stop(s)
    assert "ignoring unknown flag '--some-agnhost-flag=1'" in err and "'--another'" in err


def test_http_override() -> None:
    s = start("--http-override=/echo?msg=overridden")
    try:
        assert s.get("/hostname")[1] == "overridden"
    finally:
        stop(s)


def test_udp_disabled_is_healthy() -> None:
    s = start("--udp-port=-1")
    try:
        assert s.get("/healthz")[0] == 200 and s.udp(b"hostname", expect_reply=False) is None
    finally:
        stop(s)


def test_parse_args_and_durations() -> None:
    o = netexec.parse_args(["netexec", "--http-port", "9000", "--udp-port=9001",
                            "--udp-listen-addresses=127.0.0.1, 127.0.0.2"])
    assert (o.http_port, o.udp_port, o.udp_listen_addresses) == (9000, 9001, ["127.0.0.1", "127.0.0.2"])
    assert netexec.parse_args([]).http_port == 8080 and netexec.parse_args([]).udp_port == 8081
    with pytest.raises(SystemExit):
        netexec.parse_args(["--http-port=abc"])
    with pytest.raises(SystemExit):
        netexec.parse_args(["serve"])
    assert netexec.parse_duration("1m30s") == 90 and netexec.parse_duration("") == 0
    assert netexec.parse_duration("250ms") == pytest.approx(0.25)
    with pytest.raises(ValueError):
        netexec.parse_duration("5")
