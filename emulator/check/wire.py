"""The two small programs the conformance checks run *inside* lab namespaces: a server and a prober.

``serve PORT``: in a target pod, accept TCP connections and answer each with one line — the peer address as the
server's kernel saw it — followed by ``BULK`` bytes, so the same connection proves reachability, shows NAT (the
source the *receiver* observed) and crosses the path MTU with full-size segments (a wrong MTU on an overlay
stalls exactly there). ``probe JSON``: in a source namespace, connect to every target in parallel and print one
JSON result per target. Standard library only, so each start costs ~30 ms and needs nothing in the pod.

    python -m emulator.check.wire serve 41234
    python -m emulator.check.wire probe '[["10.244.2.3", 41234]]'
    python -m emulator.check.wire connect '[["10.96.0.10", 53]]'     (connect only)
"""
from __future__ import annotations

import json
import socket
import sys
import threading
import time

BULK = 48 * 1024
TIMEOUT = 3.0


def serve(port: int) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen(128)
    print("ready", flush=True)
    payload = b"x" * BULK

    def answer(c: socket.socket, addr: tuple) -> None:
        try:
            c.sendall(f"{addr[0]}\n".encode() + payload)
        except OSError:
            pass
        finally:
            c.close()

    while True:
        c, addr = s.accept()
        threading.Thread(target=answer, args=(c, addr), daemon=True).start()


def probe_one(ip: str, port: int) -> dict:
    t0 = time.monotonic()
    out: dict = {"target": ip, "port": port, "connected": False, "seen": None, "bulk": 0, "error": ""}
    try:
        with socket.create_connection((ip, port), timeout=TIMEOUT) as c:
            out["connected"] = True
            c.settimeout(TIMEOUT)
            buf = b""
            while len(buf) < BULK + 64:
                chunk = c.recv(65536)
                if not chunk:
                    break
                buf += chunk
            line, _, rest = buf.partition(b"\n")
            out["seen"] = line.decode() or None
            out["bulk"] = len(rest)
    except OSError as e:
        out["error"] = e.strerror or str(e)
    out["ms"] = round((time.monotonic() - t0) * 1000, 1)
    return out


def connect_one(ip: str, port: int) -> dict:
    """Only open (and close) a TCP connection: for servers of unknown protocol, e.g. behind a Service."""
    t0 = time.monotonic()
    out: dict = {"target": ip, "port": port, "connected": False, "error": ""}
    try:
        socket.create_connection((ip, port), timeout=TIMEOUT).close()
        out["connected"] = True
    except OSError as e:
        out["error"] = e.strerror or str(e)
    out["ms"] = round((time.monotonic() - t0) * 1000, 1)
    return out


def probe(targets: list[tuple[str, int]], one=probe_one) -> list[dict]:
    results: list[dict | None] = [None] * len(targets)

    def run(i: int) -> None:
        results[i] = one(*targets[i])
    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(targets))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [r for r in results if r is not None]


def main(argv: list[str]) -> int:
    if argv[:1] == ["serve"]:
        serve(int(argv[1]))
        return 0
    if argv[:1] in (["probe"], ["connect"]):
        one = connect_one if argv[0] == "connect" else probe_one
        print(json.dumps(probe([(ip, int(p)) for ip, p in json.loads(argv[1])], one)))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
