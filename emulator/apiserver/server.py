"""The lab's API server process: HTTPS on 127.0.0.1, a bearer token, one thread per connection.

``python -m emulator.apiserver --lab NAME`` (started by ``up`` as a recorded lab process) loads the schema,
fills the watch cache from the store and follows its journal while the pods start (``serve``), then listens on
``127.0.0.1`` only, on the lab's own port (derived from
its name, the next free one if taken: kubectl caches discovery per host:port), and writes
``<lab>/apiserver/status.json`` (port, pid) once it serves. Each connection gets a thread; TLS is negotiated
in that thread, so a slow client stalls no one. A client that speaks plain HTTP to the port gets the answer Go
servers give (``400 Client sent an HTTP request to an HTTPS server``); a request without the lab's token gets
401 (compared in constant time); a body over 3 MiB gets 413 and is read only to be dropped (up to 64 MiB,
then the connection is closed). Watches and other streams are
sent with chunked encoding. SIGTERM (``down``) stops it.
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import select
import signal
import socket
import ssl
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from emulator.apiserver import admission, kubesvc, logs, rest, streams, syspods, writes
from emulator.apiserver.cache import Cache
from emulator.apiserver.certs import Material
from emulator.apiserver.schema import Schema
from emulator.apiserver.status import ApiError, too_large, unauthorized
from emulator.proc.lifecycle import alive
from emulator.services.alloc import api_ip
from emulator.state import nodes as node_state
from emulator.state.paths import LabPaths, state_root
from emulator.state.store import Store, read_json, write_json

MAX_BODY = 3 * 1024 * 1024
DRAIN_LIMIT = 64 * 1024 * 1024
PORT_BASE, PORT_SPAN = 16443, 1000
PLAIN_HTTP = b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"


def preferred_port(lab: str) -> int:
    return PORT_BASE + int(hashlib.sha256(lab.encode()).hexdigest(), 16) % PORT_SPAN


def status_path(paths: LabPaths):
    return paths.root / "apiserver" / "status.json"


def log(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {msg}", flush=True)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024  # a burst of clients (100 concurrent execs) never overflows the accept queue

    def __init__(self, port: int, handler: type, tls: ssl.SSLContext, api: "Api") -> None:
        self.tls, self.api = tls, api
        super().__init__(("127.0.0.1", port), handler)

    def finish_request(self, request: socket.socket, client_address) -> None:
        request.settimeout(10)
        # headers and body go out in separate writes: without this, Nagle holds the body until the client's
        # delayed ACK of the headers (40 ms per request)
        request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            first = request.recv(1, socket.MSG_PEEK)
            if first and first != b"\x16":  # not a TLS ClientHello: a plain HTTP request
                request.sendall(PLAIN_HTTP)
                return
            conn = self.tls.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError):
            return
        conn.settimeout(300)
        self.RequestHandlerClass(conn, client_address, self)


class InLab(Server):
    """The same server on a socket already bound inside a lab namespace (``kubesvc.listen_in_lab``)."""

    def __init__(self, sock: socket.socket, handler: type, tls: ssl.SSLContext, api: "Api") -> None:
        self.tls, self.api = tls, api
        ThreadingHTTPServer.__init__(self, sock.getsockname(), handler, bind_and_activate=False)
        self.socket.close()
        self.socket = sock


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Server

    def log_message(self, fmt: str, *args) -> None:  # requests are not logged one by one
        pass

    def _gone(self) -> bool:
        try:
            r, _, _ = select.select([self.connection], [], [], 0)
            if not r:
                return False
            return self.connection.recv(1) == b""
        except (OSError, ssl.SSLError, ValueError):
            return True

    def _handle(self) -> None:
        api = self.server.api
        headers: dict[str, str] = {}
        for k, v in self.headers.items():  # a repeated header is one comma-separated list (RFC 9110)
            k = k.lower()
            headers[k] = f"{headers[k]}, {v}" if k in headers else v
        try:
            auth = headers.get("authorization", "")
            if not auth.startswith("Bearer ") or not hmac.compare_digest(auth[7:].strip().encode(), api.token):
                raise unauthorized()
            size = int(headers.get("content-length") or 0)
            if size > MAX_BODY:
                self.close_connection = True
                left = min(size, DRAIN_LIMIT)  # read (and drop) what the client sends, so it sees the 413
                while left > 0:
                    chunk = self.rfile.read(min(left, 1 << 20))
                    if not chunk:
                        break
                    left -= len(chunk)
                raise too_large(MAX_BODY)
            body = self.rfile.read(size) if size else b""
            req = rest.parse(self.command, self.path, headers, body)
            req.gone = self._gone
            stream = api.claim_stream(req)
            if stream is not None:  # exec, attach, portforward: the session takes the connection over
                self.close_connection = True
                api.serve_stream(req, stream, self.connection.sendall, self.connection)
                return
            resp = api.handle(req)
        except ApiError as e:
            resp = rest.error_response(e)
        except Exception as e:  # a bug must not kill the server; the client gets a 500 Status
            traceback.print_exc()
            resp = rest.error_response(ApiError(500, "InternalError", f"Internal error occurred: {e}"))
        self._send(resp)

    def _send(self, resp: rest.Response) -> None:
        try:
            self.send_response(resp.code)
            self.send_header("Content-Type", resp.content_type)
            self.send_header("Cache-Control", "no-cache, private")
            for k, v in resp.headers.items():
                self.send_header(k, v)
            if isinstance(resp.body, (bytes, bytearray)):
                self.send_header("Content-Length", str(len(resp.body)))
                self.end_headers()
                self.wfile.write(resp.body)
                return
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.flush()
            for chunk in resp.body:
                if chunk:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (OSError, ssl.SSLError):
            self.close_connection = True
        finally:
            close = getattr(resp.body, "close", None)
            if close:
                close()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle


class Api:
    """The lab's API over its store. ``store`` and ``cidr`` are the lab's own unless given (the API server of a
    multi-host lab, ``hosts.api_across``, serves the controller's mirror of every host's store)."""

    def __init__(self, lab: str, token: str, address: str, store: Store | None = None,
                 cidr: ipaddress.IPv4Network | None = None) -> None:
        paths = LabPaths(lab)
        self.paths, self.token = paths, token.encode()
        self.store = store if store is not None else Store(paths.store)
        self.schema = Schema.load(str(state_root()))
        self.cache = Cache(self.store, self.node_ready, self.node_capacity)
        self.cache.load()
        if cidr is None:
            rec = read_json(paths.record) or {}
            cidr = ipaddress.IPv4Network((rec.get("cluster") or {}).get("serviceCIDR", "10.96.0.0/12"))
        nodes = {n["metadata"]["name"]: self.node_capacity(n) for n in self.store.list("nodes")}
        self.ctx = admission.Ctx(self.store, lab, cidr, nodes)
        self.reads = rest.Reads(self.cache, address)
        self.writes = writes.Writes(self.ctx, self.cache, self.schema)

    def node_ready(self, node: str) -> str:
        """``Unknown`` unless the node's agent (its kubelet) runs — its pid file names a live process (read here
        directly, so the server does not import the agent and its netlink stack); then ``NetworkNotReady`` while
        its CNI directory has no configuration (``state.nodes``), else ``Ready``."""
        pf = read_json(self.paths.agent_pid(node)) or {}
        if not (pf.get("pid") and alive(pf["pid"], pf.get("start"))):
            return "Unknown"
        return "Ready" if node_state.network_ready(self.paths, node) else "NetworkNotReady"

    def claim_stream(self, req: rest.Request) -> rest.Target | None:
        """The pod the request's exec, attach or port-forward session is for (None: an ordinary request)."""
        return streams.claim(req)

    def serve_stream(self, req: rest.Request, t: rest.Target, send_raw, sock) -> None:
        """Run a claimed session on the connection (its pods are this machine's)."""
        streams.serve(req, t, streams.Local(self.store, self.paths), send_raw, sock)

    @staticmethod
    def node_capacity(node: dict) -> int:
        try:
            return max(ipaddress.IPv4Network(node["spec"]["podCIDR"]).num_addresses - 3, 0)
        except (KeyError, ValueError):
            return 110

    def handle(self, req: rest.Request) -> rest.Response:
        if req.method == "GET":
            meta = self.reads.meta_paths(req)
            if meta is not None:
                return meta
        t = rest.route(req.path)
        if t is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if isinstance(t, str):
            if req.method != "GET":
                raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested "
                               "resource")
            return self.reads.group_version(t)
        if t.ns is not None and t.resource.name != "namespaces" and req.method != "GET" and \
                self.store.get("namespaces", t.ns) is None and req.method != "DELETE":
            raise ApiError(404, "NotFound", f'namespaces "{t.ns}" not found', {"name": t.ns, "kind": "namespaces"})
        if req.method == "GET":
            if t.resource.name == "pods" and t.sub == "log" and t.name and t.ns:
                return logs.serve(req, self.store, self.paths, t.ns, t.name)
            return self.reads.get(req, t)
        return {"POST": self.writes.create, "PUT": self.writes.update, "PATCH": self.writes.patch,
                "DELETE": self.writes.delete}[req.method](req, t)


def go_path(paths: LabPaths):
    return paths.root / "apiserver" / "go"


def wait_go(paths: LabPaths, timeout: float = 600.0) -> None:
    """Until ``up`` says the lab's pods are up (``go``)."""
    deadline = time.monotonic() + timeout
    while not go_path(paths).exists() and time.monotonic() < deadline:
        time.sleep(0.02)


def _free_port(lab: str) -> int:
    first = preferred_port(lab)
    for port in list(range(first, PORT_BASE + PORT_SPAN)) + list(range(PORT_BASE, first)):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue  # the port is taken: try the next one
    raise OSError(f"no free port in {PORT_BASE}-{PORT_BASE + PORT_SPAN - 1}")


def prepare(lab: str) -> tuple[Api, int]:
    """Load the store into the watch cache (a consistent snapshot, under the store's lock) and pick the port."""
    paths = LabPaths(lab)
    port = _free_port(lab)
    return Api(lab, Material(paths.root / "apiserver").token, f"127.0.0.1:{port}"), port


def listen(lab: str, api: Api, port: int) -> Server:
    """Bind the port with TLS and say so in ``status.json``; the caller runs ``serve_forever``."""
    paths = LabPaths(lab)
    m = Material(paths.root / "apiserver")
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.minimum_version = ssl.TLSVersion.TLSv1_2
    tls.load_cert_chain(m.cert, m.key)
    try:
        httpd = Server(port, Handler, tls, api)
    except OSError:  # taken since we looked: the next free one (the kubeconfig is written after this)
        port = _free_port(lab)
        api.reads.address = f"127.0.0.1:{port}"
        httpd = Server(port, Handler, tls, api)
    in_lab(lab, api, tls)
    api.writes.resume_purges()
    write_json(status_path(paths), {"port": port, "pid": os.getpid(), "time": time.time(),
                                    "schema": api.schema.version})
    log(f"API server of lab {lab} on https://127.0.0.1:{port} (resourceVersion {api.cache.rv}, schema "
        f"{api.schema.version})")
    return httpd


def in_lab(lab: str, api: Api, tls: ssl.SSLContext) -> None:
    """What the server adds inside the lab: the mirror pods of the cluster's own processes (kube-proxy,
    calico-node, flannel), and ``https://kubernetes.default.svc`` for the pods: the same server on a socket
    opened inside the node that the ``default/kubernetes`` Endpoints name."""
    syspods.Mirror(lab, api.store).start()
    ep = api.store.get("endpoints", "kubernetes", "default") or {}
    node_ip = next((a["ip"] for ss in ep.get("subsets") or [] for a in ss.get("addresses") or []), None)
    node = _node_of(api.store, node_ip) if node_ip else None
    if node_ip and node:
        try:
            inlab = InLab(kubesvc.listen_in_lab(lab, node, node_ip), Handler, tls, api)
        except OSError as e:  # the address is taken in its node: say so, serve on 127.0.0.1 anyway
            log(f"no in-lab listener on {node_ip}:{kubesvc.PORT}: {e}")
            return
        threading.Thread(target=inlab.serve_forever, kwargs={"poll_interval": 0.5}, daemon=True,
                         name="in-lab").start()


def in_lab_names(paths: LabPaths) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The server's names inside the lab, for its certificate: the ``kubernetes`` Service's ClusterIP, the
    address its Endpoints name (the first node's), and ``kubernetes[.default[.svc[.<domain>]]]``."""
    rec = read_json(paths.record) or {}
    cidr = ipaddress.IPv4Network((rec.get("cluster") or {}).get("serviceCIDR", "10.96.0.0/12"))
    ep = Store(paths.store).get("endpoints", "kubernetes", "default") or {}
    ips = [a["ip"] for ss in ep.get("subsets") or [] for a in ss.get("addresses") or []]
    return (api_ip(cidr), *ips), kubesvc.dns_names()


def _node_of(store: Store, ip: str) -> str | None:
    for n in store.list("nodes"):
        if any(a.get("address") == ip for a in (n.get("status") or {}).get("addresses") or []):
            return n["metadata"]["name"]
    return None


def start(lab: str) -> Server:
    """Load everything, bind the port, start following the journal (all at once: ``scripts/bench_api.py``)."""
    api, port = prepare(lab)
    threading.Thread(target=api.cache.follow, daemon=True, name="journal").start()
    return listen(lab, api, port)


def _normal_policy(*threads: threading.Thread) -> None:
    """SCHED_OTHER again for the calling thread and ``threads`` (Linux: a scheduling policy is per thread)."""
    for tid in (0, *(t.native_id for t in threads)):
        try:
            os.sched_setscheduler(tid or 0, os.SCHED_OTHER, os.sched_param(0))
        except (OSError, TypeError):
            pass  # leaving SCHED_IDLE needs CAP_SYS_NICE (root has it): only the server's speed is at stake


def serve(lab: str) -> None:
    """Started by ``up`` (as SCHED_IDLE: see the component) while the pods are being started, the store already
    holding the lab's objects: make the certificates, load the snapshot, follow the journal on the CPU time the
    node agents leave (following costs a JSON parse per change; reading every file again at the end was 0.3 s
    of ``up`` with 1000 pods), and on ``go`` (every pod Running) take the normal policy back, catch up and
    listen. Measured with ``scripts/bench_up.py``: SCHED_IDLE beat nice 10 (the agents lost less CPU)."""
    def stop(*_: object) -> None:  # nothing to flush: the store is the state; down removes the rest
        log("API server stopped (SIGTERM)")
        os._exit(0)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    os.chdir("/")  # what an exec'd command starts in, as in a container without a workingDir
    from emulator.apiserver.schema import Schema
    paths = LabPaths(lab)
    if not Material(paths.root / "apiserver").token_file.exists():
        from emulator.apiserver import certs
        certs.make(paths.root / "apiserver", lab, *in_lab_names(paths))
    Schema.load(str(state_root()))  # the schema cache is made while the pods start (a child process)
    api, port = prepare(lab)
    follower = threading.Thread(target=api.cache.follow, daemon=True, name="journal")
    follower.start()  # (it inherits the scheduling policy)
    wait_go(paths)
    _normal_policy(follower)
    api.cache.wait_for(api.store.resource_version(), timeout=30)
    httpd = listen(lab, api, port)
    httpd.serve_forever(poll_interval=0.5)


def main(argv: list[str] | None = None) -> int:
    import argparse
    ap = argparse.ArgumentParser(prog="podlab-apiserver", description="the Kubernetes API of one podlab lab")
    ap.add_argument("--lab", required=True)
    a = ap.parse_args(argv)
    if os.environ.get("PODLAB_TRACEMALLOC"):  # diagnosis: its allocations to its log on SIGUSR2
        from emulator.proc.daemon import trace_allocations
        trace_allocations()
    serve(a.lab)
    return 0


if __name__ == "__main__":
    sys.exit(main())
