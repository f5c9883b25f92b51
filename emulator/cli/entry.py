"""The ``podlab`` program's entry (the console script and ``python -m emulator``): the CLI, or the slim serve.

``podlab host serve`` is what the controller of a multi-host lab starts on every host for every verb, so its start
is on the path of every multi-host command: it skips the CLI (whose imports, every verb group and the composition
root, cost ~0.6 s of CPU per start) and runs ``emulator.hosts.serve`` directly, which imports what each request
needs when it comes. The lab components are installed through the composition root only when a request needs them
(``up``, ``down``), so a host's part is built and removed by the same code as a local lab. ``podlab host stream
SPEC`` (one streaming session for the controller, ``emulator.hosts.serve_stream``) starts slim too. Every other command line
goes to ``emulator.cli.main``; for a verb that acts on an existing multi-host lab, the entry first starts
connecting to that lab's hosts (``hosts.sessions.warm``: threads that wait on the network and on the hosts while
this process imports the CLI), and closes those sessions when the verb ends.
"""
from __future__ import annotations

import os
import sys

SERVE = ["host", "serve"]
STREAM = ["host", "stream"]  # + SPEC: one session of the controller's API server (hosts.serve_stream)
WARM_VERBS = frozenset({"down", "cleanup", "get", "exec", "check", "capture", "apply", "delete", "fail", "heal",
                        "faults", "graph"})  # verbs that ask a lab's hosts


def _verb(args: list[str]) -> str | None:
    rest = iter(args)
    for a in rest:
        if a == "--lab":
            next(rest, None)
        elif not a.startswith("-"):
            return a
    return None


def warm_hosts(args: list[str]) -> bool:
    """Start connecting to the hosts of the multi-host lab(s) the command will ask (the one named on the command
    line, else the only lab if it is a multi-host one, as ``host_cmds.multihost_lab`` picks it; for ``down`` and
    ``cleanup`` the hosts still holding a part); True if it did. One directory listing when there is none."""
    verb = _verb(args)
    if verb not in WARM_VERBS or os.geteuid() != 0:
        return False
    from emulator.hosts import records
    labs = records.all_labs()
    if not labs:
        return False
    if verb == "cleanup":
        recs = [r for r in (records.load(lab) for lab in labs) if r and ("--all" in args or records.crashed(r))]
    else:
        from emulator.state import record
        named = [lab for lab in labs if lab in args]
        only = labs if len(labs) == 1 and all(lab == labs[0] for lab in record.all_labs()) else []
        recs = [r for r in (records.load(lab) for lab in named or only) if r]
    removing = verb in ("down", "cleanup")
    hosts = {d["name"]: records.host_of(d) for r in recs for d in r.get("hosts", [])
             if not removing or d["name"] in r.get("pending", [])}
    if not hosts:
        return False
    from emulator.hosts import sessions
    sessions.warm(hosts.values())
    return True


def install_components() -> None:
    from emulator import plugins
    plugins.install()


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args == SERVE:
        from emulator.errors import PodlabError
        from emulator.hosts import serve
        try:
            return serve.serve(install_components)
        except PodlabError as e:
            print(f"podlab: error: {e}", file=sys.stderr)
            return e.exit_code or 1
    if args[:2] == STREAM and len(args) == 3:
        from emulator.hosts import serve_stream
        return serve_stream.main(args[2])
    warmed = warm_hosts(args)
    from emulator.cli.main import main as cli_main
    try:
        return cli_main(args)
    finally:
        if warmed:
            from emulator.hosts import sessions
            sessions.close_warm()


if __name__ == "__main__":
    sys.exit(main())
