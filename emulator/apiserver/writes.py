"""POST, PUT, PATCH and DELETE: decode the body, validate its fields against the real schema
(``fieldValidation``: ``Strict`` refuses an unknown field with the real server's words, ``Warn`` — the default —
drops it with a ``Warning`` header, ``Ignore`` drops it), admit (``admission``), and write to the store under its
lock: a create fails on an existing object (409 AlreadyExists), an update or patch carrying a stale
``resourceVersion`` fails with 409 Conflict (a patch is retried on the current object, as the real server's
guaranteed update does). The response is the object as the cache shows it once it has applied the write, so the
client reads its own write.

Deleting a Deployment leaves its ReplicaSets and pods to the controller-manager's garbage collection (the
``Background`` propagation kubectl asks for); deleting a Namespace marks it Terminating and a thread of the
server empties it (``state.namespaces.purge``) until the Namespace itself is gone.
"""
from __future__ import annotations

import contextlib
import json
import threading
import time
from typing import Any, Callable

import yaml

from emulator.apiserver import admission, admission_net, patch, protobuf, views
from emulator.apiserver.cache import Cache
from emulator.apiserver.rest import Request, Response, Target, json_response, scale_of
from emulator.apiserver.schema import Schema
from emulator.apiserver.status import (ApiError, already_exists, bad_request, conflict, method_not_allowed,
                                       not_found, strict_decoding, unsupported_media)
from emulator.errors import AlreadyExistsError, ConflictError
from emulator.services import registry
from emulator.state import events, namespaces, resolv
from emulator.state.store import rv_of

ADMIT: dict[str, Callable] = {
    "pods": admission.pod, "namespaces": admission.namespace, "nodes": admission.node,
    "endpoints": admission.endpoints, "services": admission_net.service, "deployments": admission_net.deployment,
    "networkpolicies": admission_net.networkpolicy}
PATCH_TYPES = ("application/strategic-merge-patch+json", "application/merge-patch+json",
               "application/json-patch+json")
PROTOBUF = "application/vnd.kubernetes.protobuf"
BODY_TYPES = ("application/json", "application/yaml", "application/x-yaml", "text/yaml", "", PROTOBUF)
RETRIES = 5


def decode(req: Request, what: str = "version/kind") -> Any:
    ct = req.headers.get("content-type", "").split(";")[0].strip().lower()
    if ct == PROTOBUF:
        try:
            return protobuf.decode(req.body)
        except protobuf.ProtobufError as e:
            raise ApiError(415, "UnsupportedMediaType", f"podlab's API server cannot decode this protobuf body ({e}); "
                           "send it as JSON or YAML, e.g. with `kubectl apply -f`") from None
    try:
        if ct in ("application/yaml", "application/x-yaml", "text/yaml"):
            return yaml.safe_load(req.body.decode())
        return json.loads(req.body.decode() or "null")
    except (ValueError, yaml.YAMLError, UnicodeDecodeError) as e:
        raise bad_request(f"couldn't get {what}; json parse error: {str(e).splitlines()[0]}") from None


class Writes:
    def __init__(self, ctx: admission.Ctx, cache: Cache, schema: Schema) -> None:
        self.ctx, self.store, self.cache, self.schema = ctx, ctx.store, cache, schema
        self._purging: set[str] = set()

    # -- helpers ----------------------------------------------------------------------------------------------
    def _body(self, req: Request, t: Target) -> tuple[dict, list[str]]:
        ct = req.headers.get("content-type", "").split(";")[0].strip().lower()
        if ct not in BODY_TYPES:
            raise unsupported_media(ct)
        obj = decode(req)
        if not isinstance(obj, dict):
            raise bad_request("couldn't get version/kind; json parse error: the body is not a JSON object")
        r = t.resource
        if obj.get("kind") not in (None, r.kind) or obj.get("apiVersion") not in (None, r.api_version):
            raise bad_request(f"the API version in the data ({obj.get('apiVersion')}) does not match the expected "
                              f"API version ({r.api_version})" if obj.get("apiVersion") != r.api_version else
                              f"the kind in the data ({obj.get('kind')}) does not match the expected kind ({r.kind})")
        return self._fields(req, r, obj)

    def _fields(self, req: Request, r, obj: dict) -> tuple[dict, list[str]]:
        mode = (req.q("fieldValidation") or "Warn").capitalize()
        if mode not in ("Strict", "Warn", "Ignore"):
            raise bad_request(f'fieldValidation must be one of "Ignore", "Warn" or "Strict", got "{mode}"')
        root = self.schema.root(r.group, r.version, r.kind)
        unknown = self.schema.unknown_fields(obj, root) if root else []
        if unknown and mode == "Strict":
            raise strict_decoding(r.kind, r.api_version, unknown)
        if unknown:
            obj = self.schema.drop_unknown(obj, root)
        return obj, ([f'unknown field "{f}"' for f in unknown] if mode == "Warn" else [])

    def _lock(self, resource: str):
        if resource in ("services", "deployments"):
            return registry.locked(self.store, resource)
        return contextlib.nullcontext()

    def _respond(self, t: Target, name: str, rv: int, code: int, warnings: list[str]) -> Response:
        self.cache.wait_for(rv)
        e = self.cache.get(t.resource.name, t.ns or "", name)
        hdrs = {"Warning": ", ".join('299 - "' + w.replace('"', '\\"') + '"' for w in warnings)} if warnings else {}
        if e is None:
            return json_response({}, code, hdrs)
        return Response(code, e.json, headers=hdrs)

    def current(self, t: Target, name: str) -> tuple[dict | None, dict | None, int]:
        """(stored object, API view, resourceVersion) read from the store itself (not the cache)."""
        r, ns = t.resource, t.ns or ""
        stored = self.store.get(r.store, name, ns or "default")
        if stored is None:
            return None, None, 0
        if r.name == "pods":
            st = self.store.get_status("pods", name, ns)
            view = views.pod(stored, st)
        elif r.name == "deployments":
            view = views.deployment(stored, self.store.get_status("deployments", name, ns))
        elif r.name == "nodes":
            e = self.cache.get("nodes", "", name)
            view = e.obj if e else stored
        else:
            view = views.with_kind(stored, r.api_version, r.kind)
        return stored, view, int(view["metadata"].get("resourceVersion") or 0)

    def _writable(self, t: Target) -> Callable:
        if t.resource.store is None or t.resource.name not in ADMIT:
            raise method_not_allowed()
        return ADMIT[t.resource.name]

    def _store(self, t: Target, name: str, obj: dict, expect: int | None, create: bool, dry: bool) -> int:
        if dry:
            return self.cache.watch_start()
        r = t.resource
        try:
            if r.name == "pods" and create:
                with resolv.preparing_pod(self.ctx.lab, obj):  # its resolv.conf before its agent can start it
                    stored = self.store.put(r.store, name, obj, expect_rv=expect, create=create)
            else:
                stored = self.store.put(r.store, name, obj, expect_rv=expect, create=create)
        except AlreadyExistsError:
            terminating = r.name == "pods" and (t.ns or "", name) in self.cache.ghosts
            raise already_exists(r.name, name, r.group, terminating) from None
        except ConflictError:
            raise conflict(r.name, name, r.group) from None
        if r.name == "pods" and create:
            events.emit(self.store.root, "pod", name, "Scheduled", f"Successfully assigned {t.ns}/{name} to "
                        f"{obj['spec']['nodeName']}", "default-scheduler", ns=t.ns or "default")
        return rv_of(stored)

    # -- verbs ------------------------------------------------------------------------------------------------
    def create(self, req: Request, t: Target) -> Response:
        if t.name is not None or (t.resource.namespaced and t.ns is None):
            raise method_not_allowed()
        admit = self._writable(t)
        obj, warnings = self._body(req, t)
        if t.resource.name == "pods" and (obj.get("metadata") or {}).get("name") and \
                (t.ns, obj["metadata"]["name"]) in self.cache.ghosts:
            raise already_exists("pods", obj["metadata"]["name"], "", True)
        with self._lock(t.resource.name):
            obj = admit(self.ctx, obj, t.ns or "", None)
            name = obj["metadata"]["name"]
            rv = self._store(t, name, obj, None, True, bool(req.q("dryRun")))
        if req.q("dryRun"):
            return json_response(obj, 201)
        return self._respond(t, name, rv, 201, warnings)

    def update(self, req: Request, t: Target) -> Response:
        if t.name is None:
            raise method_not_allowed()
        if t.sub == "scale":
            return self._scale(req, t, lambda s: decode(req))
        if t.sub is not None:
            raise method_not_allowed()
        admit = self._writable(t)
        obj, warnings = self._body(req, t)
        meta = obj.setdefault("metadata", {})
        if meta.get("name") not in (None, t.name):
            raise bad_request(f"the name of the object ({meta['name']}) does not match the name on the URL "
                              f"({t.name})")
        meta["name"] = t.name
        with self._lock(t.resource.name):
            stored, _, cur = self.current(t, t.name)
            if stored is None:
                raise not_found(t.resource.name, t.name, t.resource.group)
            expect = meta.get("resourceVersion")
            obj = admit(self.ctx, obj, t.ns or "", stored)
            rv = self._store(t, t.name, obj, int(expect) if expect else cur, False, bool(req.q("dryRun")))
        return self._respond(t, t.name, rv, 200, warnings)

    def patch(self, req: Request, t: Target) -> Response:
        if t.name is None:
            raise method_not_allowed()
        ct = req.headers.get("content-type", "").split(";")[0].strip().lower()
        if ct == "application/apply-patch+yaml":
            raise ApiError(415, "UnsupportedMediaType", "podlab's API server does not do server-side apply; use "
                           "`kubectl apply` without --server-side (client-side apply)")
        if ct not in PATCH_TYPES:
            raise unsupported_media(ct)
        body = decode(req, "patch")
        r = t.resource

        def apply(view: dict) -> dict:
            try:
                if ct == PATCH_TYPES[0]:
                    return patch.strategic(view, body, self.schema, self.schema.root(r.group, r.version, r.kind))
                if ct == PATCH_TYPES[1]:
                    return patch.merge_patch(view, body)
                return patch.json_patch(view, body)
            except patch.PatchError as e:
                raise ApiError(422, "Invalid", str(e)) from None
        if t.sub == "scale":
            return self._scale(req, t, lambda s: patch.merge_patch(s, body) if ct != PATCH_TYPES[2]
                               else patch.json_patch(s, body))
        if t.sub is not None:
            raise method_not_allowed()
        admit = self._writable(t)
        for attempt in range(RETRIES):
            with self._lock(r.name):
                stored, view, cur = self.current(t, t.name)
                if stored is None:
                    raise not_found(r.name, t.name, r.group)
                new, warnings = self._fields(req, r, apply(view))
                meta = new.get("metadata") or {}
                if meta.get("name") != t.name:
                    raise bad_request("metadata.name cannot be changed by a patch")
                asked = (body.get("metadata") or {}).get("resourceVersion") if isinstance(body, dict) else None
                expect = meta.get("resourceVersion") if asked else None
                new = admit(self.ctx, new, t.ns or "", stored)
                try:
                    rv = self._store(t, t.name, new, int(expect) if expect else cur, False, bool(req.q("dryRun")))
                except ApiError as e:
                    if e.code == 409 and not expect and attempt < RETRIES - 1:
                        continue
                    raise
            return self._respond(t, t.name, rv, 200, warnings)
        raise conflict(r.name, t.name, r.group)

    def _scale(self, req: Request, t: Target, change: Callable[[dict], Any]) -> Response:
        if t.resource.name != "deployments":
            raise method_not_allowed()
        with self._lock("deployments"):
            stored, view, cur = self.current(t, t.name)
            if stored is None:
                raise not_found(t.resource.name, t.name, t.resource.group)
            new = change(scale_of(view))
            replicas = (new.get("spec") or {}).get("replicas") if isinstance(new, dict) else None
            if not isinstance(replicas, int) or replicas < 0:
                raise ApiError(422, "Invalid", f'Scale.autoscaling "{t.name}" is invalid: spec.replicas: Invalid '
                               f"value: {replicas}: must be greater than or equal to 0")
            stored["spec"]["replicas"] = replicas
            rv = self._store(t, t.name, stored, cur, False, bool(req.q("dryRun")))
        self.cache.wait_for(rv)
        e = self.cache.get("deployments", t.ns or "", t.name)
        return json_response(scale_of(e.obj if e else stored))

    def delete(self, req: Request, t: Target) -> Response:
        r = t.resource
        if r.store is None or r.name == "nodes" or t.sub is not None or not r.writable:
            raise method_not_allowed()
        if t.name is None:
            return self._delete_collection(req, t)
        opts = decode(req, "delete options") if req.body.strip() else {}
        pre = (opts or {}).get("preconditions") or {}
        stored, view, cur = self.current(t, t.name)
        if stored is None:
            raise not_found(r.name, t.name, r.group)
        if pre.get("uid") and pre["uid"] != stored["metadata"].get("uid"):
            raise conflict(r.name, t.name, r.group, f"Precondition failed: UID in precondition: {pre['uid']}, UID in "
                           f"object meta: {stored['metadata'].get('uid')}")
        if req.q("dryRun"):
            return json_response(view)
        if r.name == "namespaces":
            namespaces.mark_terminating(self.store, t.name)
            self._purge_later(t.name)
            self.cache.wait_for(self.store.resource_version())
            e = self.cache.get("namespaces", "", t.name)
            return Response(200, e.json) if e else json_response(view)
        try:
            self.store.delete(r.store, t.name, t.ns or "default",
                              expect_rv=pre.get("resourceVersion") or None)
        except ConflictError:
            raise conflict(r.name, t.name, r.group) from None
        if r.name == "deployments":
            self.store.delete("deployments", t.name, t.ns or "default", status=True)
        self.cache.wait_for(self.store.resource_version())
        e = self.cache.get(r.name, t.ns or "", t.name)  # a pod being torn down is still there, Terminating
        return Response(200, e.json) if e else json_response(view)

    def _delete_collection(self, req: Request, t: Target) -> Response:
        from emulator.apiserver.rest import Reads
        match = Reads(self.cache, "").matcher(req, t)
        for e in self.cache.entries(t.resource.name, t.ns if t.resource.namespaced else None):
            if match(e.obj):
                m = e.obj["metadata"]
                self.store.delete(t.resource.store, m["name"], m.get("namespace", "default"))
        return json_response({"kind": f"{t.resource.kind}List", "apiVersion": t.resource.api_version,
                              "metadata": {}, "items": []})

    def _purge_later(self, ns: str) -> None:
        """The namespace controller: empty ``ns`` and remove it, in the background (idempotent)."""
        if ns in self._purging:
            return
        self._purging.add(ns)

        def run() -> None:
            try:
                deadline = time.monotonic() + 300
                while namespaces.purge(self.store, ns) and time.monotonic() < deadline:
                    time.sleep(0.02)
            finally:
                self._purging.discard(ns)
        threading.Thread(target=run, daemon=True, name=f"purge-{ns}").start()

    def resume_purges(self) -> None:
        """Namespaces left Terminating (by a server that stopped, or by ``podlab delete ns --no-wait``)."""
        for ns in self.store.names("namespaces"):
            if not namespaces.active(self.store, ns) and namespaces.get(self.store, ns) is not None:
                self._purge_later(ns)
