"""After every change the controller makes to a multi-host lab: one look at every host, then every push.

The controller owns what no host can compute alone: the Deployments (whose pods spread over every host's nodes,
``hosts.deploy_across``), the Services' Endpoints (from every host's pods, ``hosts.services``) and the
NetworkPolicies' peers (the other hosts' pods, ``hosts.netpols``). ``after_change`` runs them in that order from
one round of ``objects`` answers: the Deployments' reconcile asks every host for its pods until nothing is left to
create or delete, and its last round is what the Endpoints and the policies' remote pods are computed from (a lab
without Services asks once, for the policies). Each push waits until every kube-proxy or policy enforcer on every
host has applied it, so the command that made the change returns once the whole lab agrees.

Called by ``up`` (once every host's part runs), by every ``apply``/``delete``/``scale`` (``hosts.changes``, from
the CLI or the API server), by ``podlab host sync`` and by the API server when its mirror sees a Deployment's pod
gone or failed on its host.
"""
from __future__ import annotations

from typing import Any, Callable

from emulator.hosts import deploy_across, netpols, services
from emulator.hosts.transport import HostSession
from emulator.topology.hosts_section import Host

Progress = Callable[[str], None]


def after_change(lab: str, rec: dict, hosts: list[Host], session: Callable[[Host], HostSession],
                 progress: Progress = lambda s: None) -> dict[str, dict[str, Any]]:
    """Deployments reconciled, then the Services' and the policies' pushes (each if the lab has them); returns
    {"services": what the Services' push said, "netpol": what the policies' push said}."""
    out: dict[str, dict[str, Any]] = {}
    if rec.get("services"):
        per_host = deploy_across.reconcile(lab, hosts, session, progress)
    elif rec.get("netpol"):
        per_host = netpols.objects(lab, hosts, session)
    else:
        return out
    if rec.get("services"):
        out["services"] = services.sync(lab, hosts, session, progress, per_host=per_host)
    if rec.get("netpol"):
        out["netpol"] = netpols.sync(lab, hosts, session, progress, per_host=per_host)
    return out
