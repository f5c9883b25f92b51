"""Containers as processes in the pod's network namespace (no images, no cgroups: the network is the point).

Every container of a pod is started with ``posix_spawn`` from a thread that has entered the pod's namespace, so
the child inherits it: the containers of one pod share the pod IP, ``localhost`` and the port space, exactly the
property Kubernetes pods have. No process is interposed (no resident Python per pod unless the image *is*
Python, like ``netexec``). Images are resolved to commands here:

- ``pause``: a 129-byte static program that sleeps until a signal ends it (``images.pause``) — holds the pod;
- an image we do not know: ``pause`` if it declares no ports, else ``emulator.images.listen`` answering on them,
  so that real manifests (nginx, redis, ...) keep their network shape;
- ``busybox`` / ``shell``: sleeps, so ``podlab exec`` can run a shell in the pod;
- ``netexec`` and ``registry.k8s.io/e2e-test-images/agnhost:*`` with ``netexec`` args: our agnhost-like echo
  server (``python -m emulator.images.netexec``);
- any ``command:``/``args:`` given: run as given (``command`` replaces the image's entrypoint, as in Kubernetes).

PIDs are recorded with their start time (field 22 of /proc/PID/stat) so that a recorded PID is only ever
signalled while it still belongs to the process we started.
"""
from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from pathlib import Path

from emulator.images import pause
from emulator.netlink import netns

NETEXEC_DEFAULT_ARGS = ["--http-port=8080", "--udp-port=8081"]


def resolve(image: str, command: list[str], args: list[str], ports: list[dict] | None = None) -> list[str]:
    """The argv a container runs."""
    base = image.split("@")[0]
    name = base.rsplit("/", 1)[-1].split(":")[0]
    if command:
        return [*command, *args]
    if name in ("netexec",) or (name == "agnhost" and (not args or args[0] == "netexec")):
        rest = args[1:] if args and args[0] == "netexec" else args
        return [sys.executable, "-m", "emulator.images.netexec", *(rest or NETEXEC_DEFAULT_ARGS)]
    if name in ("busybox", "shell", "alpine", "ubuntu", "debian"):
        return ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 3600 & wait $!; done"] if not args else \
            ["sh", "-c", " ".join(args)]
    if name != "pause" and ports:
        return [sys.executable, "-m", "emulator.images.listen",
                *(f"{p['containerPort']}/{p.get('protocol', 'TCP')}" for p in ports)]
    return ["pause"]  # argv[0] shown in ps; the program is images.pause (or sleep infinity)


def _exe(argv: list[str]) -> tuple[str, list[str]]:
    """The executable for ``argv`` and the argv it is given."""
    if argv[0] == "pause":
        exe = pause.binary()
        return exe, (argv if exe != pause.SLEEP else ["pause", "infinity", *argv[1:]])
    return _which(argv[0]), argv


def _which(argv0: str) -> str:
    if os.sep in argv0:
        return argv0
    found = shutil.which(argv0)
    if not found:
        raise FileNotFoundError(f'executable file not found in $PATH: "{argv0}"')
    return found


def _stat(pid: int) -> list[bytes] | None:
    """The fields of /proc/PID/stat after the command name (state first; start time is index 19)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    return data[data.rindex(b")") + 2:].split()


def start_time(pid: int) -> int | None:
    fields = _stat(pid)
    return None if fields is None else int(fields[19])


def alive(pid: int, started: int | None) -> bool:
    """Is ``pid`` running (not a zombie) and, if ``started`` is given, still the process that started then?"""
    fields = _stat(pid)
    return fields is not None and fields[0] != b"Z" and (started is None or int(fields[19]) == started)


def spawn(ns_fd: int, argv: list[str], log: Path, env: dict[str, str], ns_name: str = "") -> tuple[int, int | None]:
    """Start ``argv`` inside the namespace ``ns_fd``; return (pid, start time).

    If ``/etc/netns/<ns_name>/`` exists (a pod's own resolv.conf, hosts, ...), the process is started through
    ``ip netns exec``, which bind-mounts those files over /etc in a private mount namespace, exactly as for any
    ``ip netns exec`` user; otherwise directly (no mount-table copy, whose cost grows with the namespaces).
    """
    if not log.parent.is_dir():
        log.parent.mkdir(parents=True, exist_ok=True)
    exe, argv = _exe(argv)
    if ns_name and os.path.isdir(f"/etc/netns/{ns_name}"):
        argv = ["ip", "netns", "exec", ns_name, exe, *argv[1:]]
        exe = shutil.which("ip") or "/usr/sbin/ip"
    actions = [(os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
               (os.POSIX_SPAWN_OPEN, 1, str(log), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
               (os.POSIX_SPAWN_DUP2, 1, 2)]
    with netns.entered(ns_fd):
        pid = os.posix_spawn(exe, argv, env, file_actions=actions, setsid=True)
    return pid, start_time(pid)


def stop(pid: int, started: int | None, grace: float = 0.0, wait: float = 2.0) -> None:
    """Signal a recorded process (only if it is still the one we started): TERM, then KILL after ``grace``;
    return once it is gone (or ``wait`` seconds after the KILL), so a caller can rely on it being dead."""
    stop_many([(pid, started)], grace=grace, wait=wait)


def _ours(procs: list[tuple[int, int | None]]) -> list[tuple[int, int | None]]:
    """The recorded processes that still run and are still the ones we started (each once)."""
    return list(dict.fromkeys((pid, st) for pid, st in procs if pid and alive(pid, st)))


def _signal(procs: list[tuple[int, int | None]], sig: int) -> None:
    for pid, _st in procs:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def wait_gone(procs: list[tuple[int, int | None]], seconds: float = 5.0) -> list[tuple[int, int | None]]:
    """Wait up to ``seconds`` until none of ``procs`` runs any more; return those still running."""
    deadline = time.monotonic() + seconds
    while procs and time.monotonic() < deadline:
        procs = [(pid, st) for pid, st in procs if alive(pid, st)]
        if procs:
            time.sleep(0.002)
    return procs


def stop_many(procs: list[tuple[int, int | None]], grace: float = 0.0, wait: float = 5.0) -> None:
    """End every recorded process that is still the one we started — SIGTERM and ``grace`` seconds first if
    asked, then SIGKILL — signalling them all at once and waiting for them together (a thousand pods'
    containers die in parallel instead of one after the other)."""
    live = _ours(procs)
    if grace:
        _signal(live, signal.SIGTERM)
        live = wait_gone(live, grace)
    wait_gone(kill_many(live), wait)


def kill_many(procs: list[tuple[int, int | None]]) -> list[tuple[int, int | None]]:
    """SIGKILL every recorded process that is still the one we started, without waiting; return them (for
    ``wait_gone``), so the caller can do other work while the kernel ends them."""
    live = _ours(procs)
    _signal(live, signal.SIGKILL)
    return live


def reap() -> list[tuple[int, int]]:
    """Collect exited children (the agent is their parent): [(pid, exit status)]."""
    out = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return out
        if pid == 0:
            return out
        out.append((pid, os.waitstatus_to_exitcode(status)))
