"""The streaming subresources of a pod, which take the connection over: ``exec``, ``attach``, ``portforward``.

``claim`` is asked by the server's handler for every request after authentication: it answers None for any other
path (the request goes on to ``rest``). For ``pods/<name>/{exec,attach,portforward}`` the target is checked
first, and a bad request gets the real server's Status as an ordinary HTTP answer (kubectl prints it as
"Error from server (BadRequest): ..." or "unable to upgrade connection: ..."). A good one is upgraded: a
WebSocket with one of the offered subprotocols (the client's order decides) — ``v5``/``v4.channel.k8s.io`` for
exec and attach, ``SPDY/3.1+portforward.k8s.io`` (SPDY tunnelled in WebSocket, kubectl >= 1.31) or
``v4.channel.k8s.io`` (the Python client's port-forward) for portforward — and the session runs in the
connection's thread until it ends; the connection is then closed. A raw SPDY/3.1 upgrade (kubectl <= 1.29, or
the fallback of a newer one) runs the same sessions through ``spdy_streams``. A plain request without an
upgrade gets 400 "Upgrade request required", as from the real server.

Where the session runs is the ``Backend``'s: ``Local`` (this machine's pods), or the multi-host lab's relay to the
pod's host (``hosts.api_streams``); the protocol code here and in ``exec_session`` is the same for both.
"""
from __future__ import annotations

import traceback
from dataclasses import dataclass
from typing import Callable, Protocol

from emulator.apiserver import attach, exec as pexec, portforward, spdy_streams
from emulator.apiserver.rest import Request, Target, route
from emulator.apiserver.status import ApiError
from emulator.apiserver.stream_ws import Closed, WebSocket, choose, handshake, is_websocket
from emulator.state.paths import LabPaths
from emulator.state.store import Store

SUBRESOURCES = ("exec", "attach", "portforward")


def claim(req: Request) -> Target | None:
    t = route(req.path)
    if isinstance(t, Target) and t.resource.name == "pods" and t.sub in SUBRESOURCES and t.name and t.ns:
        return t
    return None


def _upgrade(req: Request, protocols: tuple[str, ...], spdy_versions: tuple[str, ...]) -> tuple[str, bool]:
    """The negotiated protocol, and whether it is a raw SPDY upgrade (else WebSocket)."""
    if not is_websocket(req.headers):
        if "spdy/3.1" in req.headers.get("upgrade", "").lower():
            offered = req.headers.get("x-stream-protocol-version", "")
            version = spdy_streams.choose(offered, spdy_versions)
            if version is None:
                raise ApiError(400, "BadRequest", f"unable to upgrade: none of the offered protocol versions "
                                                  f"({offered}) is one of {', '.join(spdy_versions)}")
            return version, True
        raise ApiError(400, "BadRequest", "Upgrade request required")
    proto = choose(req.headers, protocols)
    if proto is None:
        raise ApiError(400, "BadRequest", f"unable to upgrade: none of the offered subprotocols "
                                          f"({req.headers.get('sec-websocket-protocol', '')}) is one of "
                                          f"{', '.join(protocols)}")
    return proto, False


def _run(ws: WebSocket, fn: Callable, *args) -> None:
    """A session after its upgrade: a failure can no longer be an HTTP answer; it is logged, the socket closed."""
    try:
        fn(ws, *args)
    except Exception:  # noqa: BLE001 - the server thread must survive a session's bug
        traceback.print_exc()
        ws.close()


@dataclass
class Prepared:
    """A checked session, ready to run on the upgraded connection (``run(conn, protocol)``); ``cancel`` undoes
    what preparing it opened, if the upgrade is refused."""
    run: Callable[..., None]
    cancel: Callable[[], None] = lambda: None


class Backend(Protocol):
    """Where a pod's sessions run: this machine (``Local``) or, in a multi-host lab, the pod's host
    (``hosts.api_streams``). Each method checks the request (ApiError before the upgrade) and prepares it."""

    def exec(self, req: Request, t: Target) -> Prepared: ...  # exec and attach
    def portforward(self, req: Request, t: Target) -> Prepared: ...


class Local:
    """The pod's processes and namespaces are on this machine."""

    def __init__(self, store: Store, paths: LabPaths) -> None:
        self.store, self.paths = store, paths

    def exec(self, req: Request, t: Target) -> Prepared:
        tgt = pexec.target(self.store, t.ns, t.name, req.q("container"))
        if t.sub == "attach":
            plan = attach.plan(self.paths, tgt, req.query)
            return Prepared(lambda conn, proto: attach.serve(conn, proto, plan))
        return Prepared(lambda conn, proto: pexec.serve(conn, proto, tgt, req.query, self.paths.proc_journal))

    def portforward(self, req: Request, t: Target) -> Prepared:
        ft = portforward.target(self.store, t.ns, t.name)
        return Prepared(lambda conn, proto: portforward.serve(conn, proto, ft, req.query))


def serve(req: Request, t: Target, backend: Backend, send_raw: Callable[[bytes], None], sock) -> None:
    """Check, upgrade and run the session (raises ApiError before the upgrade for a bad request)."""
    if req.method not in ("GET", "POST"):
        raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
    if t.sub == "exec" and not req.query.get("command"):
        raise ApiError(400, "BadRequest", "you must specify at least 1 command")
    pf = t.sub == "portforward"
    prep = backend.portforward(req, t) if pf else backend.exec(req, t)
    try:
        proto, raw = _upgrade(req, portforward.PROTOCOLS, spdy_streams.PORTFORWARD_VERSIONS) if pf else \
            _upgrade(req, pexec.PROTOCOLS, spdy_streams.EXEC_VERSIONS)
    except ApiError:
        prep.cancel()
        raise
    if pf:
        if raw:  # the same SPDY session, its bytes straight off the socket instead of in WebSocket messages
            send_raw(spdy_streams.handshake(proto))
            _run(spdy_streams.RawConn(sock), prep.run, portforward.SPDY_WS)
            return
        send_raw(handshake(req.headers, proto))
        _run(WebSocket(sock), prep.run, proto)
        return
    if raw:
        send_raw(spdy_streams.handshake(proto))
        ch = spdy_streams.SpdyChannels(spdy_streams.RawConn(sock))
        tty = pexec.flag(req.query, "tty")
        wanted = {pexec.ERROR} | {c for c, k in ((pexec.STDIN, "stdin"), (pexec.STDOUT, "stdout"),
                                                 (pexec.STDERR, "stderr")) if pexec.flag(req.query, k)}
        if tty:
            wanted = (wanted - {pexec.STDERR}) | {pexec.RESIZE}
        try:
            ch.wait_streams(wanted)
        except Closed:
            prep.cancel()
            ch.close()
            return
        # SPDY closes stdin with a FIN, which the channel view reports as v5's close of channel 0
        session_proto = "v5.channel.k8s.io"
        conn = ch
    else:
        send_raw(handshake(req.headers, proto))
        session_proto, conn = proto, WebSocket(sock)
    _run(conn, prep.run, session_proto)
