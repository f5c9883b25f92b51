"""The API server of a multi-host lab: one process on the controller, serving the whole lab to kubectl.

``python -m emulator.hosts.api_across --lab NAME`` (started by ``controller.up`` through ``api_daemon``, ended
by ``down``/``cleanup`` by its recorded PID) runs the API server of one machine (``emulator.apiserver``: the same
HTTPS on 127.0.0.1 of the controller's namespace, per-lab CA and token, discovery, tables, selectors, watch
cache, Status wording) over the controller's mirror of every host's store (``hosts.mirror``), so ``kubectl get
nodes|pods -A -o wide|svc|ep|events``, ``get -w`` and the client libraries see every host's nodes and pods, with
their IPs and node names, as one cluster.

Writes go where ``podlab apply``/``delete``/``scale`` send them across hosts (``hosts.changes``, the same code,
over sessions the process keeps open): a Pod is placed over every node of every host, started on its node's host
and answered once it runs (201 with the pod Running and its IP, as the mirror then shows it: ``podlab apply``
across hosts waits the same way, for the Endpoints it pushes); a Service is admitted into the controller's store
and pushed to every host; a NetworkPolicy is stored there too and pushed to every host with the pods of the
others (``hosts.netpols``); a Deployment is admitted there and its pods created across the hosts
(``deploy_across``), answered once they run; ``kubectl scale`` sets its replicas the same way; a Namespace is
created on every host. When the mirror sees a Deployment's pod go away or fail on its host, a thread here
reconciles the Deployments (the pod is replaced, under a new name and with a new IP). ``delete`` of a pod goes
to its host without waiting (the pod shows Terminating until its agent is done, and kubectl waits for it to go,
as against a real cluster; a Deployment's pod is replaced at once); of a Service, NetworkPolicy or Deployment, in
the controller's store, then pushed (a Deployment's pods are then deleted on their hosts). One write at a time
(the sessions carry one request each).

exec, attach, port-forward and logs of a pod on any host are relayed to its host over SSH (``api_streams``: a fresh
channel per session running ``podlab host stream`` there), the protocols spoken here by the one-machine code.

What is not available across hosts answers at once with a Kubernetes Status (405 MethodNotAllowed) naming what and
why, never a hang: updates of a pod or a Namespace (PUT/PATCH: ``kubectl label pod``), the deletion of a Namespace
or of a collection and everything else not listed above. A Service, NetworkPolicy or Deployment is updated
(``kubectl apply`` of a changed one, ``kubectl replace``): the patch is applied to the current object as on one
machine, and the result applied as ``podlab apply`` applies it.
"""
from __future__ import annotations

import ipaddress
import os
import secrets
import signal
import ssl
import sys
import threading
import time

from emulator.apiserver import rest, streams
from emulator.apiserver.certs import Material, make
from emulator.apiserver.schema import Schema
from emulator.apiserver.server import Api, Handler, Server, _free_port, log
from emulator.apiserver.status import ApiError, already_exists, bad_request, not_found
from emulator.errors import (AlreadyExistsError, HostError, HostUnreachableError, LabTimeoutError, ManifestError,
                             NotFoundError, PodlabError, UsageError)
from emulator.hosts import api_streams, changes, records, services, sessions
from emulator.hosts.records import api_dir, api_status_path as status_path
from emulator.hosts.mirror import Mirror
from emulator.state.paths import state_root
from emulator.state.store import Store, write_json

CREATE = ("pods", "services", "namespaces", "deployments", "networkpolicies")
#: changed in the controller's store, pushed to every host (a Deployment's scale subresource too)
UPDATE = ("services", "deployments", "networkpolicies")
#: the exit code a host's error kept (``emulator.errors``) → the Status it is
REMOTE = {2: (422, "Invalid"), 3: (409, "AlreadyExists"), 4: (404, "NotFound"), 6: (504, "Timeout")}
DELETE = ("pods", "services", "deployments", "networkpolicies")


class AcrossApi(Api):
    """``Api`` over the mirror; writes to the hosts through ``changes``; the rest refused by name."""

    def __init__(self, lab: str, token: str, address: str, store: Store, cidr: ipaddress.IPv4Network,
                 mirror: Mirror, hosts: int) -> None:
        self.mirror, self.hosts = mirror, hosts
        self.write_lock = threading.Lock()
        super().__init__(lab, token, address, store, cidr)
        self.lab = lab
        by_name = {h.name: h for h in mirror.hosts}
        node_host = {n: by_name[h] for h, nodes in mirror.nodes_of.items() for n in nodes}
        self.links = api_streams.Links()
        self.remote = api_streams.Remote(lab, store, self.links, node_host.get)

    def node_ready(self, node: str) -> str:
        return self.mirror.ready.get(node, "Unknown")

    # -- what is not available ----------------------------------------------------------------------------
    def _refuse(self, what: str, why: str = "", fix: str = "") -> ApiError:
        text = f"{what} is not available across hosts yet (lab {self.lab} spans {self.hosts} hosts" + \
            (f"; {why}" if why else "") + ")" + (f"; {fix}" if fix else "")
        return ApiError(405, "MethodNotAllowed", text)

    def serve_stream(self, req: rest.Request, t: rest.Target, send_raw, sock) -> None:
        """exec, attach and port-forward: the session relayed to the pod's host (``api_streams``)."""
        streams.serve(req, t, self.remote, send_raw, sock)

    def handle(self, req: rest.Request) -> rest.Response:
        t = rest.route(req.path)
        if not isinstance(t, rest.Target):
            return super().handle(req)
        r = t.resource.name
        if req.method == "GET":
            if r == "pods" and t.sub == "log" and t.name and t.ns:
                return self.remote.logs(req, t)
            return super().handle(req)
        if req.method == "POST" and t.name is None and r in CREATE:
            return self._create(req, t)
        if req.method == "DELETE" and t.name is not None and t.sub is None and r in DELETE:
            return self._delete(req, t)
        if req.method in ("PUT", "PATCH") and t.name is not None and t.sub is None and r in UPDATE:
            return self._update(req, t)
        if req.method in ("PUT", "PATCH") and t.name is not None and t.sub == "scale" and r == "deployments":
            return self._scale(req, t)
        verb = {"POST": "creating", "PUT": "updating", "PATCH": "updating", "DELETE": "deleting"}.get(
            req.method, req.method)
        what = f"{verb} {t.resource.qualified}" + (f' ("{t.name}")' if t.name else "")
        if r in CREATE and r not in UPDATE and req.method in ("PUT", "PATCH"):
            raise self._refuse(what, "a pod or namespace changes on every host that holds it; Services, Deployments "
                               "and NetworkPolicies do", "delete the object and create it again")
        if r == "namespaces" and req.method == "DELETE":
            raise self._refuse(what, "", "delete its pods and Services")
        if r in DELETE and t.name is None:
            raise self._refuse(f"deleting a collection of {r}", "", "delete them by name")
        raise self._refuse(what, "only pods, Services, Deployments, NetworkPolicies and Namespaces are created "
                           "across hosts")

    # -- writes ---------------------------------------------------------------------------------------------
    def _write(self, fn):
        """``fn()`` under the write lock, with sessions that are alive; podlab errors as Kubernetes Statuses."""
        with self.write_lock:
            sessions.keep_fresh()
            try:
                return fn()
            except PodlabError as e:
                sessions.close_warm()  # a host that broke is reconnected by the next write
                raise status_of(e, {h.name for h in self.mirror.hosts}) from None

    def _create(self, req: rest.Request, t: rest.Target) -> rest.Response:
        if t.resource.namespaced and t.ns is None:
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        obj, warnings = self.writes._body(req, t)
        if req.q("dryRun"):
            raise self._refuse("a server-side dry run", "", "run without --dry-run=server")
        meta = obj.setdefault("metadata", {})
        if t.resource.namespaced:
            if meta.get("namespace") not in (None, "", t.ns):
                raise bad_request("the namespace of the provided object does not match the namespace sent on the "
                                  "request")
            meta["namespace"] = t.ns
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + secrets.token_hex(3)[:5]
        name = meta.get("name")
        if not name:
            raise ApiError(422, "Invalid", f'{t.resource.kind} "" is invalid: metadata.name: Required value: name or '
                                           "generateName is required")
        if self.cache.get(t.resource.name, t.ns or "", name) is not None:
            raise already_exists(t.resource.name, name)
        doc = {"apiVersion": t.resource.api_version, **clean(t.resource.name, obj), "kind": t.resource.kind}
        began = time.monotonic()
        self._write(lambda: changes.apply(self.lab, [doc], "kubectl"))
        e = self._await(t, name, began, lambda e: t.resource.name != "pods" or bool(
            (e.obj.get("status") or {}).get("podIP")))
        if e is None:
            return rest.json_response(doc, 201)
        hdrs = {"Warning": ", ".join(f'299 - "{w}"' for w in warnings)} if warnings else {}
        return rest.Response(201, e.json, headers=hdrs)

    def _update(self, req: rest.Request, t: rest.Target) -> rest.Response:
        """PUT or PATCH of a Service, Deployment or NetworkPolicy (``kubectl apply`` of a changed one, ``kubectl
        replace``): the new object computed from the current one as the one-machine server does, then applied as
        ``podlab apply`` does."""
        assert t.name is not None
        r = t.resource.name
        e = self.cache.get(r, t.ns or "", t.name)
        if e is None:
            raise not_found(r, t.name)
        if req.q("dryRun"):
            raise self._refuse("a server-side dry run", "", "run without --dry-run=server")
        if req.method == "PUT":
            new, warnings = self.writes._body(req, t)
        else:
            new, warnings = self.writes._fields(req, t.resource, patched(req, e.obj, self.schema, t))
        if (new.get("metadata") or {}).get("name") not in (None, t.name):
            raise bad_request("metadata.name cannot be changed")
        new.setdefault("metadata", {}).update(name=t.name, namespace=t.ns)
        doc = {"apiVersion": t.resource.api_version, **clean(r, new), "kind": t.resource.kind}
        began = time.monotonic()
        self._write(lambda: changes.apply(self.lab, [doc], "kubectl"))
        self.mirror.fresh(began)
        now = self.cache.get(r, t.ns or "", t.name)
        hdrs = {"Warning": ", ".join(f'299 - "{w}"' for w in warnings)} if warnings else {}
        return rest.Response(200, (now or e).json, headers=hdrs)

    def _scale(self, req: rest.Request, t: rest.Target) -> rest.Response:
        """``kubectl scale deployment``: the Scale subresource, set as ``podlab scale`` sets it (answers once the
        pods run or are gone on their hosts)."""
        from emulator.apiserver.writes import decode
        assert t.name is not None
        e = self.cache.get("deployments", t.ns or "", t.name)
        if e is None:
            raise not_found("deployments", t.name)
        if req.q("dryRun"):
            raise self._refuse("a server-side dry run", "", "run without --dry-run=server")
        body = decode(req, "scale")
        if isinstance(body, list):  # a JSON patch
            body = patched(req, rest.scale_of(e.obj), self.schema, t)
        replicas = ((body or {}).get("spec") or {}).get("replicas") if isinstance(body, dict) else None
        if not isinstance(replicas, int) or replicas < 0:
            raise ApiError(422, "Invalid", f'Scale.autoscaling "{t.name}" is invalid: spec.replicas: Invalid '
                           f"value: {replicas}: must be greater than or equal to 0")
        began = time.monotonic()
        self._write(lambda: changes.scale(self.lab, t.name or "", replicas, t.ns))
        self.mirror.fresh(began)
        now = self.cache.get("deployments", t.ns or "", t.name)
        return rest.json_response(rest.scale_of((now or e).obj))

    def reconcile_when_kicked(self, kick: threading.Event) -> None:
        """The API server's share of the deployment and endpoints controllers: when the mirror saw a Deployment's
        pod go away or fail on its host, or any pod get a new IP or stop running, reconcile and push
        (``changes.reconcile``: a replacement placed and started across the hosts, then the Endpoints and the
        policies' peers pushed to every host from that look at their pods)."""
        while True:
            kick.wait()
            time.sleep(0.2)  # the deletions of one command come together
            kick.clear()
            try:
                lines = self._write(lambda: changes.reconcile(self.lab))
                log(f"reconciled and pushed after a pod went away, failed or moved: {lines}")
            except ApiError as err:
                log(f"could not reconcile and push: {err}")

    def _delete(self, req: rest.Request, t: rest.Target) -> rest.Response:
        assert t.name is not None
        e = self.cache.get(t.resource.name, t.ns or "", t.name)
        if e is None:
            raise not_found(t.resource.name, t.name)
        if req.q("dryRun"):
            raise self._refuse("a server-side dry run", "", "run without --dry-run=server")
        began = time.monotonic()
        self._write(lambda: changes.delete(self.lab, t.resource.name, [t.name], t.ns, wait=False))
        self.mirror.fresh(began)
        deadline = time.monotonic() + 10.0
        while t.resource.name in ("services", "deployments", "networkpolicies") and \
                time.monotonic() < deadline and \
                self.cache.get(t.resource.name, t.ns or "", t.name) is not None:
            time.sleep(0.05)  # gone from the controller's store: the mirror copies that within 0.2 s
        now = self.cache.get(t.resource.name, t.ns or "", t.name)
        return rest.Response(200, (now or e).json)

    def _await(self, t: rest.Target, name: str, began: float, ok, timeout: float = 10.0):
        """The object as the mirror shows it once a pass after the write has run and ``ok`` holds (or timeout)."""
        self.mirror.fresh(began)
        deadline = time.monotonic() + timeout
        while True:
            e = self.cache.get(t.resource.name, t.ns or "", name)
            if (e is not None and ok(e)) or time.monotonic() > deadline:
                return e
            time.sleep(0.05)


def patched(req: rest.Request, view: dict, schema, t: rest.Target) -> dict:
    """``view`` with the request's patch applied (strategic merge, merge or JSON patch), as the one-machine
    server applies it (``apiserver.writes``)."""
    from emulator.apiserver import patch
    from emulator.apiserver.writes import PATCH_TYPES, decode
    ct = req.headers.get("content-type", "").split(";")[0].strip().lower()
    if ct not in PATCH_TYPES:
        raise ApiError(415, "UnsupportedMediaType", f"the body of the request was in an unknown format - accepted "
                       f"media types include: {', '.join(PATCH_TYPES)}")
    body = decode(req, "patch")
    try:
        if ct == PATCH_TYPES[0]:
            r = t.resource
            return patch.strategic(view, body, schema, schema.root(r.group, r.version, r.kind))
        if ct == PATCH_TYPES[1]:
            return patch.merge_patch(view, body)
        return patch.json_patch(view, body)
    except patch.PatchError as e:
        raise ApiError(422, "Invalid", str(e)) from None


def clean(resource: str, obj: dict) -> dict:
    """What podlab's parsers take of an object kubectl sends (as the one-machine admission does for a pod): its
    metadata's name, namespace, labels and annotations; a pod's spec without tolerations or an empty nodeName."""
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k in ("name", "namespace", "labels",
                                                                          "annotations")}
    out = {"metadata": meta}
    if resource == "pods":
        out["spec"] = {k: v for k, v in (obj.get("spec") or {}).items()
                       if k != "tolerations" and (k != "nodeName" or v)}
    elif resource == "deployments":  # what the one-machine admission checks (``admission_net.deployment``)
        spec = obj.get("spec") or {}
        tmpl = spec.get("template") or {}
        out["apiVersion"] = "apps/v1"
        out["spec"] = {"replicas": spec.get("replicas", 1), "selector": spec.get("selector"), "template": {
            "metadata": {k: v for k, v in (tmpl.get("metadata") or {}).items() if k in ("labels", "annotations")},
            "spec": {k: v for k, v in (tmpl.get("spec") or {}).items() if k != "tolerations"}}}
    elif resource == "services":  # what the one-machine admission gives the parser (``admission_net``)
        spec = {k: v for k, v in (obj.get("spec") or {}).items()
                if k not in ("clusterIPs", "ipFamilies", "ipFamilyPolicy", "internalTrafficPolicy")}
        if spec.get("clusterIP") is None:
            spec.pop("clusterIP", None)
        out["spec"] = spec
    elif resource == "networkpolicies":
        out["spec"] = obj.get("spec") or {}
    return out


def status_of(e: PodlabError, hosts: set[str] = frozenset()) -> ApiError:  # type: ignore[assignment]
    """A podlab error as the Status kubectl prints (``Error from server (Invalid): ...``); one naming a host
    (unreachable: nothing was applied) is 503 ServiceUnavailable."""
    text = str(e)
    if isinstance(e, HostUnreachableError) or (isinstance(e, UsageError) and getattr(e, "obj", None) in hosts):
        return ApiError(503, "ServiceUnavailable", text)
    if isinstance(e, HostError) and e.exit_code in REMOTE:  # a host's error of a class with its own arguments
        code, reason = REMOTE[e.exit_code]  # (``protocol.raise_remote`` keeps its exit code)
        return ApiError(code, reason, text)
    if isinstance(e, NotFoundError):
        return ApiError(404, "NotFound", text)
    if isinstance(e, AlreadyExistsError):
        return ApiError(409, "AlreadyExists", text)
    if isinstance(e, ManifestError):
        return ApiError(422, "Invalid", text)
    if isinstance(e, UsageError):
        return ApiError(405, "MethodNotAllowed", text)
    if isinstance(e, LabTimeoutError):
        return ApiError(504, "Timeout", text)
    return ApiError(500, "InternalError", text)


def serve(lab: str) -> None:
    """Make the certificates, connect to every host, wait for ``go`` (``up``: every host built), mirror every
    host once, listen, write status.json."""
    def stop(*_: object) -> None:  # the store is the state; down removes the directory
        log("API server stopped (SIGTERM)")
        os._exit(0)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    os.chdir("/")
    rec = records.load(lab)
    if rec is None:
        raise SystemExit(f"no multi-host lab {lab} on this controller")
    d = api_dir(lab)
    if not Material(d).token_file.exists():
        make(d, lab)
    store = Store(d / "store")
    store.init()
    hosts = [records.host_of(h) for h in rec["hosts"]]
    mirror = Mirror(lab, store, hosts, rec["placement"], services.store_dir(lab), log)
    kick = threading.Event()
    if rec.get("services"):
        mirror.on_owned_pod = kick.set
    mirror.on_pod_moved = kick.set  # the Endpoints and the policies' peers follow a pod's new IP (if the lab has them)
    go = threading.Event()
    mirror.start(go)  # connected to every host while they build: the first pass waits for up's go
    Schema.load(str(state_root()))  # (its cache: the Api below finds it made)
    while not (d / "go").exists():
        time.sleep(0.02)
    go.set()
    mirror.wait_first()
    mirror.fresh(0)
    sessions.keep_fresh()  # the sessions of the writes: each opened on first use, kept open
    port = _free_port(lab)
    api = AcrossApi(lab, Material(d).token, f"127.0.0.1:{port}", store,
                    ipaddress.IPv4Network(rec.get("serviceCIDR", "10.96.0.0/12")), mirror, len(hosts))
    threading.Thread(target=api.cache.follow, daemon=True, name="journal").start()
    threading.Thread(target=api.reconcile_when_kicked, args=(kick,), daemon=True, name="deployments").start()
    m = Material(d)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.minimum_version = ssl.TLSVersion.TLSv1_2
    tls.load_cert_chain(m.cert, m.key)
    try:
        httpd = Server(port, Handler, tls, api)
    except OSError:  # taken since we looked
        port = _free_port(lab)
        api.reads.address = f"127.0.0.1:{port}"
        httpd = Server(port, Handler, tls, api)
    write_json(status_path(lab), {"port": port, "pid": os.getpid(), "time": time.time(), "schema": api.schema.version})
    log(f"API server of multi-host lab {lab} on https://127.0.0.1:{port} ({len(hosts)} hosts, resourceVersion "
        f"{api.cache.rv})")
    httpd.serve_forever(poll_interval=0.5)


def main(argv: list[str] | None = None) -> int:
    import argparse
    ap = argparse.ArgumentParser(prog="podlab-apiserver", description="the Kubernetes API of a multi-host lab")
    ap.add_argument("--lab", required=True)
    serve(ap.parse_args(argv).lab)
    return 0


if __name__ == "__main__":
    sys.exit(main())
