"""The ``podlab`` program's entry (the console script and ``python -m emulator``): the CLI, or the slim serve.

``podlab host serve`` is what the controller of a multi-host lab starts on every host for every verb, so its start
is on the path of every multi-host command: it skips the CLI (whose imports, every verb group and the composition
root, cost ~0.6 s of CPU per start) and runs ``emulator.hosts.serve`` directly, which imports what each request
needs when it comes. The lab components are installed through the composition root only when a request needs them
(``up``, ``down``), so a host's part is built and removed by the same code as a local lab. Every other command line
goes to ``emulator.cli.main``.
"""
from __future__ import annotations

import sys

SERVE = ["host", "serve"]


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
    from emulator.cli.main import main as cli_main
    return cli_main(args)


if __name__ == "__main__":
    sys.exit(main())
