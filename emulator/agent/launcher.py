"""The agents' launcher: a fresh interpreter that has imported the agent's code once and forks every agent of a lab.

Why a process of its own. An agent forked from ``up`` inherits ``up``'s whole heap (the topology, the manifests,
the routing state: ~90 MB at 5,000 pods) and copies every page of it that it writes to: reference counts of
inherited objects, its own allocations landing in the free space of inherited arenas, its collections walking
inherited objects. Measured at 50 nodes × 100 pods, each agent held 10.8 MB of private dirty memory that way (its
PSS 12.3 MB, 123 kB per pod). Forked from this launcher instead, an agent shares what the launcher imported (the
agent's modules, pyroute2) and owns only what it makes itself. The launcher freezes its objects before forking
(``gc.freeze``) so that no agent's collection ever walks, and thereby copies, the shared pages.

The lab's other Python daemons (the controller-manager and every node's kube-proxy) are forked here too, for the
same reason: forked from ``up`` at 5,000 pods each kube-proxy mapped ~70 MB of ``up``'s heap (shared by them all,
so ~70 MB of PSS in all) and the controller-manager copied 25-40 MB of it. A component names the modules its
daemons need (``Component.preload``) and asks for its daemons by the dotted name of a function and JSON arguments
(``proc.daemon.Named``), so this layer imports nothing of the layers above it. Those modules are imported, and the
daemons forked, by the launcher's child ``_Forker``, forked right after the launcher froze: the agents are forked
from a launcher that never imported them (with them, each agent held ~0.6 MB more private memory). They are ``daemon``s of the journal like any other: teardown ends them by their own entries, never
through the launcher (which is a ``tool``, killed with its children if it is still running; a daemon it forked that
had not recorded itself when the journal closed exits without running, as any).

Protocol. ``start(lab, preload)`` runs ``python -m emulator.agent.launcher LAB MODULE...`` as soon as the lab's
process journal exists (recorded there by the journal's shell lines, as a ``tool``), so its start-up and imports
overlap ``up``'s network build. Each request is one JSON line on its stdin, answered by one line,
``{"pids": [...]}`` or ``{"error": "..."}``: ``{"daemons": [...]}`` (``Launcher.spawn_daemons``, any number of
times) forks those daemons; ``{"nodes": [...]}`` (``Launcher.spawn``, last) forks the agents, after which the
launcher exits. Everything is forked by ``emulator.proc.daemon.spawn_many``, so each process records itself in
the journal before it runs, exactly as when forked from ``up``. If ``up`` fails or is killed, the launcher reads
EOF and exits having started nothing more.
"""
from __future__ import annotations

import gc
import importlib
import json
import os
import select
import subprocess
import sys
import time
import traceback
from pathlib import Path

from emulator.agent import agent
from emulator.errors import JournalClosed, ProcessError
from emulator.proc import daemon, journal as proc_journal
from emulator.state.paths import LabPaths

#: the package root, put first on the launcher's PYTHONPATH (the tree ``up`` runs from)
_PKG_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Launcher:
    """A running launcher of one lab (``start``): ``spawn`` once, or ``close`` to let it go unused."""

    def __init__(self, lab: str, proc: subprocess.Popen) -> None:
        self.lab, self.proc = lab, proc

    def _log(self) -> Path:
        return LabPaths(self.lab).root / "agent-launcher.log"

    def _ask(self, request: dict, timeout: float = 120) -> list[int]:
        """Send one request line; return the PIDs of the answer (``ProcessError`` naming the log if none)."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(json.dumps(request).encode() + b"\n")
            self.proc.stdin.flush()
            line, fd, deadline = b"", self.proc.stdout.fileno(), time.monotonic() + timeout
            while not line.endswith(b"\n"):
                ready, _, _ = select.select([fd], [], [], max(deadline - time.monotonic(), 0))
                chunk = os.read(fd, 65536) if ready else b""
                if not chunk:
                    raise OSError("no answer" if not ready else "it exited")
                line += chunk
        except OSError as e:
            self.close()
            raise ProcessError(f"the agents' launcher of lab {self.lab} did not answer ({e}); see {self._log()}",
                               obj=self.lab) from None
        try:
            reply = json.loads(line.decode())
        except ValueError:
            raise ProcessError(f"the agents' launcher of lab {self.lab} failed; see {self._log()}",
                               obj=self.lab) from None
        if "error" in reply:
            raise ProcessError(f"the agents' launcher of lab {self.lab}: {reply['error']}", obj=self.lab)
        return [int(p) for p in reply["pids"]]

    def spawn_daemons(self, specs: list[daemon.Named]) -> list[int]:
        """Fork daemons named by function (``proc.daemon.Named``); return their PIDs in order."""
        return self._ask({"daemons": [d.to_json() for d in specs]})

    def spawn(self, nodes: list[str]) -> list[int]:
        """Fork the agents of ``nodes`` (the last request); return their PIDs in order."""
        for node in nodes:
            LabPaths(self.lab).agent_pid(node).parent.mkdir(parents=True, exist_ok=True)
        try:
            return self._ask({"nodes": nodes})
        except ProcessError as e:
            raise ProcessError(f"starting the agents of lab {self.lab}: {e}", obj=self.lab) from None
        finally:
            self.close()

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


def start(lab: str, preload: tuple[str, ...] | list[str] = ()) -> Launcher:
    """Start the launcher of ``lab`` (its process journal must exist), importing ``preload`` (module names) too;
    it imports while the caller goes on."""
    paths = LabPaths(lab)
    log = paths.root / "agent-launcher.log"
    argv = proc_journal.wrap(paths.proc_journal, "agents' launcher",
                             [sys.executable, "-m", "emulator.agent.launcher", lab, *preload], kind="tool")
    env = dict(os.environ)
    env["PYTHONPATH"] = _PKG_PARENT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    with open(log, "ab") as err:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, env=env,
                                cwd="/")
    return Launcher(lab, proc)


class _Forker:
    """The daemons' forker: a child of the launcher, forked right after the launcher froze (so it shares the
    agents' imports), that imports the components' modules (``preload``) on its own and forks their daemons on
    request. Kept apart so the agents are forked from a launcher that never imported those modules: with them in
    the launcher's heap each agent held ~0.6 MB more private memory. It records itself in the journal (a
    ``tool``) before it imports anything, and exits when the launcher closes its pipe (or dies)."""

    def __init__(self, lab: str, preload: list[str]) -> None:
        req_r, self.req = os.pipe()
        self.rep, rep_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            os.close(self.req)
            os.close(self.rep)
            nul = os.open(os.devnull, os.O_RDWR)
            os.dup2(nul, 0)  # up's pipes are the launcher's alone (its stderr, the log, is kept)
            os.dup2(nul, 1)
            os.close(nul)
            code = 1
            try:
                code = _forker(lab, preload, req_r, rep_w)
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(code)
        os.close(req_r)
        os.close(rep_w)
        self.replies = os.fdopen(self.rep, "rb")

    def ask(self, line: bytes) -> dict:
        try:
            os.write(self.req, line)
            answer = self.replies.readline()
        except OSError as e:
            return {"error": f"the daemons' forker is gone ({e}); see agent-launcher.log"}
        return json.loads(answer) if answer.strip() else {"error": "the daemons' forker exited; see agent-launcher.log"}

    def close(self) -> None:
        os.close(self.req)  # it reads EOF and exits
        self.replies.close()
        os.waitpid(self.pid, 0)


def _forker(lab: str, preload: list[str], req: int, rep: int) -> int:
    try:
        proc_journal.enter(LabPaths(lab).proc_journal, "daemons' forker", "tool")
    except JournalClosed:
        return proc_journal.CLOSED_STATUS  # the lab is being removed: fork nothing
    for module in preload:
        importlib.import_module(module)
    gc.collect()
    gc.freeze()  # the daemons' collections never walk (and copy) what it imported
    with os.fdopen(req, "rb") as requests, os.fdopen(rep, "wb") as replies:
        for line in requests:
            try:
                pids = daemon.spawn_many([daemon.Named.from_json(d).daemon() for d in json.loads(line)["daemons"]])
                reply: dict = {"pids": pids}
            except Exception as e:  # reported to up, which rolls back (the started daemons are in the journal)
                reply = {"error": str(e)}
            replies.write(json.dumps(reply).encode() + b"\n")
            replies.flush()
    return 0


def main(argv: list[str] | None = None) -> int:
    """In the launcher: answer requests until the agents' (or EOF); the daemons' go to the forker."""
    args = argv if argv is not None else sys.argv[1:]
    lab = args[0]
    gc.collect()
    gc.freeze()  # everything imported so far: never walked by an agent's collector (see the module docstring)
    forker = _Forker(lab, args[1:]) if args[1:] else None
    try:
        while True:
            line = sys.stdin.buffer.readline()
            if not line.strip():
                return 0  # up failed or was killed before the agents were due: start nothing more
            request = json.loads(line)
            if "nodes" in request:
                if forker is not None:
                    forker.close()
                    forker = None
                try:
                    reply: dict = {"pids": agent.spawn_many(lab, request["nodes"])}
                except Exception as e:  # reported to up, which rolls back (the started agents are in the journal)
                    reply = {"error": str(e)}
            elif forker is not None:
                reply = forker.ask(line)
            else:
                reply = {"error": "no component named modules for the launcher to preload (Component.preload)"}
            sys.stdout.write(json.dumps(reply) + "\n")
            sys.stdout.flush()
            if "nodes" in request:
                return 0
    finally:
        if forker is not None:
            forker.close()


if __name__ == "__main__":
    sys.exit(main())
