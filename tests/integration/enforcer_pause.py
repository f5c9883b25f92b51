"""Hold a node's NetworkPolicy enforcer still while a test breaks its table by hand and looks at the damage.

The enforcer repairs a changed table at its next health check (every ``enforcer.HEALTH_PERIOD`` seconds); a test
that removes a rule and then runs ``check netpol`` or ``trace`` (seconds each on a loaded machine) must see the
damage before the repair. ``paused`` stops the enforcer process named by its status file (PID and start time,
never by name) just after a health check, when it sleeps holding nothing, and lets it go on at the end — also
when the test fails — so the repair that follows is the one under test.
"""
from __future__ import annotations

import os
import signal
import time
from contextlib import contextmanager
from typing import Iterator

from emulator.netpol import enforcer
from emulator.proc.lifecycle import alive
from emulator.state.store import read_json


def after_a_health_check(lab, node: str) -> None:
    st = enforcer.status_path(lab.paths, node)
    last = read_json(st)["lastHealth"]
    deadline = time.monotonic() + enforcer.HEALTH_PERIOD + 5
    while read_json(st)["lastHealth"] == last and time.monotonic() < deadline:
        time.sleep(0.02)


@contextmanager
def paused(lab, node: str) -> Iterator[None]:
    after_a_health_check(lab, node)
    st = read_json(enforcer.status_path(lab.paths, node))
    pid = int(st["pid"])
    assert alive(pid, st.get("start")), f"the enforcer of {node} (PID {pid}) is not running"
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        if alive(pid, st.get("start")):
            os.kill(pid, signal.SIGCONT)
