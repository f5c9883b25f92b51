"""Container supervision in a Running pod: notice a dead container, restart it with back-off (restartPolicy
Always), and say why in the status, as the kubelet does (``CrashLoopBackOff`` with the last terminated state).

A container is dead when its recorded PID no longer belongs to the process we started (PID + start time). If
the agent is that process's parent it also knows the exit code (from ``waitpid``); after an agent restart the
containers are no longer its children, so the code is unknown and reported as such. The message of a failed
container is the last line of its log — e.g. "OSError: [Errno 98] Address already in use" when two containers
of a pod bind one port, which is how that mistake shows in a real pod too.

A container ends with everything it started, as a real one does (its PID namespace dies with its first
process): a container is a process group of its own (started with ``setsid``), so once the agent has reaped its
first process, what is left in that group (a shell's ``sleep &``) is killed then, instead of living on under
init outside any record. The group's number stays reserved while any member lives, so it names only them.
"""
from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field

from emulator.proc import lifecycle
from emulator.agent.pods import container_env, pod_phase, run_container
from emulator.state import events
from emulator.state.manifests import now
from emulator.state.paths import LabPaths
from emulator.netlink import netns

BACKOFF_START = 1.0
BACKOFF_MAX = 30.0


@dataclass
class Supervisor:
    paths: LabPaths
    node: str
    host_ip: str
    exit_codes: dict[int, int] = field(default_factory=dict)
    backoff: dict[tuple[str, str], tuple[float, float]] = field(default_factory=dict)  # → (next try, delay)

    def reaped(self, items: list[tuple[int, int]]) -> None:
        for pid, code in items:
            self.exit_codes[pid] = code
            try:
                os.killpg(pid, signal.SIGKILL)  # what the container left behind (a child that led no group: none)
            except (ProcessLookupError, PermissionError):
                pass  # nothing left in its group: the usual case

    def last_log_line(self, pod: str, container: str, ns: str = "default") -> str:
        try:
            with open(self.paths.container_log(pod, container, ns), "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(f.tell() - 2048, 0))
                lines = [ln for ln in f.read().decode(errors="replace").splitlines() if ln.strip()]
            return lines[-1][:300] if lines else ""
        except OSError:
            return ""

    def check(self, pod: dict, st: dict) -> dict | None:
        """Restart dead containers of a Running pod; return the new status if anything changed."""
        name, k8s_ns = pod["metadata"]["name"], pod["metadata"].get("namespace") or "default"
        specs = {c["name"]: c for c in pod["spec"].get("containers", [])}
        changed, evs = False, []
        t = time.monotonic()
        policy = pod["spec"].get("restartPolicy") or "Always"
        for cs in st.get("containerStatuses", []):
            pid = cs.get("pid")
            if pid and lifecycle.alive(pid, cs.get("pidStart")):
                continue
            if "terminated" in cs.get("state", {}):
                continue  # ended for good (restartPolicy Never / OnFailure)
            key = (f"{k8s_ns}/{name}", cs["name"])
            start_error = (cs.get("state", {}).get("waiting") or {}).get("reason") == "RunContainerError"
            if pid or start_error:  # just died, or could not start: record how
                if pid:
                    code = self.exit_codes.pop(pid, None)
                    cs["lastState"] = {"terminated": {
                        "exitCode": code, "reason": "Completed" if code == 0 else "Error", "finishedAt": now(),
                        "message": self.last_log_line(name, cs["name"], k8s_ns)}}
                else:  # as containerd reports a failed exec: StartError, exit code 128
                    cs["lastState"] = {"terminated": {"exitCode": 128, "reason": "StartError", "finishedAt": now(),
                                                      "message": cs["state"]["waiting"]["message"]}}
                cs.update(pid=None, pidStart=None, ready=False)
                term = cs["lastState"]["terminated"]
                if policy == "Never" or (policy == "OnFailure" and term["exitCode"] == 0):
                    started = (cs.get("state", {}).get("running") or {}).get("startedAt")
                    cs["state"] = {"terminated": {**term, **({"startedAt": started} if started else {})}}
                    cs["lastState"] = {}
                    evs.append(("Completed" if term["exitCode"] == 0 else "Failed",
                                f"Container {cs['name']} exited with code {term['exitCode']}",
                                "Normal" if term["exitCode"] == 0 else "Warning"))
                    changed = True
                    continue
                nxt, delay = self.backoff.get(key, (0.0, BACKOFF_START / 2))
                delay = min(delay * 2, BACKOFF_MAX)
                self.backoff[key] = (t + delay, delay)
                msg = f"back-off {delay:.0f}s restarting failed container={cs['name']} pod={name}"
                cs["state"] = {"waiting": {"reason": "CrashLoopBackOff", "message": msg}}
                evs.append(("BackOff", f"{msg}: {cs['lastState']['terminated']['message']}", "Warning"))
                changed = True
                continue
            if t < self.backoff.get(key, (0.0, 0.0))[0] or cs["name"] not in specs:
                continue
            log = self.paths.container_log(name, cs["name"], k8s_ns)
            try:  # the last instance's output is what ``logs --previous`` shows
                os.replace(log, log.with_name(log.stem + ".previous.log"))
            except FileNotFoundError:
                pass  # the container never wrote anything: no previous log
            fd = netns.open_fd(st["sandbox"]["netns"])
            try:
                new = run_container(self.paths, pod, specs[cs["name"]], fd, st["sandbox"]["netns"],
                                    container_env(pod, self.node, self.host_ip, st.get("podIP", ""),
                                                  specs[cs["name"]]), self.node, st["sandbox"]["id"])
            finally:
                os.close(fd)
            cs.update(pid=new["pid"], pidStart=new["pidStart"], ready=new["ready"], state=new["state"],
                      restartCount=int(cs.get("restartCount", 0)) + 1)
            if new["pid"]:
                evs.append(("Started", f"Started container {cs['name']} (restart {cs['restartCount']})", "Normal"))
            else:
                evs.append(("Failed", f"Error: {new['state']['waiting']['message']}", "Warning"))
            changed = True
        if evs:
            events.emit_many(self.paths.store, "pod", name, evs, f"kubelet, {self.node}", k8s_ns)
        if changed:
            ready = all(c.get("ready") for c in st["containerStatuses"])
            st["phase"] = pod_phase(st["containerStatuses"])
            st["conditions"] = [{"type": "Ready", "status": "True" if ready else "False"}]
            return st
        return None
