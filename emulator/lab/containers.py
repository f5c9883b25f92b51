"""A pod's containers as ``kubectl exec -c`` and ``kubectl logs -c`` see them.

``choose`` picks a container by name (or the first, saying so when the pod has several, as kubectl does);
``exec_context`` gives what a new process in a running container gets, as ``kubectl exec POD -c C`` does: the
container's environment and working directory. Both are read from the container's own process — the one its
pod status records, checked by its start time, so a recycled PID is never taken for it: ``/proc/PID/environ``
holds exactly the environment the node's agent started it with (``agent.pods.container_env``: the spec's
``env``, the pod's and node's names and addresses, the agent's PATH), and ``/proc/PID/cwd`` its directory.
Recomputing the environment here instead would give this process's PATH (sudo's, say), not the agent's. As
with kubectl, a container that is not running cannot be exec'd into.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from emulator.errors import NotFoundError, PodlabError
from emulator.proc.lifecycle import alive


@dataclass(frozen=True)
class ExecContext:
    container: str
    pid: int
    env: dict[str, str]
    cwd: str


def names(pod: dict) -> list[str]:
    return [c["name"] for c in pod["spec"].get("containers", [])]


def choose(pod: dict, container: str | None) -> tuple[str, str | None]:
    """(container, note): the one named, or the first; ``note`` is kubectl's "Defaulted container ..." line when
    the pod has several and none was named. ``NotFoundError`` (kind container) for a name the pod lacks."""
    known = names(pod)
    pod_name = pod["metadata"]["name"]
    if container is None:
        if not known:
            raise NotFoundError("container", None, message=f'pod "{pod_name}" has no containers')
        note = f'Defaulted container "{known[0]}" out of: {", ".join(known)}' if len(known) > 1 else None
        return known[0], note
    if container not in known:
        raise NotFoundError("container", container, f'pod "{pod_name}"', known=known)
    return container, None


def parse_environ(data: bytes) -> dict[str, str]:
    """``/proc/PID/environ``: NUL-separated ``KEY=VALUE`` entries (an entry without ``=`` is kept as empty)."""
    env: dict[str, str] = {}
    for entry in data.split(b"\0"):
        if entry:
            key, _, value = entry.decode("utf-8", "surrogateescape").partition("=")
            env[key] = value
    return env


def exec_context(pod: dict, container: str) -> ExecContext:
    """The environment and working directory of ``container`` of ``pod`` (its store object with status)."""
    pod_name = pod["metadata"]["name"]
    st = next((c for c in pod.get("status", {}).get("containerStatuses", []) if c.get("name") == container), {})
    pid = st.get("pid")
    if not pid or not alive(pid, st.get("pidStart")):
        waiting = (st.get("state") or {}).get("waiting") or {}
        why = waiting.get("reason") or ("not started" if not st else "not running")
        raise PodlabError(f'container "{container}" of pod "{pod_name}" is not running ({why}); exec needs a '
                          f"running container (see podlab describe pod {pod_name})", obj=container)
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = parse_environ(f.read())
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError as e:  # it ended between the check and the reads
        raise PodlabError(f'container "{container}" of pod "{pod_name}" ended ({e.strerror}); try again',
                          obj=container) from None
    return ExecContext(container, pid, env, cwd)
