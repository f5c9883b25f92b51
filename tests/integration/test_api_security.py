"""The API server under bad input and misuse (one lab for the module): no request without the lab's token
succeeds, plain http is refused, it listens on 127.0.0.1 only, its secrets are 0600; malformed bodies, wrong
content types, oversized bodies, unknown fields, invalid names and missing namespaces get the real server's 4xx
Status, change nothing, and the server keeps serving; twenty concurrent clients creating, patching and deleting
pods for 30 s lose no update, see no 5xx and no duplicate pod IP, and the store and the kernel agree at the end."""
from __future__ import annotations

import http.client
import json
import os
import random
import socket
import ssl
import threading
import time
from pathlib import Path

import pytest
import yaml

from emulator.apiserver import component
from emulator.lab import teardown
from emulator.lab.api import Lab
from emulator.netlink import netns
from emulator.topology.loader import loads
from tests.integration.conftest import KUBECONFIG, unique_name

TOPOLOGY = """
version: 1
name: x
nodes: [{name: node-1}, {name: node-2}]
pods:
  - {name: a}
"""
POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "c",
                                                                                              "image": "pause"}]}}


@pytest.fixture(scope="module")
def lab():
    name = unique_name("apis")
    try:
        yield Lab.up(loads(TOPOLOGY, "<security>", name=name))
    finally:
        teardown.destroy(name)


class Client:
    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        d = component.api_dir(lab.paths)
        self.port = json.loads((d / "status.json").read_text())["port"]
        self.token = (d / "token").read_text().strip()
        self.tls = ssl.create_default_context(cafile=str(d / "ca.crt"))

    def request(self, method: str, path: str, body: bytes | str | None = None, ctype: str = "application/json",
                token: str | None = "", headers: dict | None = None) -> tuple[int, dict | str]:
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.tls, timeout=30)
        h = {"Content-Type": ctype, **(headers or {})}
        tok = self.token if token == "" else token
        if tok:
            h["Authorization"] = f"Bearer {tok}"
        try:
            conn.request(method, path, body=body.encode() if isinstance(body, str) else body, headers=h)
            r = conn.getresponse()
            data = r.read().decode()
        finally:
            conn.close()
        try:
            return r.status, json.loads(data)
        except ValueError:
            return r.status, data


@pytest.fixture(scope="module")
def api(lab) -> Client:
    return Client(lab)


def pods_path(ns: str = "default") -> str:
    return f"/api/v1/namespaces/{ns}/pods"


def test_token_required(api: Client) -> None:
    for tok in (None, "wrong", api.token[:-1] + ("x" if api.token[-1] != "x" else "y")):
        code, body = api.request("GET", pods_path(), token=tok)
        assert code == 401 and body["reason"] == "Unauthorized", (tok, body)
    code, body = api.request("POST", pods_path(), json.dumps(POD), token=None)
    assert code == 401 and api.lab.store.get("pods", "p") is None
    assert api.request("GET", "/version", token=None)[0] == 401
    assert api.request("GET", pods_path())[0] == 200


def test_plain_http_is_refused_and_only_loopback_listens(api: Client) -> None:
    with socket.create_connection(("127.0.0.1", api.port), timeout=5) as s:
        s.sendall(b"GET /api/v1/pods HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + api.token.encode() + b"\r\n\r\n")
        answer = s.recv(4096)
    assert answer.startswith(b"HTTP/1.0 400 Bad Request") and b"HTTPS server" in answer
    listening = []
    for line in open("/proc/net/tcp").read().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        if state == "0A" and int(local.split(":")[1], 16) == api.port:
            listening.append(local.split(":")[0])
    assert listening == ["0100007F"]  # 127.0.0.1 only
    assert not any(int(line.split()[1].split(":")[1], 16) == api.port for line in
                   open("/proc/net/tcp6").read().splitlines()[1:] if line.split()[3] == "0A")
    with pytest.raises(ssl.SSLError):  # a client that does not trust the lab's CA cannot talk to it
        ctx = ssl.create_default_context()
        with socket.create_connection(("127.0.0.1", api.port), timeout=5) as raw:
            ctx.wrap_socket(raw, server_hostname="127.0.0.1")


def test_secrets_are_private(lab: Lab) -> None:
    d = component.api_dir(lab.paths)
    for f in (d / "token", d / "apiserver.key", Path(KUBECONFIG)):
        assert os.stat(f).st_mode & 0o777 == 0o600, f
    assert os.stat(d).st_mode & 0o777 == 0o700
    cfg = yaml.safe_load(Path(KUBECONFIG).read_text())
    assert any(u["name"] == f"podlab-{lab.name}" for u in cfg["users"])


@pytest.mark.parametrize("body, ctype, code, reason, words", [
    ("{not json", "application/json", 400, "BadRequest", "json parse error"),
    ("kind: Pod\nmetadata: [1", "application/yaml", 400, "BadRequest", "parse error"),
    ('["a list"]', "application/json", 400, "BadRequest", "not a JSON object"),
    (json.dumps(POD), "text/plain", 415, "UnsupportedMediaType", "unknown format"),
    (json.dumps({**POD, "spec": {"containers": [{"name": "c", "imagee": "x"}]}}), "application/json", 400,
     "BadRequest", 'strict decoding error: unknown field "spec.containers[0].imagee"'),
    (json.dumps({**POD, "metadata": {"name": "Bad_Name"}}), "application/json", 422, "Invalid",
     'metadata.name: Invalid value: "Bad_Name"'),
    (json.dumps({**POD, "spec": {"hostIPC": True, "containers": [{"name": "c"}]}}), "application/json", 422,
     "Invalid", "does not emulate"),
    (json.dumps({**POD, "apiVersion": "v2"}), "application/json", 400, "BadRequest", "does not match"),
])
def test_bad_bodies_get_the_real_status_and_change_nothing(lab: Lab, api: Client, body, ctype, code, reason,
                                                           words) -> None:
    before = lab.store.resource_version()
    got, status = api.request("POST", pods_path() + "?fieldValidation=Strict", body, ctype)
    assert (got, status["reason"], status["code"]) == (code, reason, code), status
    assert words in status["message"], status["message"]
    assert lab.store.resource_version() == before  # nothing was written
    assert api.request("GET", pods_path())[0] == 200  # and the server keeps serving


def test_oversized_body_missing_namespace_and_bad_paths(lab: Lab, api: Client) -> None:
    before = lab.store.resource_version()
    big = json.dumps({**POD, "metadata": {"name": "big", "annotations": {"x": "y" * (3 * 1024 * 1024)}}})
    code, status = api.request("POST", pods_path(), big)
    assert code == 413 and status["reason"] == "RequestEntityTooLarge" and "limit is 3145728" in status["message"]
    code, status = api.request("POST", pods_path("nope"), json.dumps(POD))
    assert code == 404 and status["message"] == 'namespaces "nope" not found'
    assert api.request("GET", pods_path("nope") + "/p")[1]["reason"] == "NotFound"
    assert api.request("GET", "/api/v1/namespaces/default/pods/a%2F..%2Fb")[0] == 404
    assert api.request("GET", "/api/v1/namespaces/default/pods/../../../etc")[0] == 404
    assert api.request("GET", "/api/v1/bogus")[0] == 404
    assert api.request("DELETE", "/api/v1/nodes/node-1")[0] == 405
    code, status = api.request("GET", pods_path() + "?labelSelector=a+in+b")
    assert code == 400
    assert lab.store.resource_version() == before and api.request("GET", pods_path())[0] == 200


def test_twenty_concurrent_clients_for_thirty_seconds(lab: Lab, api: Client) -> None:
    code, counter = api.request("POST", "/api/v1/namespaces/default/services", json.dumps(
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "counter", "annotations": {"n": "0"}},
         "spec": {"ports": [{"port": 80}]}}))
    assert code == 201, counter
    stop = time.monotonic() + 30
    errors: list[str] = []
    increments = [0] * 20

    def worker(i: int) -> None:
        rng = random.Random(i)
        n = 0
        while time.monotonic() < stop:
            n += 1
            name = f"c{i}-{n}"
            code, body = api.request("POST", pods_path(), json.dumps({**POD, "metadata": {"name": name}}))
            if code >= 500 or code not in (201,):
                errors.append(f"create {name}: {code} {body}")
            if rng.random() < 0.5:
                code, body = api.request("PATCH", f"{pods_path()}/{name}", json.dumps({"metadata": {"labels": {
                    "w": str(i)}}}), "application/strategic-merge-patch+json")
                if code != 200:
                    errors.append(f"patch {name}: {code} {body}")
            while True:  # a read-modify-write with the resourceVersion: conflicts retried, none lost
                code, svc = api.request("GET", "/api/v1/namespaces/default/services/counter")
                svc["metadata"]["annotations"]["n"] = str(int(svc["metadata"]["annotations"]["n"]) + 1)
                code, body = api.request("PUT", "/api/v1/namespaces/default/services/counter", json.dumps(svc))
                if code == 200:
                    increments[i] += 1
                    break
                if code != 409:
                    errors.append(f"put counter: {code} {body}")
                    break
            if rng.random() < 0.7:
                code, body = api.request("DELETE", f"{pods_path()}/{name}")
                if code != 200:
                    errors.append(f"delete {name}: {code} {body}")
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:5]
    code, svc = api.request("GET", "/api/v1/namespaces/default/services/counter")
    assert int(svc["metadata"]["annotations"]["n"]) == sum(increments) > 20  # no lost update
    left = {n for ns, n in lab.store.keys("pods") if ns == "default"}  # (not the cluster's own mirror pods)
    deadline = time.monotonic() + 60
    while True:  # the agents catch up: one Running sandbox per stored pod, no other
        sts = {st["name"]: st for st in lab.store.list("pods", status=True) if st.get("namespace") == "default"}
        if set(sts) == left and all(st.get("phase") == "Running" for st in sts.values()):
            break
        assert time.monotonic() < deadline, (sorted(left - set(sts)), sorted(set(sts) - left))
        time.sleep(0.2)
    ips = [st["podIP"] for st in sts.values()]
    assert len(ips) == len(set(ips))  # no duplicate pod IP
    # the cluster's own pod-network pods (kube-system's 2 coredns pods) hold a namespace and an IP too
    system = [p for p in lab.pods if p.namespace != "default"]
    assert len(system) == 2 and all(p.name.startswith("coredns-") and p.ip for p in system), system
    spaces = {n for n in netns.list_names() if n.startswith(f"{lab.name}-")} - set(lab.record["namespaces"])
    assert spaces == {f"{lab.name}-{n}" for n in left} | {p.netns for p in system}  # exactly the stored pods
    ipam = {f.name for n in lab.nodes for f in (lab.paths.ipam_dir(n.name) / "cbr0").iterdir()} - {
        "lock", "last_reserved_ip.0"}
    assert ipam == set(ips) | {p.ip for p in system}
    _, listed = api.request("GET", pods_path())
    assert {p["metadata"]["name"] for p in listed["items"]} == left  # the API shows the store
