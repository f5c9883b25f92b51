"""Images resolved to commands (no images, no cgroups: the network is the point).

- ``pause``: a 129-byte static program that sleeps until a signal ends it (``images.pause``) — holds the pod;
- an image we do not know: ``pause`` if it declares no ports, else ``emulator.images.listen`` answering on them,
  so that real manifests (nginx, redis, ...) keep their network shape;
- ``busybox`` / ``shell``: sleeps, so ``podlab exec`` can run a shell in the pod;
- ``netexec`` and ``registry.k8s.io/e2e-test-images/agnhost:*`` with ``netexec`` args: our agnhost-like echo
  server (``python -m emulator.images.netexec``, through ``env PYTHONPATH=<this tree>`` as coredns below: the
  agents start in ``/``, and a pod's environment has no PYTHONPATH);
- ``registry.k8s.io/coredns/coredns:*``: podlab's cluster DNS server (``python -m emulator.services.dnsserver``,
  given the container's ``args``: ``-conf <Corefile>``; through ``env PYTHONPATH=<this tree>``, which execs it), as the lab's ``coredns`` pods of kube-system run it;
- any ``command:``/``args:`` given: run as given (``command`` replaces the image's entrypoint, as in Kubernetes).

``executable`` turns the resolved argv into the program to start; a name not on $PATH raises FileNotFoundError
with the message a kubelet reports (``exec: "nosuch": executable file not found in $PATH``).
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from emulator.images import attachable as attachable_mod, pause

NETEXEC_DEFAULT_ARGS = ["--http-port=8080", "--udp-port=8081"]
PKG_PARENT = str(Path(__file__).resolve().parents[2])  # the directory holding this tree's ``emulator`` package


def resolve(image: str, command: list[str], args: list[str], ports: list[dict] | None = None) -> list[str]:
    """The argv a container runs."""
    base = image.split("@")[0]
    name = base.rsplit("/", 1)[-1].split(":")[0]
    if command:
        return [*command, *args]
    if name in ("netexec",) or (name == "agnhost" and (not args or args[0] == "netexec")):
        rest = args[1:] if args and args[0] == "netexec" else args
        return ["env", f"PYTHONPATH={PKG_PARENT}", sys.executable, "-m", "emulator.images.netexec",
                *(rest or NETEXEC_DEFAULT_ARGS)]
    if name == "coredns":  # podlab's own code: from this tree, whatever the container's cwd (``env`` execs it)
        return ["env", f"PYTHONPATH={PKG_PARENT}", sys.executable, "-m", "emulator.services.dnsserver", *args]
    if name in ("busybox", "shell", "alpine", "ubuntu", "debian"):
        return ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 3600 & wait $!; done"] if not args else \
            ["sh", "-c", " ".join(args)]
    if name != "pause" and ports:
        return ["env", f"PYTHONPATH={PKG_PARENT}", sys.executable, "-m", "emulator.images.listen",
                *(f"{p['containerPort']}/{p.get('protocol', 'TCP')}" for p in ports)]
    return ["pause"]  # argv[0] shown in ps; the program is images.pause (or sleep infinity)


def executable(argv: list[str]) -> tuple[str, list[str]]:
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




def attachable(exe: str, argv: list[str], socket_path: str, tty: bool, stdin_once: bool) -> tuple[str, list[str]]:
    """The program and argv that run ``argv`` under the holder of an attachable container
    (``emulator.images.attachable``: a pty or pipes held until ``kubectl attach``)."""
    # run as a file without site (it needs the standard library only): no dependence on sys.path or the cwd
    return sys.executable, [sys.executable, "-S", os.path.abspath(attachable_mod.__file__), "--socket", socket_path,
                            *(["--tty"] if tty else []), *(["--stdin-once"] if stdin_once else []), "--", exe,
                            *argv[1:]]
