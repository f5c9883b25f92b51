"""``podlab kubeconfig``: the lab's kubeconfig (context ``podlab-<lab>``), printed, or merged again into
``$KUBECONFIG`` / ``~/.kube/config`` with ``--merge`` (``up`` merges it already)."""
from __future__ import annotations

import argparse

from emulator.cli import common
from emulator.errors import PodlabError
from emulator.lab.api import Lab


def _across(a: argparse.Namespace, lab: str) -> int:
    """The same for a multi-host lab, whose API server runs on this controller (``hosts.api_daemon``)."""
    from emulator.apiserver import certs, kubeconfig
    from emulator.hosts import api_daemon
    url = api_daemon.url(lab)
    if url is None:
        raise PodlabError(f"the API server of multi-host lab {lab} is not running (see "
                          f"{api_daemon.api_dir(lab) / 'apiserver.log'})", obj=lab)
    if a.merge:
        print(f"context {kubeconfig.name_of(lab)} merged into {api_daemon.write_kubeconfig(lab)}")
        return 0
    m = certs.Material(api_daemon.api_dir(lab))
    print(kubeconfig.render(lab, url, m.ca.read_bytes(), m.token), end="")
    return 0


def cmd_kubeconfig(a: argparse.Namespace) -> int:
    from emulator.apiserver import certs, component, kubeconfig
    from emulator.cli import host_cmds
    across = host_cmds.multihost_lab(a.lab)
    if across is not None:
        return _across(a, across)
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
