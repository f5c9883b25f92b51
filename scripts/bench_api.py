#!/usr/bin/env python3
"""Benchmark the lab's API server (issue 12's targets); print one JSON line. Needs root, the lock, the venv's kubectl.

    sudo python3 scripts/bench_api.py --nodes 10 --pods 100 --rounds 10

On a lab of N × M pause pods (a real lab: agents, kernel namespaces):

* ``get_pods_A_s``: wall time of ``kubectl get pods -A`` (kubectl's own start included, discovery cached);
* ``watch_ms``: from a change written to the store (a pod status, as an agent writes it) until an open
  ``watch`` receives it;
* ``apply_running_ms`` / ``podlab_running_ms``: ``kubectl apply -f pod.yaml`` until ``kubectl get -w`` prints the
  pod Running, against ``podlab apply -f pod.yaml`` until the agent reports it Running (same pod, same node; both
  commands' own start included);
* ``idle_cpu_pct`` / ``rss_mb``: the API server's CPU over 10 idle seconds and its resident memory.

Streaming (issue 17; ``--streams-only`` measures just these on the same lab):

* ``exec_true_s``: wall time of ``kubectl exec POD -- true`` (kubectl's start included);
* ``exec_stdout_MBps``: ``kubectl exec POD -- head -c 500M /dev/zero`` read to the end by this process;
* ``portforward_MBps``: 500 MB from a server on the pod's loopback through ``kubectl port-forward``;
* ``exec_100_concurrent_s``: 100 execs at once through the Python client (threads), until the last ends.

And on a store-only lab of ``--list`` pods (objects and statuses as agents write them; no kernel objects):
``list_s_first``/``list_s_median``: server time of one LIST of every pod (measured in the server process, from the
request to its body), 3 s after the server started: an idle server has by then computed every object's JSON,
which a LIST reuses until the object changes; ``list_s_first`` is the first LIST, ``list_s_median`` the next ones.
Not a test: the figures go to the README.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from emulator.apiserver import component  # noqa: E402
from emulator.lab import builder, teardown  # noqa: E402
from emulator.lab.api import Lab  # noqa: E402
from emulator.topology.loader import loads  # noqa: E402
from bench_up import topology_text  # noqa: E402

KUBECTL = str(Path(sys.executable).parent / "kubectl")


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(int(len(xs) * p), len(xs) - 1)]


class Api:
    def __init__(self, lab: Lab) -> None:
        d = component.api_dir(lab.paths)
        self.port = json.loads((d / "status.json").read_text())["port"]
        self.pid = json.loads((d / "status.json").read_text())["pid"]
        self.token = (d / "token").read_text().strip()
        self.tls = ssl.create_default_context(cafile=str(d / "ca.crt"))

    def conn(self) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection("127.0.0.1", self.port, context=self.tls, timeout=60)

    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self.token}"}


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def watch_latency(lab: Lab, api: Api, rounds: int) -> list[float]:
    """A status write (as an agent writes it) until the open watch delivers it."""
    got: dict[str, float] = {}
    ready = threading.Event()
    c = api.conn()
    rv = lab.store.resource_version()
    c.request("GET", f"/api/v1/pods?watch=true&resourceVersion={rv}", headers=api.headers())
    r = c.getresponse()

    def read() -> None:
        ready.set()
        while len(got) < rounds:
            line = r.readline()
            if not line:
                return
            ev = json.loads(line)
            mark = (ev["object"].get("metadata", {}).get("annotations") or {}).get("bench")
            if mark:
                got.setdefault(mark, time.perf_counter())
    t = threading.Thread(target=read, daemon=True)
    t.start()
    ready.wait()
    view = lab.pods[0]
    out = []
    for i in range(rounds):
        obj = lab.store.get("pods", view.name, view.namespace)
        obj["metadata"].setdefault("annotations", {})["bench"] = str(i)
        t0 = time.perf_counter()
        lab.store.put("pods", view.name, obj)
        deadline = time.monotonic() + 5
        while str(i) not in got and time.monotonic() < deadline:
            time.sleep(0.0005)
        out.append((got.get(str(i), time.perf_counter()) - t0) * 1000)
    c.close()
    return out


def apply_running(lab: Lab, name: str, node: str, env: dict, tmp: Path) -> float:
    f = tmp / f"{name}.yaml"
    f.write_text(f"apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec: {{nodeName: {node}, containers: "
                 "[{name: c, image: pause}]}\n")
    w = subprocess.Popen([KUBECTL, "get", "pods", "-w", "--field-selector", f"metadata.name={name}"],
                         stdout=subprocess.PIPE, text=True, env=env)
    time.sleep(0.5)  # its LIST and WATCH are open
    t0 = time.perf_counter()
    subprocess.run([KUBECTL, "apply", "-f", str(f)], check=True, capture_output=True, env=env)
    while True:
        line = w.stdout.readline()
        if not line or "Running" in line:
            break
    took = (time.perf_counter() - t0) * 1000
    w.kill()
    w.wait()
    subprocess.run([KUBECTL, "delete", "pod", name], check=True, capture_output=True, env=env)
    return took


def podlab_running(lab: Lab, name: str, node: str, tmp: Path) -> float:
    """``podlab apply -f`` (the command, its own start included) until the agent reports the pod Running."""
    f = tmp / f"{name}.yaml"
    f.write_text(f"apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec: {{nodeName: {node}, containers: "
                 "[{name: c, image: pause}]}\n")
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "emulator", "--lab", lab.name, "apply", "-f", str(f)], check=True,
                   capture_output=True)
    lab.wait_pod(name)
    took = (time.perf_counter() - t0) * 1000
    lab.delete_pod(name)
    return took


def streams(lab: Lab, env: dict, rounds: int, out: dict) -> None:
    import socket
    pod = lab.pods[len(lab.pods) // 2].name
    base = [KUBECTL, "exec", pod, "--"]
    subprocess.run([*base, "true"], check=True, env=env, capture_output=True)
    walls = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        subprocess.run([*base, "true"], check=True, env=env, capture_output=True)
        walls.append(time.perf_counter() - t0)
    out["exec_true_s_median"], out["exec_true_s_p90"] = round(statistics.median(walls), 3), round(pct(walls, .9), 3)
    size = 500 * 1000 * 1000
    t0 = time.perf_counter()
    p = subprocess.Popen([*base, "head", "-c", str(size), "/dev/zero"], stdout=subprocess.PIPE, env=env)
    got = 0
    while chunk := p.stdout.read1(1 << 20):
        got += len(chunk)
    p.wait()
    assert got == size, got
    out["exec_stdout_MBps"] = round(size / (time.perf_counter() - t0) / 1e6, 1)
    srv = subprocess.Popen([*base, "socat", "TCP-LISTEN:9000,bind=127.0.0.1,reuseaddr,fork",
                            f"SYSTEM:head -c {size} /dev/zero"], env=env, stderr=subprocess.DEVNULL)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pf = subprocess.Popen([KUBECTL, "port-forward", f"pod/{pod}", f"{port}:9000"], stdout=subprocess.PIPE, env=env,
                          text=True)
    try:
        pf.stdout.readline()
        time.sleep(0.5)
        t0 = time.perf_counter()
        with socket.create_connection(("127.0.0.1", port)) as c:
            got = 0
            while chunk := c.recv(1 << 20):
                got += len(chunk)
        assert got == size, got
        out["portforward_MBps"] = round(size / (time.perf_counter() - t0) / 1e6, 1)
    finally:
        for proc in (pf, srv):
            proc.kill()
            proc.wait()
    from kubernetes import client, config
    from kubernetes.stream import stream
    capi = client.CoreV1Api(config.new_client_from_config(config_file=env["KUBECONFIG"]))
    names = [v.name for v in lab.pods]
    done: list[str] = []

    def one(i: int) -> None:
        done.append(stream(capi.connect_get_namespaced_pod_exec, names[i * 7 % len(names)], "default",
                           command=["echo", str(i)], stdout=True, stderr=True, stdin=False, tty=False))
    threads = [threading.Thread(target=one, args=(i,)) for i in range(100)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out["exec_100_concurrent_s"] = round(time.perf_counter() - t0, 2)
    assert len(done) == 100


def list_server_time(count: int, rounds: int) -> tuple[float, float]:
    """A store-only lab of ``count`` pods (no kernel objects) served in this process; server time per LIST."""
    os.environ["PODLAB_STATE_DIR"] = tempfile.mkdtemp(prefix="podlab-bench-api-")
    from emulator.apiserver import certs, server
    from emulator.state import manifests, record
    from emulator.state.paths import LabPaths
    from emulator.state.store import Store
    nodes = max(count // 250 + 1, 1)
    text = topology_text("apislist", nodes, -(-count // nodes), "vxlan", "pause")
    topo = loads(text, "<bench>")
    paths = LabPaths(topo.name)
    record.save(record.new(topo))
    st = Store(paths.store)
    st.init()
    for ns in manifests.lab_namespaces(topo):
        st.put("namespaces", ns.name, manifests.namespace_manifest(ns))
    for n in topo.nodes:
        st.put("nodes", n.name, manifests.node_manifest(topo, n))
    for i, p in enumerate(topo.pods):
        m = manifests.pod_manifest(p)
        st.put("pods", p.name, m)
        st.put_status("pods", p.name, {"name": p.name, "namespace": "default", "phase": "Running",
                                       "uid": m["metadata"]["uid"], "nodeName": p.node, "hostIP": "192.168.56.11",
                                       "podIP": f"10.244.{i // 250}.{i % 250 + 2}", "startTime": manifests.now(),
                                       "containerStatuses": [{"name": "main", "image": "pause", "ready": True,
                                                              "restartCount": 0, "state": {"running": {
                                                                  "startedAt": manifests.now()}}, "pid": 1}],
                                       "sandbox": {"id": f"{i:064x}", "netns": f"x-{p.name}"}})
    certs.make(paths.root / "apiserver", topo.name)
    httpd = server.start(topo.name)
    times: list[float] = []
    orig = httpd.api.handle

    def timed(req):
        t0 = time.perf_counter()
        resp = orig(req)
        times.append(time.perf_counter() - t0)
        return resp
    httpd.api.handle = timed
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    api = Api(Lab(topo.name))
    time.sleep(3)  # an idle server has computed its objects' JSON by now (see cache.follow)
    for _ in range(rounds):
        c = api.conn()
        c.request("GET", "/api/v1/pods", headers=api.headers())
        body = c.getresponse().read()
        c.close()
        assert len(json.loads(body)["items"]) == len(topo.pods) >= count
    httpd.shutdown()
    return times[0], statistics.median(times[1:] or times)  # the first builds every object's JSON; then cached


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=10)
    ap.add_argument("--pods", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--list", type=int, default=5000, help="pods in the store-only LIST measurement")
    ap.add_argument("--name", default="apisbench")
    ap.add_argument("--streams-only", action="store_true", help="measure only exec / port-forward (issue 17)")
    a = ap.parse_args()
    topo = loads(topology_text(a.name, a.nodes, a.pods, "vxlan", "pause"), source="<bench>")
    out: dict = {"nodes": a.nodes, "pods": a.nodes * a.pods}
    tmp = Path(tempfile.mkdtemp(prefix="podlab-bench-api-"))
    env = {**os.environ, "KUBECONFIG": str(tmp / "kubeconfig"), "KUBECACHEDIR": str(tmp / "cache")}
    os.environ["KUBECONFIG"] = env["KUBECONFIG"]
    try:
        builder.up(topo)
        lab = Lab(a.name)
        api = Api(lab)
        subprocess.run([KUBECTL, "get", "pods", "-A"], check=True, capture_output=True, env=env)  # warm the cache
        streams(lab, env, a.rounds, out)
        if a.streams_only:
            print(json.dumps(out))
            return 0
        walls = []
        for _ in range(a.rounds):
            t0 = time.perf_counter()
            r = subprocess.run([KUBECTL, "get", "pods", "-A"], check=True, capture_output=True, env=env)
            walls.append(time.perf_counter() - t0)
        assert len(r.stdout.splitlines()) == a.nodes * a.pods + 1
        out["get_pods_A_s_median"], out["get_pods_A_s_p90"] = round(statistics.median(walls), 3), round(
            pct(walls, 0.9), 3)
        w = watch_latency(lab, api, a.rounds * 5)
        out["watch_ms_median"], out["watch_ms_p90"] = round(statistics.median(w), 2), round(pct(w, 0.9), 2)
        k = [apply_running(lab, f"kb-{i}", f"n{1 + i % a.nodes}", env, tmp) for i in range(a.rounds)]
        p = [podlab_running(lab, f"pb-{i}", f"n{1 + i % a.nodes}", tmp) for i in range(a.rounds)]
        out["apply_running_ms_median"], out["podlab_running_ms_median"] = round(statistics.median(k), 1), round(
            statistics.median(p), 1)
        time.sleep(2)
        c0 = cpu_seconds(api.pid)
        time.sleep(10)
        out["idle_cpu_pct"] = round((cpu_seconds(api.pid) - c0) / 10 * 100, 2)
        out["rss_mb"] = round(rss_mb(api.pid), 1)
    finally:
        teardown.destroy(a.name)
    out["list_pods"] = a.list
    cold, warm = list_server_time(a.list, 5)
    out["list_s_first"], out["list_s_median"] = round(cold, 3), round(warm, 3)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
