"""``podlab kubeconfig``: the lab's kubeconfig (context ``podlab-<lab>``), printed, or merged again into
``$KUBECONFIG`` / ``~/.kube/config`` with ``--merge`` (``up`` merges it already)."""
from __future__ import annotations

import argparse

from emulator.cli import common
from emulator.errors import PodlabError
from emulator.lab.api import Lab


def cmd_kubeconfig(a: argparse.Namespace) -> int:
    from emulator.apiserver import certs, component, kubeconfig
    lab = Lab.get(a.lab)
    url = component.server_url(lab.paths)
    if url is None:
        raise PodlabError(f"the API server of lab {lab.name} is not running (see "
                          f"{component.api_dir(lab.paths) / 'apiserver.log'})", obj=lab.name)
    if a.merge:
        path = component.write_kubeconfig(lab.name, lab.paths)
        print(f"context {kubeconfig.name_of(lab.name)} merged into {path}")
        return 0
    m = certs.Material(component.api_dir(lab.paths))
    print(kubeconfig.render(lab.name, url, m.ca.read_bytes(), m.token), end="")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    s = common.verb(sub, "kubeconfig", help="print the lab's kubeconfig (kubectl context podlab-<lab>)")
    s.add_argument("--merge", action="store_true", help="merge it into $KUBECONFIG or ~/.kube/config instead")
    s.set_defaults(fn=cmd_kubeconfig)
