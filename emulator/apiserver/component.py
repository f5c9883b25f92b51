"""The API server as a lab component: certificates and token made, the process started (a fresh interpreter,
so it carries none of ``up``'s memory), its PID recorded. It starts as a SCHED_IDLE process while the pods
start: it makes its certificates and token, imports itself, reads the store without holding its lock and follows
the journal, on CPU time the node agents leave; once ``ready`` (every pod Running) says ``go`` it takes the
normal policy back, has little left to catch up and listens, so the lab's bring-up waits for it only that long. ``ready`` then merges the ``podlab-<lab>``
context into the user's kubeconfig. ``teardown`` (after the process is ended by ``down``/``cleanup``) removes
exactly those kubeconfig entries, from the file recorded when they were written.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from emulator.apiserver import certs, kubeconfig, kubesvc
from emulator.errors import BuildError, MissingDependencyError, LabTimeoutError
from emulator.proc.lifecycle import alive
from emulator.apiserver.server import go_path, status_path
from emulator.lab.components import BuildContext, Component
from emulator.topology import hosts_section
from emulator.services import config as services_config
from emulator.proc.daemon import spawn
from emulator.state.paths import LabPaths
from emulator.state.store import read_json
from emulator.topology.model import Topology

PKG_PARENT = str(Path(__file__).resolve().parents[2])


def api_dir(paths: LabPaths) -> Path:
    return paths.root / "apiserver"


def _exec_server(lab: str) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = PKG_PARENT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    # one malloc arena besides the main one: its threads (the journal follower, one per request) hold the GIL
    # anyway, and each arena of its own kept ~1 MB of free memory (11 MB at 5,000 pods)
    env.setdefault("MALLOC_ARENA_MAX", "2")
    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))  # its start-up, too, yields to the agents (serve)
    os.execve(sys.executable, [sys.executable, "-m", "emulator.apiserver", "--lab", lab], env)


def server_url(paths: LabPaths) -> str | None:
    st = read_json(status_path(paths))
    return f"https://127.0.0.1:{st['port']}" if st else None


def write_kubeconfig(lab: str, paths: LabPaths, target: Path | None = None) -> Path:
    url = server_url(paths)
    if url is None:
        raise FileNotFoundError(f"the API server of lab {lab} is not serving")
    m = certs.Material(api_dir(paths))
    target = target or kubeconfig.default_path()
    (api_dir(paths) / "kubeconfig-path").write_text(str(target.resolve()) + "\n")
    kubeconfig.merge(target, lab, url, m.ca.read_bytes(), m.token)
    return target


class ApiServerComponent(Component):
    name = "apiserver"
    order = 200

    def wanted(self, topo: Topology) -> bool:
        # every lab on one machine has one; a lab over several hosts has none yet (its store is per host: the
        # server would need the controller to merge them), as ``podlab up`` of such a lab says
        return hosts_section.of(topo) is None

    def start(self, ctx: BuildContext) -> None:
        try:
            from emulator.apiserver.schema import _schema_dir
            _schema_dir()
        except (ImportError, OSError, ValueError):
            raise MissingDependencyError("the lab's API server needs the Kubernetes schemas of the "
                                         "kubernetes-validate package: pip install kubernetes-validate (setup.sh "
                                         "installs it)", obj="kubernetes-validate") from None
        import importlib.util
        if importlib.util.find_spec("cryptography") is None:
            raise MissingDependencyError("the lab's API server needs the cryptography package (for its TLS "
                                         "certificates): apt-get install python3-cryptography, or pip install "
                                         "cryptography", obj="cryptography")
        d = api_dir(ctx.paths)
        d.mkdir(parents=True, exist_ok=True)  # (the server makes its certificates there: see server.serve)
        if services_config.settings(ctx.topo) is not None:  # ClusterIPs work where kube-proxy runs
            kubesvc.put(ctx.store, ctx.topo.service_cidr, str(ctx.topo.nodes[0].ip))
        pid = spawn(lambda: _exec_server(ctx.topo.name), d / "apiserver.log", title="kube-apiserver",
                    journal=ctx.paths.proc_journal, what="API server")
        ctx.data["apiserver"] = pid

    def ready(self, ctx: BuildContext) -> None:
        go_path(ctx.paths).touch()  # the server loads the store now (see server.wait_go)
        pid = ctx.data.get("apiserver")
        deadline = time.monotonic() + 30
        while not (st := read_json(status_path(ctx.paths)) or {}).get("port"):
            if pid and not alive(pid, None):
                log = (api_dir(ctx.paths) / "apiserver.log").read_text(errors="replace").strip().splitlines()
                raise BuildError(f"the API server exited: {log[-1] if log else 'no log'} (see "
                                 f"{api_dir(ctx.paths) / 'apiserver.log'})", obj=ctx.topo.name)
            if time.monotonic() > deadline:
                raise LabTimeoutError("the API server did not start within 30s", obj=ctx.topo.name)
            time.sleep(0.02)
        path = write_kubeconfig(ctx.topo.name, ctx.paths)
        ctx.progress(f"API server https://127.0.0.1:{st['port']}; kubectl context {kubeconfig.name_of(ctx.topo.name)}"
                     f" in {path}")

    @classmethod
    def teardown(cls, lab: str, paths: LabPaths) -> None:
        f = api_dir(paths) / "kubeconfig-path"
        try:
            target = Path(f.read_text().strip())
        except OSError:
            return
        try:
            kubeconfig.remove(target, lab)
        except (OSError, ValueError):
            pass  # the user's kubeconfig is unreadable or gone: nothing of the lab is left in it to remove
