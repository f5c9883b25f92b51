"""The lab's process journal: a process records itself before it runs, and a closed journal starts nothing."""
from __future__ import annotations

import os
import subprocess

import pytest

from emulator.errors import ProcessError
from emulator.proc import journal
from emulator.proc.daemon import spawn
from emulator.proc.lifecycle import start_time


def test_enter_records_the_calling_process(tmp_path) -> None:
    j = tmp_path / "procs.journal"
    journal.create(j)
    journal.enter(j, "a test\nwith  spaces", kind="tool")
    me = os.getpid()
    assert journal.entries(j) == [journal.Entry(me, start_time(me), "tool", "a test with spaces")]


def test_nothing_starts_once_the_journal_is_closed(tmp_path) -> None:
    j = tmp_path / "procs.journal"
    journal.create(j)
    journal.enter(j, "first")
    closed = journal.close(j)
    assert [e.what for e in closed] == ["first"] and not j.exists()
    with pytest.raises(journal.JournalClosed):
        journal.enter(j, "second")
    with pytest.raises(journal.JournalClosed):
        journal.enter(tmp_path / "never-created.journal", "third")
    assert [e.what for e in journal.entries(j)] == ["first"]  # a closed journal is still read


def test_a_close_between_append_and_check_stops_the_process(tmp_path, monkeypatch) -> None:
    """The window the protocol is about: teardown closes (renames) the journal right after the child appended;
    the child sees it and must not run. Teardown's read of the closed file names the child too."""
    j = tmp_path / "procs.journal"
    journal.create(j)
    real_write = os.write
    seen: list[list[journal.Entry]] = []

    def write_then_close(fd: int, data: bytes) -> int:
        n = real_write(fd, data)
        seen.append(journal.close(j))
        return n
    monkeypatch.setattr(os, "write", write_then_close)
    with pytest.raises(journal.JournalClosed):
        journal.enter(j, "late")
    assert [e.what for e in seen[0]] == ["late"]


def test_a_second_close_keeps_the_first_entries(tmp_path) -> None:
    j = tmp_path / "procs.journal"
    journal.create(j)
    journal.enter(j, "one")
    journal.close(j)
    journal.close(j)
    assert [e.what for e in journal.entries(j)] == ["one"]


def test_wrapped_program_records_itself_then_runs_with_the_same_pid(tmp_path) -> None:
    j = tmp_path / "procs.journal"
    journal.create(j)
    argv = journal.wrap(j, "stat reader", ["sh", "-c", "echo $$; cut -d' ' -f22 /proc/$$/stat"])
    r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stderr
    pid, started = (int(x) for x in r.stdout.split())
    assert journal.entries(j) == [journal.Entry(pid, started, "tool", "stat reader")]


def test_wrapped_program_keeps_its_output_streams_and_exit_status(tmp_path) -> None:
    """tcpdump says "listening on" on stderr: the shim's own quiet open must not silence the program's stderr."""
    j = tmp_path / "procs.journal"
    journal.create(j)
    argv = journal.wrap(j, "talker", ["sh", "-c", "echo to-out; echo to-err >&2; ls /proc/self/fd; exit 3"])
    r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    assert (r.returncode, r.stderr) == (3, "to-err\n")
    assert r.stdout.splitlines()[0] == "to-out" and "9" not in r.stdout.splitlines()[1:]  # no journal fd leaks


def test_wrapped_program_does_not_run_when_the_journal_is_closed(tmp_path) -> None:
    j = tmp_path / "procs.journal"
    journal.create(j)
    journal.close(j)
    marker = tmp_path / "ran"
    r = subprocess.run(journal.wrap(j, "x", ["touch", str(marker)]), capture_output=True, text=True, timeout=10)
    assert r.returncode == journal.CLOSED_STATUS and "closed" in r.stderr
    assert not marker.exists() and journal.entries(j) == []


def test_daemon_does_not_start_in_a_closed_lab(tmp_path) -> None:
    j = tmp_path / "procs.journal"
    marker = tmp_path / "ran"
    with pytest.raises(ProcessError, match="failed to start"):
        spawn(lambda: marker.write_text("ran"), tmp_path / "d.log", journal=j, what="too late")
    assert not marker.exists() and "too late" in (tmp_path / "d.log").read_text()


def test_unknown_kind_is_refused(tmp_path) -> None:
    with pytest.raises(ValueError):
        journal.wrap(tmp_path / "j", "x", ["true"], kind="whatever")
