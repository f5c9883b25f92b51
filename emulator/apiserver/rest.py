"""Requests to responses: the paths of the Kubernetes API, content negotiation, reads (get, list, watch, Table)
and the dispatch of writes to ``writes``.

Paths: ``/api``, ``/apis`` (legacy or, with ``as=APIGroupDiscoveryList`` in Accept, aggregated discovery),
``/api/v1``, ``/apis/<group>/<version>``, ``/version``, ``/openapi/v3[/<gv>]``, ``/healthz``, and for a resource
``[/namespaces/<ns>]/<resource>[/<name>[/<subresource>]]``. A list or watch without ``/namespaces/<ns>`` covers
every namespace (``kubectl get -A``). Reads come from the watch cache; a watch streams ``{"type", "object"}``
lines (each object a one-row Table when kubectl asked for a Table) from the asked resourceVersion, starting with
ADDED for every object when none (or 0) is given, and an ERROR event with a 410 Status when the version is older
than the cache's history; an object that stops (or starts) matching the selector is DELETED (ADDED) for that
watch, as the real server does. ``sendInitialEvents=true`` (the "watch list" client-go and kubectl >= 1.35 use
instead of LIST then WATCH) sends the current objects as ADDED, then a BOOKMARK annotated
``k8s.io/initial-events-end``; with ``allowWatchBookmarks`` an idle watch gets a BOOKMARK every 30 s, so a client
resuming it starts from a recent resourceVersion.
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator
from urllib.parse import parse_qs

from emulator.apiserver import discovery, selectors, tables
from emulator.apiserver.cache import Cache, Entry
from emulator.apiserver.resources import Resource, lookup
from emulator.apiserver.status import ApiError, bad_request, gone, not_found, not_found_path

TABLE_CT = "application/json;as=Table;v=v1;g=meta.k8s.io"
DISCOVERY_CT = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
MAX_WATCH = 3600.0
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
BOOKMARK_EVERY = 30.0


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes = b""
    gone: Callable[[], bool] = lambda: False  # the client hung up (for long watches)

    def q(self, key: str, default: str | None = None) -> str | None:
        v = self.query.get(key)
        return v[-1] if v else default

    @property
    def accept(self) -> str:
        return self.headers.get("accept", "")

    @property
    def table(self) -> bool:
        return "as=table" in self.accept.lower().replace(" ", "")


@dataclass
class Response:
    code: int = 200
    body: bytes | Iterator[bytes] = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


def parse(method: str, target: str, headers: dict[str, str], body: bytes = b"") -> Request:
    path, _, qs = target.partition("?")
    return Request(method, path, parse_qs(qs, keep_blank_values=True), headers, body)


def json_response(obj: object, code: int = 200, headers: dict | None = None) -> Response:
    return Response(code, json.dumps(obj, separators=(",", ":")).encode(), headers=headers or {})


def error_response(e: ApiError) -> Response:
    return json_response(e.status(), e.code)


@dataclass
class Target:
    resource: Resource
    ns: str | None
    name: str | None
    sub: str | None


def route(path: str) -> Target | str | None:
    """A resource target, a discovery/group-version path (returned as the gv string), or None (404)."""
    parts = [p for p in path.strip("/").split("/") if p]
    if parts[:1] == ["api"] and len(parts) >= 2:
        gv, rest = parts[1], parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        gv, rest = f"{parts[1]}/{parts[2]}", parts[3:]
    else:
        return None
    if not rest:
        return gv
    ns = None
    if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] not in ("status", "finalize"):
        ns, rest = rest[1], rest[2:]
    if len(rest) > 3 or (ns is not None and not _NAME.match(ns)) or (len(rest) > 1 and not _NAME.match(rest[1])):
        return None  # no object can have such a name (and no path leaves the store)
    res = lookup(gv, rest[0])
    if res is None or (ns is not None and not res.namespaced):
        return None
    return Target(res, ns, rest[1] if len(rest) > 1 else None, rest[2] if len(rest) > 2 else None)


class Reads:
    """GET: discovery, objects, lists, tables and watches."""

    def __init__(self, cache: Cache, address: str) -> None:
        self.cache, self.address = cache, address

    def meta_paths(self, req: Request) -> Response | None:
        p = req.path.rstrip("/") or "/"
        aggregated = discovery.CORE_ACCEPT.lower() in req.accept.lower().replace(" ", "")
        if p == "/version":
            return json_response(discovery.version())
        if p in ("/healthz", "/livez", "/readyz"):
            return Response(200, b"ok", "text/plain; charset=utf-8")
        if p in ("/api", "/apis"):
            if aggregated:
                r = json_response(discovery.aggregated(p == "/api"))
                r.content_type = DISCOVERY_CT
                return r
            return json_response(discovery.api_versions(self.address) if p == "/api" else discovery.api_groups())
        if p == "/openapi/v3":
            return json_response(discovery.openapi_root())
        if p.startswith("/openapi/v3/"):
            rel = p[len("/openapi/v3/"):]
            gv = rel[4:] if rel.startswith("api/") else rel[5:] if rel.startswith("apis/") else ""
            doc = discovery.openapi_group(gv)
            return json_response(doc) if doc else None
        parts = p.strip("/").split("/")
        if len(parts) == 2 and parts[0] == "apis" and parts[1] in discovery.GROUPS:
            return json_response({"kind": "APIGroup", "apiVersion": "v1", **discovery._group(parts[1])})
        return None

    def group_version(self, gv: str) -> Response:
        doc = discovery.resource_list(gv)
        if doc is None:
            raise not_found_path()
        return json_response(doc)

    def get(self, req: Request, t: Target) -> Response:
        if t.name is None:
            if (req.q("watch") or "").lower() in ("true", "1"):
                return self.watch(req, t)
            return self.list(req, t)
        if t.resource.namespaced and t.ns is None:
            raise not_found_path()
        e = self.cache.get(t.resource.name, t.ns or "", t.name)
        if e is None:
            raise not_found(t.resource.name, t.name, t.resource.group)
        if t.sub == "scale":
            return json_response(scale_of(e.obj))
        if t.sub not in (None, "status"):
            raise not_found_path()
        if req.table:
            return self.table(req, t, [e])
        return Response(200, e.json)

    def matcher(self, req: Request, t: Target) -> Callable[[dict], bool]:
        by_label = selectors.labels(req.q("labelSelector"))
        by_field = selectors.fields(req.q("fieldSelector"), t.resource.name)
        return lambda o: by_label(o) and by_field(o)

    def list(self, req: Request, t: Target) -> Response:
        match = self.matcher(req, t)
        everything = not req.q("labelSelector") and not req.q("fieldSelector")  # no dict needed (slim entries)
        rv = self.cache.watch_start()
        entries = [e for e in self.cache.entries(t.resource.name, t.ns if t.resource.namespaced else None)
                   if everything or match(e.obj)]
        if req.table:
            return self.table(req, t, entries, rv)
        head = json.dumps({"kind": f"{t.resource.kind}List", "apiVersion": t.resource.api_version,
                           "metadata": {"resourceVersion": str(rv)}}, separators=(",", ":")).encode()
        return Response(200, head[:-1] + b',"items":[' + b",".join(e.json for e in entries) + b"]}")

    def _row(self, req: Request, t: Target, e: Entry) -> bytes:
        include = req.q("includeObject", "PartialObjectMetadata")
        obj = e.json if include == "Object" else e.meta_json if include != "None" else b"null"
        return b'{"cells":' + json.dumps(tables.cells(t.resource.name, e.obj), separators=(",", ":")).encode() \
            + b',"object":' + obj + b"}"

    def table(self, req: Request, t: Target, entries: list[Entry], rv: int | None = None) -> Response:
        head = {"kind": "Table", "apiVersion": "meta.k8s.io/v1",
                "metadata": {"resourceVersion": str(rv if rv is not None else self.cache.watch_start())},
                "columnDefinitions": tables.columns(t.resource.name)}
        body = json.dumps(head, separators=(",", ":")).encode()[:-1] + b',"rows":[' + \
            b",".join(self._row(req, t, e) for e in entries) + b"]}"
        return Response(200, body, TABLE_CT)

    def watch(self, req: Request, t: Target) -> Response:
        match = self.matcher(req, t)
        ns = t.ns if t.resource.namespaced else None
        try:
            timeout = min(float(req.q("timeoutSeconds") or MAX_WATCH), MAX_WATCH)
        except ValueError:
            raise bad_request("timeoutSeconds must be a number") from None
        rv_param = req.q("resourceVersion") or ""
        try:
            since = int(rv_param) if rv_param not in ("", "0") else None
        except ValueError:
            raise bad_request(f'resourceVersion "{rv_param}" is not a valid resource version') from None
        if (req.q("sendInitialEvents") or "").lower() == "true":
            if req.q("resourceVersionMatch") != "NotOlderThan":
                raise ApiError(422, "Invalid", "resourceVersionMatch: Forbidden: sendInitialEvents requires setting "
                               "resourceVersionMatch to NotOlderThan")
            since = None
        return Response(200, self._stream(req, t, match, ns, since, timeout),
                        TABLE_CT if req.table else "application/json")

    def _event(self, req: Request, t: Target, kind: str, e: Entry) -> bytes:
        if req.table:
            obj = json.dumps({"kind": "Table", "apiVersion": "meta.k8s.io/v1",
                              "metadata": {"resourceVersion": str(e.rv)},
                              "columnDefinitions": tables.columns(t.resource.name)},
                             separators=(",", ":")).encode()[:-1] + b',"rows":[' + self._row(req, t, e) + b"]}"
        else:
            obj = e.json
        return b'{"type":"' + kind.encode() + b'","object":' + obj + b"}\n"

    def _bookmark(self, t: Target, rv: int, initial_end: bool = False) -> bytes:
        meta: dict = {"resourceVersion": str(rv)}
        if initial_end:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        return json.dumps({"type": "BOOKMARK", "object": {"kind": t.resource.kind, "apiVersion":
                                                          t.resource.api_version, "metadata": meta}},
                          separators=(",", ":")).encode() + b"\n"

    def _stream(self, req: Request, t: Target, match, ns: str | None, since: int | None,
                timeout: float) -> Iterator[bytes]:
        res = t.resource.name
        deadline = time.monotonic() + timeout
        seen: set[tuple[str, str]] = set()
        bookmarks = (req.q("allowWatchBookmarks") or "").lower() == "true"
        if since is None:
            since = self.cache.watch_start()
            for e in self.cache.entries(res, ns):
                if match(e.obj):
                    seen.add(_key(e))
                    yield self._event(req, t, "ADDED", e)
            if (req.q("sendInitialEvents") or "").lower() == "true":
                yield self._bookmark(t, since, initial_end=True)
        else:
            seen = {_key(e) for e in self.cache.entries(res, ns) if match(e.obj)}
        yield b""
        last_sent = time.monotonic()
        while time.monotonic() < deadline and not req.gone():
            if bookmarks and time.monotonic() - last_sent > BOOKMARK_EVERY:
                last_sent = time.monotonic()
                yield self._bookmark(t, max(since, self.cache.watch_start()))
            events, ok = self.cache.events_after(since, min(1.0, max(deadline - time.monotonic(), 0.01)))
            if not ok:
                err = gone(since, self.cache.oldest).status()
                yield json.dumps({"type": "ERROR", "object": err}, separators=(",", ":")).encode() + b"\n"
                return
            out = []
            for rv, kind, r, e in events:
                since = max(since, rv)
                if r != res or (ns is not None and (e.obj.get("metadata") or {}).get("namespace") != ns):
                    continue
                k = _key(e)
                if kind == "DELETED":
                    if k in seen:
                        seen.discard(k)
                        out.append(self._event(req, t, "DELETED", e))
                    continue
                if match(e.obj):
                    out.append(self._event(req, t, "MODIFIED" if k in seen else "ADDED", e))
                    seen.add(k)
                elif k in seen:
                    seen.discard(k)
                    out.append(self._event(req, t, "DELETED", e))
            if out:
                last_sent = time.monotonic()
            yield b"".join(out)


def _key(e: Entry) -> tuple[str, str]:
    m = e.obj.get("metadata") or {}
    return m.get("namespace", ""), m.get("name", "")


def scale_of(dep: dict) -> dict:
    meta, spec, st = dep.get("metadata") or {}, dep.get("spec") or {}, dep.get("status") or {}
    sel = ",".join(f"{k}={v}" for k, v in ((spec.get("selector") or {}).get("matchLabels") or {}).items())
    return {"kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                         if k in meta},
            "spec": {"replicas": spec.get("replicas", 1)},
            "status": {"replicas": st.get("replicas", 0), "selector": sel}}

