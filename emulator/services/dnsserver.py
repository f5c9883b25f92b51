"""The program a ``coredns`` pod runs: ``python -m emulator.services.dnsserver -conf <lab>/coredns/Corefile``.

The image ``registry.k8s.io/coredns/coredns`` resolves to this module (``agent.images``), started by the node's
agent inside the pod's network namespace like any container, so it answers on the pod's own IP and a
NetworkPolicy selecting ``k8s-app: kube-dns`` applies to it. Its configuration is a Corefile in the subset this
server implements (``Corefile.parse`` refuses any other plugin by name)::

    .:53 {
        errors
        kubernetes cluster.local {
            endpoint /run/podlab/labs/<lab>/store     # the lab's store instead of an API server URL
            pods insecure
            ttl 5
        }
        prometheus :9153
    }

Fast path (the ``kube-dns`` pods must answer thousands of queries a second between them): one thread reads UDP
queries and answers from a cache keyed by the query's bytes after its ID (same question, flags and EDNS → same
answer but for the ID), so a repeated query costs a dict lookup and a send; a miss is parsed and answered with
dnspython (``dns.answer``) and its answer kept. The zone is rebuilt, and the cache emptied, when the store's
``services`` or ``endpoints`` changed; that is checked before answering whenever 10 ms have passed since the last
check, so no answer is older than the store by more than that and no query reads the disk. TCP is served by a
thread per connection; ``/metrics`` on the ``prometheus`` port reports ``coredns_dns_requests_total`` per protocol
(the benchmark reads it from each replica). The log starts with the lines CoreDNS prints when it starts.
"""
from __future__ import annotations

import hashlib
import platform
import signal
import socket
import socketserver
import struct
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import dns.message

from emulator.services.dns import TTL, Zone, answer, build_zone
from emulator.state.store import Store

VERSION = "1.11.3"  # the CoreDNS release the pods' image names
CHECK_EVERY = 0.01  # seconds between looks at the store's versions
CACHE_MAX = 20000  # answers kept before the cache is emptied (a flood of distinct names cannot grow it forever)
SUPPORTED = ("errors", "kubernetes", "prometheus")
ARCH = {"x86_64": "amd64", "aarch64": "arm64"}  # Go's names, as CoreDNS prints its platform


class CorefileError(ValueError):
    pass


@dataclass(frozen=True)
class Corefile:
    port: int
    zone: str
    store: str
    ttl: int = TTL
    metrics_port: int | None = None

    @staticmethod
    def parse(text: str, source: str = "Corefile") -> "Corefile":
        """A Corefile of one server block, a directive a line (blocks in ``{ }``), as CoreDNS reads it."""
        lines = [ln.split("#", 1)[0].replace("{", " { ").replace("}", " } ").split() for ln in text.splitlines()]
        lines = [ln for ln in lines if ln]
        if not lines or lines[0][1:] != ["{"] or lines[-1] != ["}"]:
            raise CorefileError(f"{source}: one server block `.:PORT {{ ... }}` expected")
        head = lines[0][0]
        if not head.startswith(".:") or not head[2:].isdigit():
            raise CorefileError(f"{source}: server block {head!r}: podlab's server serves `.:PORT` only")
        port, zone, store, ttl, metrics = int(head[2:]), "", "", TTL, None
        body, i = lines[1:-1], 0
        while i < len(body):
            plugin, *args = body[i]
            block: list[list[str]] = []
            if args[-1:] == ["{"]:
                args, end = args[:-1], next((j for j in range(i + 1, len(body)) if body[j] == ["}"]), None)
                if end is None:
                    raise CorefileError(f"{source}: the block of {plugin!r} is not closed")
                block, i = body[i + 1:end], end
            i += 1
            if plugin not in SUPPORTED:
                raise CorefileError(f"{source}: plugin {plugin!r} is not implemented by podlab's DNS server "
                                    f"(it has {', '.join(SUPPORTED)})")
            if plugin == "kubernetes":
                if len(args) != 1:
                    raise CorefileError(f"{source}: kubernetes takes one zone here (got {' '.join(args) or 'none'})")
                zone = args[0]
                store, ttl = _kubernetes_block(block, source)
            elif plugin == "prometheus":
                metrics = int(args[0].rsplit(":", 1)[-1]) if args else 9153
        if not zone or not store:
            raise CorefileError(f"{source}: a `kubernetes ZONE {{ endpoint STORE }}` block is needed")
        return Corefile(port=port, zone=zone, store=store, ttl=ttl, metrics_port=metrics)


def _kubernetes_block(block: list[list[str]], source: str) -> tuple[str, int]:
    store, ttl = "", TTL
    for key, *args in block:
        if key == "endpoint" and len(args) == 1:
            store = args[0].removeprefix("file://")
        elif key == "ttl" and len(args) == 1 and args[0].isdigit():
            ttl = int(args[0])
        elif key == "pods" and args == ["insecure"]:
            continue
        else:
            raise CorefileError(f"{source}: kubernetes option {key!r} is not implemented by podlab's DNS server")
    return store, ttl


def render(store: Path, zone: str = "cluster.local", ttl: int = TTL, port: int = 53, metrics: int = 9153) -> str:
    """The Corefile the lab's ``coredns`` pods are given."""
    return (f".:{port} {{\n    errors\n    kubernetes {zone} {{\n        endpoint {store}\n        pods insecure\n"
            f"        ttl {ttl}\n    }}\n    prometheus :{metrics}\n}}\n")


class Answers:
    """The zone of the store's current Services and Endpoints, and the answers built from it."""

    def __init__(self, store: Store, domain: str, ttl: int = TTL) -> None:
        self.store, self.domain, self.ttl = store, domain, ttl
        self.version: tuple[int, int] | None = None
        self.zone: Zone = build_zone([], [], domain, ttl)
        self.cache: dict[bytes, bytes] = {}
        self.next_check = 0.0
        self.lock = threading.Lock()
        self.requests = {"udp": 0, "tcp": 0}

    def refresh(self) -> None:
        now = time.monotonic()
        if now < self.next_check:
            return
        with self.lock:
            self.next_check = now + CHECK_EVERY
            v = (self.store.version("services"), self.store.version("endpoints"))
            if v != self.version:
                self.zone = build_zone(list(self.store.list("services")), list(self.store.list("endpoints")),
                                       self.domain, self.ttl)
                self.version, self.cache = v, {}

    def respond(self, wire: bytes) -> bytes | None:
        if time.monotonic() >= self.next_check:
            self.refresh()
        key = wire[2:]
        out = self.cache.get(key)
        if out is None:
            try:
                query = dns.message.from_wire(wire)
            except Exception:  # not a DNS message: no answer, as a server drops garbage
                return None
            out = answer(query, self.zone).to_wire()[2:]
            if len(self.cache) >= CACHE_MAX:
                self.cache = {}
            self.cache[key] = out
        return wire[:2] + out


def serve_udp(sock: socket.socket, answers: Answers) -> None:
    recv, send, respond, counts = sock.recvfrom, sock.sendto, answers.respond, answers.requests
    while True:
        data, addr = recv(4096)
        out = respond(data)
        counts["udp"] += 1
        if out is not None:
            send(out, addr)


def serve_tcp(port: int, answers: Answers) -> socketserver.ThreadingTCPServer:
    class Tcp(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            while True:
                head = self.rfile.read(2)
                if len(head) < 2:
                    return
                out = answers.respond(self.rfile.read(struct.unpack("!H", head)[0]))
                answers.requests["tcp"] += 1
                if out is None:
                    return
                self.wfile.write(struct.pack("!H", len(out)) + out)

    socketserver.ThreadingTCPServer.allow_reuse_address = True
    srv = socketserver.ThreadingTCPServer(("0.0.0.0", port), Tcp)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True, name="dns-tcp").start()
    return srv


def serve_metrics(port: int, answers: Answers) -> None:
    """A minimal Prometheus endpoint: every request gets the counters (the path is not looked at)."""
    lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lst.bind(("0.0.0.0", port))
    lst.listen(16)

    def loop() -> None:
        while True:
            conn, _ = lst.accept()
            with conn:
                conn.settimeout(2)
                try:
                    conn.recv(4096)
                    body = "".join(f'coredns_dns_requests_total{{server="dns://:53",proto="{p}"}} {n}\n'
                                   for p, n in sorted(answers.requests.items())).encode()
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
                                 b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
                except OSError:  # a client that went away: nothing to answer
                    pass
    threading.Thread(target=loop, daemon=True, name="metrics").start()


def udp_socket(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind(("0.0.0.0", port))
    return sock


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "-conf":
        print("usage: python -m emulator.services.dnsserver -conf COREFILE", file=sys.stderr)
        return 2
    text = Path(argv[1]).read_text()
    try:
        conf = Corefile.parse(text, argv[1])
    except CorefileError as e:
        print(f"[FATAL] {e}", flush=True)
        return 1
    answers = Answers(Store(Path(conf.store)), conf.zone, conf.ttl)
    answers.refresh()
    sock = udp_socket(conf.port)
    serve_tcp(conf.port, answers)
    if conf.metrics_port:
        serve_metrics(conf.metrics_port, answers)

    def stop(*_: object) -> None:
        print("[INFO] SIGTERM: Shutting down servers then terminating", flush=True)
        raise SystemExit(0)
    signal.signal(signal.SIGTERM, stop)
    print(f".:{conf.port}\n[INFO] plugin/reload: Running configuration SHA512 = "
          f"{hashlib.sha512(text.encode()).hexdigest()}\nCoreDNS-{VERSION}\n"
          f"linux/{ARCH.get(platform.machine(), platform.machine())}, python{platform.python_version()}, podlab\n"
          f"[INFO] plugin/kubernetes: zone {conf.zone} from the store {conf.store}", flush=True)
    serve_udp(sock, answers)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
