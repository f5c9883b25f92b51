"""The host side starts slim, and a command reuses one session per host (no root, no SSH: pure code paths).

``podlab host serve`` runs once per host for every multi-host verb, so what its start imports is on the path of
every command: the entry must not load the CLI, the netlink stack or paramiko before the first request, and
``down`` must load the teardown but not the CLI, the checks or the API server.
"""
from __future__ import annotations

import subprocess
import sys
import threading
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from emulator.errors import HostUnreachableError
from emulator.hosts import serve, sessions
from emulator.topology.hosts_section import Host

ROOT = Path(__file__).resolve().parents[2]


def _modules_after(code: str) -> set[str]:
    r = subprocess.run([sys.executable, "-c", code + "\nimport sys; print('\\n'.join(sys.modules))"],
                       capture_output=True, text=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    return set(r.stdout.split())


def test_serve_start_imports_neither_cli_nor_netlink_nor_ssh() -> None:
    mods = _modules_after("import emulator.cli.entry, emulator.hosts.serve")
    assert "emulator.hosts.serve" in mods
    heavy = {"emulator.cli.main", "emulator.plugins", "emulator.lab.builder", "emulator.lab.teardown", "pyroute2",
             "paramiko", "emulator.check", "emulator.apiserver.server", "yaml"}
    assert not heavy & mods, heavy & mods


def test_down_loads_the_teardown_only() -> None:
    mods = _modules_after("import emulator.hosts.serve\nfrom emulator.lab import teardown")
    assert "emulator.lab.teardown" in mods
    assert not {"emulator.cli.main", "emulator.check", "emulator.lab.builder", "paramiko"} & mods


def test_components_are_installed_before_up_and_down_only() -> None:
    assert serve.NEEDS_COMPONENTS == {"up", "down"}
    assert set(serve.OPS) >= serve.NEEDS_COMPONENTS


class FakeSession:
    """Stands in for the SSH session (not for any kernel object): counts how often a host is connected to."""
    opened: list[str] = []
    refuse: set[str] = set()

    def __init__(self, host: Host) -> None:
        self.host, self.channel = host, None

    def open(self) -> dict:
        FakeSession.opened.append(self.host.name)
        if self.host.name in FakeSession.refuse:
            raise HostUnreachableError(f"host {self.host.name} is unreachable", obj=self.host.name)
        self.channel = object()
        return {}

    def close(self) -> None:
        self.channel = None


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> type[FakeSession]:
    FakeSession.opened, FakeSession.refuse = [], set()
    monkeypatch.setattr(sessions, "HostSession", FakeSession)
    return FakeSession


def _host(name: str, i: int) -> Host:
    return Host(name=name, address=IPv4Address(f"192.168.57.{10 + i}"))


def test_one_session_per_host_per_command(fake: type[FakeSession]) -> None:
    hosts = [_host(f"vm{i}", i) for i in range(1, 4)]
    with sessions.Sessions() as ss:
        threads = [threading.Thread(target=lambda h=h: [ss.get(h) for _ in range(5)]) for h in hosts * 3]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert ss.get(hosts[0]) is ss.get(hosts[0])
    assert sorted(fake.opened) == ["vm1", "vm2", "vm3"]


def test_a_failed_host_fails_every_later_question_without_retrying(fake: type[FakeSession]) -> None:
    fake.refuse = {"vm2"}
    h = _host("vm2", 2)
    with sessions.Sessions() as ss:
        for _ in range(3):
            with pytest.raises(HostUnreachableError, match="vm2"):
                ss.get(h)
        s = ss.get(_host("vm1", 1))
        s.close()  # a request on it failed: the session is closed
        with pytest.raises(HostUnreachableError, match="stopped answering earlier"):
            ss.get(_host("vm1", 1))
    assert fake.opened == ["vm2", "vm1"]


def test_warmed_sessions_serve_the_verb_and_close_with_the_command(fake: type[FakeSession]) -> None:
    hosts = [_host(f"vm{i}", i) for i in range(1, 3)]
    sessions.warm(hosts)
    try:
        with sessions.for_command() as ss:
            assert {ss.get(h).host.name for h in hosts} == {"vm1", "vm2"}
        with sessions.for_command() as again:  # a later question of the same command: the same sessions
            assert again is ss and ss.get(hosts[0]).channel is not None
    finally:
        sessions.close_warm()
    assert sorted(fake.opened) == ["vm1", "vm2"]
    with sessions.for_command() as own:  # no warmed sessions: the block's own, closed at its end
        own.get(hosts[0])
    assert own._open == {}


def test_the_entry_finds_the_verb_after_global_flags() -> None:
    from emulator.cli import entry
    assert entry._verb(["--lab", "x", "down"]) == "down" and entry._verb(["get", "pods", "--lab", "y"]) == "get"
    assert entry._verb(["host", "serve"]) == "host"
