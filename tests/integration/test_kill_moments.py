"""A podlab command SIGKILLed at any moment leaves nothing once ``cleanup``/``down`` has run.

``up`` of a small lab with Services, a Deployment and the external host is killed at random moments of its own
bring-up, each time followed by ``podlab cleanup`` (or ``down`` where it had finished); ``capture`` and ``exec``
are killed at random moments on a running lab, which ``down`` then removes. What "nothing" means is in
``tests/integration/killing.py``. The number of kills is a parameter (environment ``PODLAB_KILLS_UP``,
``PODLAB_KILLS_CAPTURE``, ``PODLAB_KILLS_EXEC``), small by default so the module stays short;
``scripts/kill_moments.py`` runs the 100-kill acceptance.
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import time

import pytest

from emulator.lab import teardown
from emulator.proc import journal
from emulator.proc.lifecycle import alive
from emulator.state.paths import LabPaths
from tests.integration import killing
from tests.integration.conftest import unique_name

KILLS_UP = int(os.environ.get("PODLAB_KILLS_UP", "25"))
KILLS_CAPTURE = int(os.environ.get("PODLAB_KILLS_CAPTURE", "15"))
KILLS_EXEC = int(os.environ.get("PODLAB_KILLS_EXEC", "18"))
SEED = int(os.environ.get("PODLAB_KILL_SEED", str(int(time.time()))))
UNDISTURBED = 900.0  # "kill it after" for the run that must not be killed: only a hung `up` reaches it

LAB = """version: 1
name: x
nodes: [{name: node-1}, {name: node-2}]
kubeProxy: {mode: iptables}
external: {}
pods:
  - {name: client, node: node-1, containers: [{name: c, image: netexec}]}
  - {name: p2, node: node-2}
deployments:
  - name: web
    replicas: 2
    labels: {app: web}
    containers: [{name: web, image: netexec, ports: [{containerPort: 8080, name: http}]}]
services:
  - name: web
    selector: {app: web}
    ports: [{name: http, port: 80, targetPort: http}]
"""


@pytest.fixture
def reaper():
    killing.subreaper(True)
    try:
        yield
    finally:
        killing.subreaper(False)
        killing.reap()


def _describe(left: killing.Leftovers) -> str:
    return (f"namespaces {left.namespaces[:5]}, state dir {left.state}, recorded alive {left.recorded}, "
            f"in lab namespaces {left.in_lab_ns}, descendants {left.descendants}")


def test_up_killed_at_random_moments_leaves_nothing(tmp_path, reaper) -> None:
    topo = tmp_path / "lab.yaml"
    topo.write_text(LAB)
    first = unique_name("ku")
    try:
        # an undisturbed run, to learn how long `up` takes: never killed (a loaded machine makes it minutes)
        full = killing.kill_up_once(topo, first, at=UNDISTURBED)
    finally:
        teardown.destroy(first)
    assert full.finished and full.left.clean, _describe(full.left)
    span = full.exited_at or 1.0
    start = max((full.record_at or 0.0) - 0.05, 0.0)  # before the record: the interpreter is still importing
    failures = []
    for i, at in enumerate(killing.moments(KILLS_UP, start, span, SEED)):
        name = unique_name("ku")
        try:
            res = killing.kill_up_once(topo, name, at)
        finally:
            teardown.destroy(name)
        if not res.left.clean:
            failures.append(f"kill {i} at {at:.3f}s (seed {SEED}): {_describe(res.left)}")
    assert not failures, "\n".join(failures)


def _tool_procs(lab: str) -> list[tuple[int, str]]:
    """Processes in the lab's namespaces that descend from this test (tools it started, not the lab's own)."""
    inodes = killing.lab_inodes(lab)
    mine = {pid for pid, _ in killing.descendants()}
    return [(pid, comm) for pid, comm in killing.in_namespaces(inodes) if pid in mine]


def _unrecorded(lab: str, settle: float = 2.0) -> list[tuple[int, str]]:
    """Tools in the lab's namespaces that neither the lab's journal names nor descend from a process it names
    (a shell's own children), given ``settle`` seconds to record themselves."""
    deadline = time.monotonic() + settle
    while True:
        # the processes first, then the journal: a process records itself before it enters a lab namespace, so
        # every one the scan finds there is already named in a journal read after it (read before, a tool that
        # started during the scan, which a loaded machine makes seconds long, would look unrecorded)
        tools = _tool_procs(lab)
        named = {e.pid for e in journal.entries(LabPaths(lab).proc_journal) if alive(e.pid, e.start)}
        parent = {pid: ppid for pid, (ppid, _s, _c) in killing.ppids().items()}

        def covered(pid: int) -> bool:
            while pid > 1:
                if pid in named:
                    return True
                pid = parent.get(pid, 0)
            return False
        bad = [(pid, comm) for pid, comm in tools if not covered(pid)]
        if not bad or time.monotonic() > deadline:
            return bad
        time.sleep(0.05)


def _kill_loop(lab_name: str, argv_for, kills: int, span: float, leave_some: bool,
               left: list[subprocess.Popen] | None = None) -> list[str]:
    """Start and SIGKILL ``kills`` commands (every third one left running if ``leave_some``, and appended to
    ``left``); the problems found after each kill."""
    rnd = random.Random(SEED)
    problems = []
    for i in range(kills):
        proc = killing.popen_podlab("--lab", lab_name, *argv_for(i))
        at = rnd.uniform(0.0, span)
        time.sleep(at)
        if not (leave_some and i % 3 == 2):  # every third one is left running for `down` to end
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        elif left is not None:
            left.append(proc)
        bad = _unrecorded(lab_name)
        if bad:
            problems.append(f"after kill {i} at {at:.3f}s (seed {SEED}): unrecorded {bad}")
    return problems


def _down_leaves_nothing(name: str, before: set[int], running: list[subprocess.Popen] = ()) -> killing.Leftovers:
    """``down``, then what is left. ``running`` are commands left running through it: they must end by
    themselves once ``down`` has ended their processes (awaited without a clock of ours: a command that needs a
    moment of CPU to finish gets it later on a loaded machine; one that never ends fails the test)."""
    inodes = killing.lab_inodes(name)
    procs = killing.recorded(name)
    r = killing.podlab("down", name)
    assert r.returncode == 0, r.stdout + r.stderr
    stuck = []
    for proc in running:
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            stuck.append(proc.pid)
    assert not stuck, f"commands left running did not end after down: {stuck}"
    return killing.leftovers(name, inodes, procs, before)


def _wait_until(cond, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _lab(tmp_path) -> str:
    name = unique_name("kt")
    topo = tmp_path / "lab.yaml"
    topo.write_text(LAB)
    r = killing.podlab("up", str(topo), "--name", name)
    assert r.returncode == 0, r.stdout + r.stderr
    return name


def test_capture_killed_at_random_moments_then_down_leaves_nothing(tmp_path, reaper) -> None:
    name = _lab(tmp_path)
    before = {pid for pid, _ in killing.descendants()}
    try:
        out = tmp_path / "c.pcapng"
        running: list[subprocess.Popen] = []
        problems = _kill_loop(name, lambda i: ["capture", "client", "node/node-1:cni0", "underlay", "-w", str(out),
                                               "-d", "60"], KILLS_CAPTURE, span=1.5, leave_some=True, left=running)
        # some are left capturing when `down` comes: the captures left running start their tcpdumps once they
        # get the CPU for their imports, which on a loaded machine is after the loop has ended
        assert _wait_until(lambda: [c for _p, c in _tool_procs(name)].count("tcpdump") >= 3, timeout=120), \
            f"no capture left running started its tcpdumps: {[p.poll() for p in running]}"
        left = _down_leaves_nothing(name, before, running)
    finally:
        teardown.destroy(name)
    assert not problems, "\n".join(problems)
    assert left.clean, _describe(left)


def test_exec_killed_at_random_moments_then_down_leaves_nothing(tmp_path, reaper) -> None:
    name = _lab(tmp_path)
    before = {pid for pid, _ in killing.descendants()}
    commands = [["exec", "client", "--", "sleep", "60"],  # a pod with /etc/netns files: through ip netns exec
                ["exec", "node/node-2", "--", "sleep", "60"],  # setns in place
                ["exec", "p2", "--", "sh", "-c", "sleep 60 & sleep 61; wait"]]  # a child of its own
    try:
        problems = _kill_loop(name, lambda i: commands[i % len(commands)], KILLS_EXEC, span=1.2, leave_some=True)
        assert _tool_procs(name)  # some were left running
        left = _down_leaves_nothing(name, before)
    finally:
        teardown.destroy(name)
    assert not problems, "\n".join(problems)
    assert left.clean, _describe(left)
