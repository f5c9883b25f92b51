#!/usr/bin/env python3
"""A dnsperf-like load generator, run inside a lab pod by ``bench_dns.py``; prints one JSON line.

    python3 dnsperf_probe.py --server 10.96.0.10 --seconds 5 --sockets 16 --window 8 --procs 2 \\
        --names kube-dns.kube-system.svc.cluster.local,... --metrics 10.244.1.4,10.244.2.2

Like ``dnsperf -c SOCKETS -q OUTSTANDING``: each of ``--procs`` processes holds ``--sockets`` UDP sockets (each
its own source port, so kube-proxy's per-flow random choice spreads them over the endpoints) with up to
``--window`` queries outstanding on each, and sends a new query as each answer arrives; a socket whose answers
stop for 1 s has its window refilled (the missing queries counted lost). Queries cycle through ``--names``
(A records), built once with dnspython, each send with a fresh ID. ``--metrics`` reads
``coredns_dns_requests_total`` from each replica's ``:9153/metrics`` before and after, so the answered queries
are split by replica. Stdlib and dnspython only: it runs with the lab's Python inside the pod's namespace.
"""
from __future__ import annotations

import argparse
import json
import os
import select
import socket
import time

import dns.message


def metrics(ip: str) -> int:
    try:
        with socket.create_connection((ip, 9153), timeout=2) as s:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
    except OSError:
        return -1
    return sum(int(line.rsplit(" ", 1)[1]) for line in data.decode().splitlines()
               if line.startswith("coredns_dns_requests_total"))


def worker(server: str, seconds: float, nsock: int, window: int, wires: list[bytes]) -> dict:
    socks = []
    for _ in range(nsock):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setblocking(False)
        s.connect((server, 53))
        socks.append(s)
    ep = select.epoll()
    by_fd = {s.fileno(): s for s in socks}
    outstanding = {s.fileno(): 0 for s in socks}
    last = {s.fileno(): time.monotonic() for s in socks}
    sent = answered = lost = noerror = 0
    qid, n = 0, len(wires)

    def send(s: socket.socket) -> None:
        nonlocal qid, sent
        qid = (qid + 1) & 0xFFFF
        w = wires[qid % n]
        try:
            s.send(qid.to_bytes(2, "big") + w[2:])
        except BlockingIOError:
            return
        sent += 1
        outstanding[s.fileno()] += 1

    for s in socks:
        ep.register(s.fileno(), select.EPOLLIN)
        for _ in range(window):
            send(s)
    start = time.monotonic()
    end = start + seconds
    while (now := time.monotonic()) < end:
        for fd, _ in ep.poll(0.05):
            s = by_fd[fd]
            while True:
                try:
                    data = s.recv(4096)
                except BlockingIOError:
                    break
                except ConnectionRefusedError:
                    break
                answered += 1
                noerror += (data[3] & 0x0F) == 0
                outstanding[fd] -= 1
                last[fd] = now
                send(s)
        for fd, t in last.items():
            if now - t > 1.0:  # answers stopped: those queries are lost; fill the window again
                lost += outstanding[fd]
                outstanding[fd] = 0
                last[fd] = now
                for _ in range(window):
                    send(by_fd[fd])
    elapsed = time.monotonic() - start
    return {"sent": sent, "answered": answered, "noerror": noerror, "lost": lost, "seconds": elapsed}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", default="10.96.0.10")
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--sockets", type=int, default=16)
    ap.add_argument("--window", type=int, default=8)
    ap.add_argument("--procs", type=int, default=1)
    ap.add_argument("--names", required=True)
    ap.add_argument("--metrics", default="")
    a = ap.parse_args()
    wires = [dns.message.make_query(name, "A").to_wire() for name in a.names.split(",")]
    replicas = [ip for ip in a.metrics.split(",") if ip]
    before = {ip: metrics(ip) for ip in replicas}
    pipes = []
    for _ in range(a.procs):
        r, w = os.pipe()
        if os.fork() == 0:
            os.close(r)
            out = worker(a.server, a.seconds, a.sockets, a.window, wires)
            os.write(w, json.dumps(out).encode())
            os._exit(0)
        os.close(w)
        pipes.append(r)
    results = []
    for r in pipes:
        data = b""
        while chunk := os.read(r, 65536):
            data += chunk
        os.close(r)
        results.append(json.loads(data))
    for _ in pipes:
        os.wait()
    after = {ip: metrics(ip) for ip in replicas}
    seconds = max(x["seconds"] for x in results)
    total = {k: sum(x[k] for x in results) for k in ("sent", "answered", "noerror", "lost")}
    print(json.dumps({**total, "seconds": round(seconds, 2), "qps": round(total["answered"] / seconds),
                      "per_replica_qps": {ip: round((after[ip] - before[ip]) / seconds) for ip in replicas}}))


if __name__ == "__main__":
    main()
