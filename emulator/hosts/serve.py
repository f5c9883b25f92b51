"""``podlab host serve``: the host's side of a multi-host lab, driven by the controller over one SSH channel.

The host's part of a lab is built by the very code that builds a local lab (``builder.up`` with ``local`` = the
host's nodes): the same namespaces, records, journals, agents and daemons, so ``down`` on the host, a crash, or
``podlab cleanup`` run there all work as for any lab. The plan the controller sends is the topology file's text
plus what the host needs to know of the others (its nodes, the underlay MTU chosen for all, the tunnel's port,
VNI and peer addresses); the host validates the topology again with its own loader. Its lab record carries a
``multihost`` entry (host name, controller, peers), the record of its part.

Ops (``protocol``): ``info`` (NIC and MTU for an address, the vxlan module, the tunnel port), ``up``, ``ping``
(DF pings from local nodes), ``status`` (local nodes and pods as the agents report them), ``matrix`` (from every
local pod to the given pod IPs: the source address each receiver saw), ``exec``, ``capture`` (at local points,
the packets sent back), ``clock``, ``down``, ``labs``; and those that change the part after ``up`` (Services and
Endpoints pushed, pods applied and deleted: ``serve_svc``; NetworkPolicies and the other hosts' pods pushed:
``serve_netpol``); ``mirror`` (this host's objects, on change, for
the controller's API server: ``serve_mirror``).

The real stdin/stdout are moved to private descriptors at start; fd 0/1/2 then point at /dev/null and a log
file, so the agents and daemons the build forks never hold the SSH channel open or write into the protocol.

Every verb of the controller starts one serve per host, so the serve starts slim (``emulator.cli.entry`` runs it
without the CLI): at import only the protocol, the lab records and the stretch; each op imports what it needs when
it is first asked (``down``: the teardown; ``up``: the loader and builder; ``status``/``exec``: the Lab handle).
Right after the hello, a background thread loads the Lab handle and the teardown and installs the lab components
(which ``up`` and ``down`` consult as on one machine) through the ``install`` callable the entry gives (the
composition root lives above this layer): the controller is usually still starting then. Ops that need the
components wait for it.
"""
from __future__ import annotations

import dataclasses
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, IO

from emulator.errors import HostError, LabTimeoutError, NotFoundError, PodlabError
from emulator.hosts import protocol, serve_mirror, serve_netpol, serve_svc, stretch
from emulator.state import record
from emulator.state.paths import ensure_state_root, state_root

Progress = Callable[[str], None]


def hello() -> dict[str, Any]:
    return {"protocol": protocol.PROTOCOL, "version": protocol.podlab_version(), "hostname": socket.gethostname(),
            "uid": os.geteuid(), "kernel": platform.release(), "python": sys.version.split()[0]}


def op_info(req: dict, progress: Progress) -> dict:
    address, port = req["address"], int(req.get("port", 0))
    nic = stretch.nic_of(address)
    vxlan = os.path.isdir("/sys/module/vxlan") or subprocess.run(
        ["modprobe", "-n", "-q", "vxlan"], capture_output=True).returncode == 0
    in_use = False
    if port:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            in_use = True
        finally:
            s.close()
    ours = [lab for lab in record.all_labs() if (record.load(lab) or {}).get("multihost")]
    return {"nic": nic[0] if nic else None, "mtu": nic[1] if nic else None, "vxlan": vxlan, "portInUse": in_use,
            "multihostLabs": ours}


def op_up(req: dict, progress: Progress) -> dict:
    from emulator.lab import builder
    from emulator.topology import names
    from emulator.topology.loader import loads
    plan = req["plan"]
    inventory = None
    if plan.get("inventory") is not None:  # the hosts came from --hosts: the loader checks node `host:` by it
        fd, inventory = tempfile.mkstemp(prefix="podlab-inventory-", suffix=".yaml")
        with os.fdopen(fd, "w") as f:
            f.write(plan["inventory"])
    try:
        topo = loads(plan["topology"], plan["source"], name=plan["name"], routing=plan["routing"], hosts=inventory)
    finally:
        if inventory is not None:
            os.unlink(inventory)
    topo = dataclasses.replace(topo, underlay=dataclasses.replace(topo.underlay, mtu=plan["mtu"]))
    local = frozenset(plan["nodes"])
    st = plan["stretch"]
    spec = stretch.StretchSpec(lab=topo.name, underlay_ns=names.underlay_ns(topo.name), bridge=names.UNDERLAY_BRIDGE,
                               address=st["address"], nic=st["nic"], peers=tuple(st["peers"]), port=st["port"],
                               vni=st["vni"], mtu=plan["mtu"])
    ensure_state_root()
    extra = {"multihost": {"host": plan["host"], "controller": plan.get("controller"), "stretch": st,
                           "allNodes": [n.name for n in topo.nodes]}}
    stuck = builder.up(topo, progress, plan.get("timeout"), local=local, after_network=lambda: stretch.attach(spec),
                       record_extra=extra)
    return {"stuck": stuck, "nodes": sorted(local)}


def _ping(lab: str, node: str, ip: str, size: int) -> bool:
    from emulator.lab.api import Lab
    return Lab(lab).exec(node, ["ping", "-n", "-q", "-c", "2", "-i", "0.2", "-W", "2", "-M", "do", "-s", str(size),
                                ip], timeout=10).returncode == 0


def op_ping(req: dict, progress: Progress) -> list[bool]:
    pairs = req["pairs"]
    with ThreadPoolExecutor(max(1, min(8, len(pairs)))) as ex:
        return list(ex.map(lambda p: _ping(req["lab"], p["from"], p["to"], p["size"]), pairs))


def op_status(req: dict, progress: Progress) -> dict:
    from emulator.lab.api import Lab
    lab = Lab(req["lab"])
    if record.load(lab.name) is None:
        raise NotFoundError("lab", lab.name, f"host {socket.gethostname()}")
    nodes = [{"name": n.name, "ready": n.ready, "ip": n.ip, "podCIDR": n.pod_cidr} for n in lab.nodes]
    pods = []
    for ns, name in lab.store.keys("pods"):
        obj = lab.store.with_status("pods", name, ns) or {}
        st = obj.get("status") or {}
        pods.append({"name": name, "namespace": ns, "node": (obj.get("spec") or {}).get("nodeName"),
                     "ip": st.get("podIP"), "phase": st.get("phase", "Pending")})
    return {"nodes": nodes, "pods": pods, "status": (record.load(lab.name) or {}).get("status")}


def op_matrix(req: dict, progress: Progress) -> list[dict]:
    from emulator.check import probes
    from emulator.lab.api import Lab
    lab = Lab(req["lab"])
    port = int(req.get("port", 8080))
    pairs = [(src, t) for src in lab.store.names("pods") for t in req["targets"]]

    def probe(pair: tuple[str, dict]) -> dict:
        # a pod just reported Running may still be binding its port: a pair gets a few seconds to answer
        src, t = pair
        deadline = time.monotonic() + float(req.get("settle", 5.0))
        while True:
            seen = probes.observed_source(lab, src, t["ip"], port)
            if seen is not None or time.monotonic() > deadline:
                return {"src": src, "dst": t["name"], "seen": seen}
            time.sleep(0.2)
    return [r for _, r in probes.matrix(pairs, probe)]


def op_converged(req: dict, progress: Progress) -> float:
    """Wait until every local node holds a BIRD route for every other node's slice (``slices``: {node: CIDR}
    of the whole lab, all hosts); the seconds waited, or ``LabTimeoutError`` naming a node and what it lacks."""
    from emulator.lab.api import Lab
    from emulator.routing import held_routes
    from emulator.topology import names
    lab, slices, t0 = req["lab"], req["slices"], time.monotonic()
    mine = [n.name for n in Lab(lab).nodes]
    while True:
        missing = {}
        for node in mine:
            have = {str(r.dst) for r in held_routes.read(names.node_ns(lab, node))
                    if r.protocol == held_routes.RTPROT_BIRD}
            lacking = [c for n, c in slices.items() if n != node and c not in have]
            if lacking:
                missing[node] = lacking
        if not missing:
            return time.monotonic() - t0
        if time.monotonic() - t0 > float(req.get("timeout", 20)):
            node, lacking = sorted(missing.items())[0]
            raise LabTimeoutError(f"BGP did not converge across hosts: {node} lacks {', '.join(lacking[:4])} "
                                  "(see `podlab bgp status` on its host and the node's var/log/bird.log)", obj=node)
        time.sleep(0.05)


def op_exec(req: dict, progress: Progress) -> dict:
    from emulator.lab.api import Lab
    r = Lab(req["lab"]).exec(req["target"], req["argv"], timeout=req.get("timeout", 60))
    return {"returncode": r.returncode, "stdout": r.stdout, "stderr": r.stderr}


def op_capture(req: dict, progress: Progress) -> dict:
    """Capture at this host's points (``capture.Capture``, the one-host machinery) until each saw ``count``
    packets or ``duration`` passed; the packets go back to the controller, which merges every host's."""
    import base64
    from emulator.lab.api import Lab
    from emulator.tools import capture, targets
    lab = Lab(req["lab"])
    points = [targets.resolve(lab, t) for t in req["points"]]
    cap = capture.Capture(points, bpf=req.get("filter"), count=req.get("count"))
    with cap:
        progress(f"capturing on {', '.join(p.label for p in points)}")
        cap.wait(duration=float(req["duration"]))
    packets = list(cap.packets)  # stopped: its reader threads are joined
    return {"interfaces": [dataclasses.asdict(i) for i in cap.interfaces], "counts": cap.per_point(),
            "packets": [[p.ts_us, p.orig_len, p.iface, base64.b64encode(p.data).decode()] for p in packets]}


def op_clock(req: dict, progress: Progress) -> float:
    """This host's clock (``time.time()``): the controller measures its offset from the round trip."""
    return time.time()


def op_down(req: dict, progress: Progress) -> dict:
    from emulator.lab import teardown
    return {"removed": teardown.destroy(req["lab"], progress=progress)}


def op_cli(req: dict, progress: Progress) -> dict:
    """``podlab --lab LAB ARGV...`` on this host, on its part of the lab (``emulator.hosts.forward``): its output
    and exit status. ``PODLAB_LOCAL_PART`` makes it act on the local part even where this host is the controller
    too (whose record would send it back to the hosts)."""
    env = dict(os.environ, PODLAB_LOCAL_PART="1")
    r = subprocess.run([sys.executable, "-m", "emulator", "--lab", req["lab"], *req["argv"]], capture_output=True,
                       text=True, env=env, stdin=subprocess.DEVNULL, timeout=float(req.get("timeout", 120)))
    return {"returncode": r.returncode, "stdout": r.stdout, "stderr": r.stderr}


def op_labs(req: dict, progress: Progress) -> list[str]:
    return record.all_labs()


OPS: dict[str, Callable[[dict, Progress], Any]] = {
    "info": op_info, "up": op_up, "ping": op_ping, "converged": op_converged, "status": op_status, "matrix": op_matrix, "exec": op_exec,
    "down": op_down, "labs": op_labs, "cli": op_cli, "capture": op_capture, "clock": op_clock, **serve_svc.OPS,
    **serve_mirror.OPS, **serve_netpol.OPS}
NEEDS_COMPONENTS = frozenset({"up", "down"})  # builder.up and teardown.destroy consult the installed components


def _private_stdio() -> tuple[IO[str], IO[bytes]]:
    """The protocol's own copies of stdin/stdout; fd 0/1/2 then point at /dev/null and the serve log."""
    rin, rout = os.dup(0), os.dup(1)
    os.set_inheritable(rin, False)
    os.set_inheritable(rout, False)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    root = state_root()
    root.mkdir(parents=True, exist_ok=True)
    log = os.open(str(root / "host-serve.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    return os.fdopen(rin, "r"), os.fdopen(rout, "wb", buffering=0)


def _prefetch(install: Callable[[], None]) -> None:
    try:
        from emulator.lab import api, teardown  # noqa: F401
        install()
    except Exception:  # the request that needs them imports or installs them again, and reports the error
        return


def serve(install: Callable[[], None]) -> int:
    """Answer the controller's requests until it closes the channel; ``install`` installs the lab components
    (called once, before the first op that needs them)."""
    if os.geteuid() != 0:
        raise HostError("podlab host serve needs root (it builds network namespaces); run it with sudo -n")
    rin, rout = _private_stdio()
    lock = threading.Lock()

    def send(msg: dict) -> None:
        with lock:
            rout.write(protocol.encode(msg))
    send({"hello": hello()})
    # While the controller is still starting (its entry connects before it imports the CLI), load what most
    # requests need — the lab handle, the teardown, the components — in the background. Ops that need the
    # components wait for it; the others import what they need themselves (the import system serialises).
    prefetch = threading.Thread(target=_prefetch, args=(install,), daemon=True, name="prefetch")
    prefetch.start()
    installed = False
    for line in rin:
        if not line.strip():
            continue
        req = json.loads(line)
        rid = req.get("id")
        fn = OPS.get(req.get("op", ""))
        try:
            if fn is None:
                raise HostError(f"unknown request {req.get('op')!r}; this podlab {protocol.podlab_version()} knows "
                                f"{', '.join(OPS)}")
            if not installed and req.get("op") in NEEDS_COMPONENTS:
                prefetch.join()
                install()  # idempotent; raises here, in the request, if the prefetch could not install them
                installed = True
            result = fn(req, lambda s, rid=rid: send({"id": rid, "progress": s}))
            send({"id": rid, "ok": True, "result": result})
        except (PodlabError, OSError, KeyError, ValueError, subprocess.SubprocessError) as e:
            send({"id": rid, "ok": False, "error": protocol.error_body(e)})
    return 0
