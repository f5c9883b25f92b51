"""Verbs about one object, run on the host that holds it: ``describe``, ``logs``, ``bgp``, ``link``, ``agent``,
``cni`` and ``netpol`` of a multi-host lab.

Each of these verbs reads or changes one pod or node (a node's BIRD, a pod's cable, a node's agent), and the host
holding that object has everything the verb needs in its own part of the lab: so the controller finds the
object's host (``controller.status``: the lab's placement and every host's pods) and runs the very same command
line there (``host serve``'s ``cli`` op: ``podlab --lab LAB ARGS...`` as a subprocess of the serve, its output and
exit status sent back), over the command's one connection per host. What the verb prints is the host's own,
unchanged (kubectl's forms where it has them); the only difference a user sees is that it works from the
controller.

Which host: the pod's or node's (``describe pod|node``, ``logs``, ``bgp stop|start``, ``link set|clear``,
``agent``, ``cni``); for ``describe`` of a Service, Endpoints or Namespace, the first host (the controller pushes
Services and Endpoints to every host); a verb with no target (``bgp status``, ``link show`` of everything) runs
on every host, each host's output after a ``# host NAME`` line (with ``-o json``: one list of every host's
items). ``logs -f`` needs a stream the request/response protocol does not carry: ``follow`` runs it over a
channel of its own to the pod's host (``host stream``, as the API server's ``kubectl logs -f``: ``api_streams``),
printing what comes until the container's process there changes (the pod ended, or its container restarted) or
Ctrl-C closes the channel (the host's relay then ends).

``netpol``: every host holds every policy and every pod of the lab (its own in its store, the others' pushed by
the controller, ``hosts.netpols``), so ``netpol matrix`` (the table computed from the policies) runs on the first
host; ``netpol explain SRC DST`` on the hosts of both pods (each shows the verdict and the packet counters of its
own node's chains: egress on the source's host, ingress on the destination's); ``netpol status`` on every host
(each lists its nodes' enforcers). ``netpol matrix --probe`` runs on every host with ``--rows-here -o json``
(each probes from its own pods to every pod of the lab) and the controller joins the rows into one table
(``cli.netpol_cmds.merge_rows``).
"""
from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import dataclass
from typing import Any, BinaryIO

from emulator.errors import HostUnreachableError, NotFoundError, UsageError
from emulator.hosts import controller, records
from emulator.hosts.fanout import each
from emulator.hosts.sessions import Sessions, for_command
from emulator.topology.hosts_section import Host

#: verbs a multi-host lab runs on the host of their target
VERBS = frozenset({"describe", "logs", "bgp", "link", "agent", "cni", "netpol"})
POD_KINDS = frozenset({"pod", "pods", "po"})
NODE_KINDS = frozenset({"node", "nodes", "no"})


@dataclass(frozen=True)
class Result:
    stdout: str
    stderr: str
    returncode: int


def targets(verb: str, args: Any) -> tuple[str, list[str]] | None:
    """(``pod``|``node``|``any``, names) the command acts on; None: every host."""
    if verb == "describe":
        kind, name = str(args.kind), args.name
        if "/" in kind and name is None:
            kind, name = kind.split("/", 1)
        if name is None:
            raise UsageError("describe across hosts needs a name (describe KIND NAME)", obj=kind)
        if kind.lower() in POD_KINDS:
            return "pod", [name]
        if kind.lower() in NODE_KINDS:
            return "node", [name]
        return "any", []
    if verb == "logs":
        return "pod", [str(args.pod).split("/")[-1]]
    if verb in ("agent", "cni"):
        return "node", [args.node]
    if verb == "bgp":
        node = getattr(args, "node", None)
        return ("node", [node]) if node else None
    if verb == "netpol":
        return _netpol(args)
    if verb == "link":
        names = [args.target] if getattr(args, "target", None) else list(getattr(args, "targets", None) or [])
        return ("any", [n.split(":")[0] for n in names]) if names else None
    return None


def _netpol(args: Any) -> tuple[str, list[str]] | None:
    if args.netpol_verb == "matrix":
        return None if getattr(args, "probe", False) else ("any", [])
    if args.netpol_verb == "explain":
        return "pod", [t.split("/")[-1] for t in (args.src, args.dst) if not _is_ipv4(t)]
    return None


def _is_ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
        return True
    except ValueError:
        return False


def run(lab: str, verb: str, args: Any, argv: list[str]) -> list[tuple[str, Result]]:
    """Run ``argv`` (the command line without ``--lab``) on the host(s) of its target; [(host, result)]."""
    with for_command() as ss:
        rec = records.load(lab) or {}
        hosts = {d["name"]: records.host_of(d) for d in rec.get("hosts", [])}
        where = targets(verb, args)
        names = _hosts_of(lab, where, rec, ss) if where is not None else list(hosts)
        res = each([hosts[n] for n in names],
                   lambda h: ss.get(h).request("cli", lab=lab, argv=argv, timeout=120))
    out = []
    for name in names:
        r = res[name]
        if isinstance(r, BaseException):
            raise r
        out.append((name, Result(r["stdout"], r["stderr"], int(r["returncode"]))))
    return out


def logs_query(args: Any) -> tuple[str, str, dict[str, list[str]]]:
    """(namespace, pod, the ``pods/log`` query) of ``podlab logs`` arguments (``POD``, ``pod/POD``, ``NS/POD``)."""
    ns, _, name = str(args.pod).rpartition("/")
    ns = getattr(args, "namespace", None) or (ns if ns not in ("", "pod", "pods", "po") else "default")
    query = {"follow": ["true"] if getattr(args, "follow", False) else ["false"]}
    if getattr(args, "container", None):
        query["container"] = [args.container]
    if getattr(args, "tail", None) is not None:
        query["tailLines"] = [str(args.tail)]
    return ns, name, query


def follow(lab: str, args: Any, out: BinaryIO) -> int:
    """``podlab logs -f`` of a pod on any host: its log written to ``out`` as it comes (see the docstring)."""
    from emulator.apiserver.status import ApiError
    from emulator.hosts.api_streams import Links, checked
    ns, name, query = logs_query(args)
    with for_command() as ss:
        rec = records.load(lab) or {}
        hosts = {d["name"]: records.host_of(d) for d in rec.get("hosts", [])}
        host = hosts[_hosts_of(lab, ("pod", [name]), rec, ss)[0]]
    links = Links()
    try:
        ch, st = links.open(host, {"op": "logs", "lab": lab, "namespace": ns, "name": name, "query": query})
        checked(ch, st)
        with ch:
            while data := ch.recv(1 << 16):
                out.write(data)
                out.flush()
    except ApiError as e:
        raise (NotFoundError("pod", name, f"multi-host lab {lab}") if e.code == 404 else
               UsageError(f"host {host.name}: {e.message}", obj=name)) from None
    finally:
        links.close()
    return 0


def interactive(lab: str, host: Host, argv: list[str], stdin: BinaryIO, out: BinaryIO, err: BinaryIO) -> int:
    """``podlab ARGV`` (``exec -i``, ``run -i``) on ``host``'s part over a channel of its own (``host stream``'s
    ``podlab`` op): ``stdin`` streamed to it (its end, the command's), its output as it comes; its exit status."""
    import threading
    from emulator.apiserver.status import ApiError
    from emulator.hosts.api_streams import Links
    links = Links()
    try:
        ch, st = links.open(host, {"op": "podlab", "lab": lab, "argv": argv})
    except ApiError as e:
        links.close()
        raise HostUnreachableError(e.message, obj=host.name) from None

    def feed() -> None:
        try:
            while data := os.read(stdin.fileno(), 1 << 16):
                ch.sendall(data)
            ch.shutdown_write()
        except (OSError, EOFError):
            return  # the channel ended first

    def errors() -> None:
        while data := ch.recv_stderr(1 << 16):
            err.write(data)
            err.flush()
    threading.Thread(target=feed, daemon=True, name="stdin").start()
    t = threading.Thread(target=errors, daemon=True, name="stderr")
    t.start()
    try:
        with ch:
            while data := ch.recv(1 << 16):
                out.write(data)
                out.flush()
            t.join(5)
            code = ch.recv_exit_status()
    finally:
        links.close()
    if code < 0:
        raise HostUnreachableError(f"host {host.name} stopped answering during `podlab {' '.join(argv)[:60]}`; "
                                   "check that it is up", obj=host.name)
    return code


def _hosts_of(lab: str, where: tuple[str, list[str]], rec: dict, ss: Sessions) -> list[str]:
    kind, names = where
    placement: dict[str, str] = rec.get("placement", {})
    if kind == "node" and all(n in placement for n in names):
        return list(dict.fromkeys(placement[n] for n in names))
    if kind == "any" and not names:
        return [rec["hosts"][0]["name"]]
    st = controller.status(lab, ss)
    pods = {p["name"]: p["host"] for p in st["pods"]}
    nodes = {n["name"]: n["host"] for n in st["nodes"]}
    found = {"pod": pods, "node": nodes}.get(kind, pods | nodes)
    missing = [n for n in names if n not in found]
    if missing:
        what = {"pod": "pod", "node": "node"}.get(kind, "pod or node")
        raise UsageError(f"{what} {missing[0]} is not in multi-host lab {lab}", obj=missing[0])
    return list(dict.fromkeys(found[n] for n in names))


def merged_json(results: list[tuple[str, Result]]) -> str:
    """Every host's ``-o json`` output as one: a List of their items in host order (the first host's List with
    every host's items, where the hosts answered Lists, as ``link show`` does)."""
    docs = [json.loads(r.stdout) if r.stdout.strip() else {"items": []} for _host, r in results]
    items: list[Any] = []
    for doc in docs:
        items += doc["items"] if isinstance(doc, dict) and isinstance(doc.get("items"), list) else \
            (doc if isinstance(doc, list) else [doc])
    lists = [d for d in docs if isinstance(d, dict) and "items" in d]
    merged: Any = {**lists[0], "items": items} if lists else items
    return json.dumps(merged, indent=2) + "\n"
