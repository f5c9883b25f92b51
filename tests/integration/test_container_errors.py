"""A container whose command cannot start is the container's failure, reported as a kubelet reports it: the pod
keeps its sandbox and IP, the container waits with ``RunContainerError`` (message ``exec: "nosuch": executable
file not found in $PATH``) and then ``CrashLoopBackOff``; the CNI's "failed to set up pod sandbox" is not used."""
from __future__ import annotations

import time

from emulator.lab.api import Lab
from emulator.netlink import netns
from tests.integration.conftest import lab_fixture

TOPO = """version: 1
name: x
nodes: [{name: node-1}]
pods:
  - {name: ok, node: node-1}
"""


lab = lab_fixture(TOPO)


def _status(lab: Lab, pod: str, want, timeout: float = 15.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        st = lab.store.get_status("pods", pod) or {}
        if want(st) or time.monotonic() > deadline:
            return st
        time.sleep(0.05)


def _waiting(st: dict) -> dict:
    return ((st.get("containerStatuses") or [{}])[0].get("state") or {}).get("waiting") or {}


def test_missing_executable_is_run_container_error_then_crash_loop(lab: Lab) -> None:
    assert lab.apply_pod({"name": "bad", "node": "node-1", "containers": [{"name": "c", "image": "busybox",
                                                                            "command": ["nosuch"]}]}) \
        == "pod/bad created"
    st = _status(lab, "bad", lambda s: bool(_waiting(s)))
    w = _waiting(st)
    assert w.get("reason") in ("RunContainerError", "CrashLoopBackOff"), st
    assert st["podIP"] and st["sandbox"]["netns"] and netns.exists(st["sandbox"]["netns"]), st
    if w["reason"] == "RunContainerError":
        assert w["message"] == 'exec: "nosuch": executable file not found in $PATH', w
        assert st["phase"] == "Pending"
    st = _status(lab, "bad", lambda s: _waiting(s).get("reason") == "CrashLoopBackOff")
    cs = st["containerStatuses"][0]
    assert _waiting(st)["reason"] == "CrashLoopBackOff", st
    assert cs["lastState"]["terminated"]["reason"] == "StartError"
    assert 'exec: "nosuch": executable file not found in $PATH' in cs["lastState"]["terminated"]["message"]
    assert "sandbox" not in (cs["lastState"]["terminated"]["message"])
    ip, tries = st["podIP"], cs["restartCount"]
    again = _status(lab, "bad", lambda s: (s.get("containerStatuses") or [{}])[0].get("restartCount", 0) > tries)
    assert again["containerStatuses"][0]["restartCount"] > tries, again  # a back-off later, the same sandbox
    assert again["podIP"] == ip and again["sandbox"]["id"] == st["sandbox"]["id"]
    lab.delete_pod("bad")
