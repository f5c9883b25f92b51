"""The controller's record of a multi-host lab: which hosts hold its parts, and what is still to remove.

``<state root>/multihost/<lab>.json`` (not under ``labs/``: the controller may itself be one of the hosts, whose
part is an ordinary lab record at ``labs/<lab>/lab.json``). It lists the hosts with everything needed to reach
them again (so ``down`` and ``cleanup`` need neither the topology nor the inventory), the placement, the MTU,
tunnel port and VNI chosen, and ``pending``: the hosts whose part may still exist. ``down`` removes a host from
``pending`` once its part is gone and the record itself once no host is left; an unreachable host stays listed,
so a later ``down``/``cleanup`` finishes the job when it is back.
"""
from __future__ import annotations

import os
import shutil
import time
from ipaddress import IPv4Address
from pathlib import Path

from emulator.proc.lifecycle import alive, start_time
from emulator.state.paths import state_root
from emulator.state.store import read_json, write_json
from emulator.topology.hosts_section import Host


def records_dir() -> Path:
    return state_root() / "multihost"


def path(lab: str) -> Path:
    return records_dir() / f"{lab}.json"


def api_dir(lab: str) -> Path:
    """The lab's API server on the controller (``api_daemon``): certificates, log, journal, mirror store."""
    return records_dir() / f"{lab}.d" / "api"


def api_status_path(lab: str) -> Path:
    return api_dir(lab) / "status.json"


def load(lab: str) -> dict | None:
    return read_json(path(lab))


def save(rec: dict) -> None:
    records_dir().mkdir(parents=True, exist_ok=True)
    write_json(path(rec["name"]), rec)


def remove_dir(lab: str) -> None:
    """The lab's directory beside its record (the controller's store of its Services, Deployments and policies,
    its API server's files): not needed once the lab is being removed, even while a host keeps its part."""
    shutil.rmtree(records_dir() / f"{lab}.d", ignore_errors=True)


def remove(lab: str) -> None:
    """The record and the lab's directory beside it."""
    remove_dir(lab)
    try:
        os.unlink(path(lab))
    except FileNotFoundError:
        pass  # already gone: what we wanted


def all_labs() -> list[str]:
    try:
        return sorted(p[:-5] for p in os.listdir(records_dir()) if p.endswith(".json"))
    except FileNotFoundError:
        return []


def set_status(rec: dict, status: str) -> dict:
    me = os.getpid()
    rec = {**rec, "status": status, "owner": {"pid": me, "start": start_time(me)}}
    save(rec)
    return rec


def crashed(rec: dict) -> bool:
    """Not ready, and the process that was creating or deleting it is gone: what ``cleanup`` finishes."""
    owner = rec.get("owner") or {}
    return rec.get("status") != "ready" and not (owner.get("pid") and alive(owner["pid"], owner.get("start")))


def host_dict(h: Host) -> dict:
    return {"name": h.name, "address": str(h.address), "user": h.user, "key": h.key, "port": h.port,
            "knownHosts": h.known_hosts, "command": h.command}


def host_of(d: dict) -> Host:
    return Host(name=d["name"], address=IPv4Address(d["address"]), user=d.get("user", "root"), key=d.get("key"),
                port=int(d.get("port", 22)), known_hosts=d.get("knownHosts"), command=d.get("command", "podlab"))


def new(name: str, *, source: str, routing: str, hosts: list[Host], placement: dict[str, str], mtu: int,
        port: int, vni: int, node_ips: dict[str, str]) -> dict:
    me = os.getpid()
    return {"name": name, "status": "creating", "owner": {"pid": me, "start": start_time(me)}, "source": source,
            "routing": routing, "hosts": [host_dict(h) for h in hosts], "placement": placement,
            "nodes": list(placement), "nodeIPs": node_ips, "mtu": mtu, "tunnel": {"port": port, "vni": vni},
            "pending": [h.name for h in hosts], "createdAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
