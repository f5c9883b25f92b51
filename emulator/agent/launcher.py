"""The agents' launcher: a fresh interpreter that has imported the agent's code once and forks every agent of a lab.

Why a process of its own. An agent forked from ``up`` inherits ``up``'s whole heap (the topology, the manifests,
the routing state: ~90 MB at 5,000 pods) and copies every page of it that it writes to: reference counts of
inherited objects, its own allocations landing in the free space of inherited arenas, its collections walking
inherited objects. Measured at 50 nodes × 100 pods, each agent held 10.8 MB of private dirty memory that way (its
PSS 12.3 MB, 123 kB per pod). Forked from this launcher instead, an agent shares what the launcher imported (the
agent's modules, pyroute2) and owns only what it makes itself. The launcher freezes its objects before forking
(``gc.freeze``) so that no agent's collection ever walks, and thereby copies, the shared pages.

Protocol. ``start(lab)`` runs ``python -m emulator.agent.launcher`` as soon as the lab's process journal exists
(recorded there by the journal's shell lines, as a ``tool``), so its start-up and imports overlap ``up``'s
network build; ``Launcher.spawn(nodes)`` writes one JSON line ``{"nodes": [...]}`` on its stdin and reads one
line back, ``{"pids": [...]}`` or ``{"error": "..."}``; the launcher then exits. The agents are forked by
``emulator.proc.daemon.spawn_many``, so each records itself in the journal before it runs, exactly as when forked
from ``up``. If ``up`` fails or is killed, the launcher reads EOF and exits having started nothing.
"""
from __future__ import annotations

import gc
import json
import os
import subprocess
import sys

from emulator.agent import agent
from emulator.errors import ProcessError
from emulator.proc import journal as proc_journal
from emulator.state.paths import LabPaths

#: the package root, put first on the launcher's PYTHONPATH (the tree ``up`` runs from)
_PKG_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Launcher:
    """A running launcher of one lab (``start``): ``spawn`` once, or ``close`` to let it go unused."""

    def __init__(self, lab: str, proc: subprocess.Popen) -> None:
        self.lab, self.proc = lab, proc

    def spawn(self, nodes: list[str]) -> list[int]:
        """Fork the agents of ``nodes``; return their PIDs in order (``ProcessError`` naming the log if not)."""
        log = LabPaths(self.lab).root / "agent-launcher.log"
        for node in nodes:
            LabPaths(self.lab).agent_pid(node).parent.mkdir(parents=True, exist_ok=True)
        try:
            out, _ = self.proc.communicate(json.dumps({"nodes": nodes}).encode() + b"\n", timeout=120)
        except (OSError, subprocess.TimeoutExpired) as e:
            self.close()
            raise ProcessError(f"the agents' launcher of lab {self.lab} did not answer ({e}); see {log}",
                               obj=self.lab) from None
        try:
            reply = json.loads(out.decode().strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise ProcessError(f"the agents' launcher of lab {self.lab} failed (exit status {self.proc.returncode});"
                               f" see {log}", obj=self.lab) from None
        if "error" in reply:
            raise ProcessError(f"starting the agents of lab {self.lab}: {reply['error']}", obj=self.lab)
        return [int(p) for p in reply["pids"]]

    def close(self) -> None:
        """Let the launcher go without starting anything (it reads EOF and exits); idempotent."""
        if self.proc.returncode is None:
            try:
                if self.proc.stdin and not self.proc.stdin.closed:
                    self.proc.stdin.close()
            except OSError:
                pass  # the pipe broke: the launcher is gone or reads EOF all the same
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout and not self.proc.stdout.closed:
            self.proc.stdout.close()


def start(lab: str) -> Launcher:
    """Start the launcher of ``lab`` (its process journal must exist); it imports while the caller goes on."""
    paths = LabPaths(lab)
    log = paths.root / "agent-launcher.log"
    argv = proc_journal.wrap(paths.proc_journal, "agents' launcher",
                             [sys.executable, "-m", "emulator.agent.launcher", lab], kind="tool")
    env = dict(os.environ)
    env["PYTHONPATH"] = _PKG_PARENT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    with open(log, "ab") as err:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, env=env,
                                cwd="/")
    return Launcher(lab, proc)


def main(argv: list[str] | None = None) -> int:
    """In the launcher: wait for the node list, fork the agents, report their PIDs."""
    lab = (argv if argv is not None else sys.argv[1:])[0]
    gc.collect()
    gc.freeze()  # everything imported so far: never walked by an agent's collector (see the module docstring)
    line = sys.stdin.buffer.readline()
    if not line.strip():
        return 0  # up failed or was killed before the agents were due: start nothing
    try:
        pids = agent.spawn_many(lab, json.loads(line)["nodes"])
        reply: dict = {"pids": pids}
    except Exception as e:  # reported to up, which rolls back (the started agents are in the journal)
        reply = {"error": str(e)}
    sys.stdout.write(json.dumps(reply) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
