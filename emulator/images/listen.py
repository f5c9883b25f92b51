"""The stand-in for images podlab does not know: a ``pause`` that listens on the pod's declared ports.

A real manifest's container (``nginx``, ``redis``, ...) cannot run here, but its ports can: TCP ports accept and
answer one line naming the pod and port (as an HTTP response when the client speaks HTTP, so ``curl`` works), UDP
ports echo. Usage:
``python -m emulator.images.listen 80/TCP 53/UDP``. Standard library only, one thread per port.
"""
from __future__ import annotations

import os
import socket
import sys
import threading


def _tcp(port: int, who: str) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen(64)
    while True:
        c, addr = s.accept()
        threading.Thread(target=_answer, args=(c, addr, port, who), daemon=True).start()


def _answer(c: socket.socket, addr: tuple, port: int, who: str) -> None:
    line = f"{who} port {port}/TCP (podlab stand-in for the image), you are {addr[0]}\n".encode()
    try:
        c.settimeout(0.5)
        try:
            first = c.recv(4096)
        except OSError:
            first = b""
        if first.split(b" ", 1)[0] in (b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH"):
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                      + f"Content-Length: {len(line)}\r\n\r\n".encode() + line)
        else:
            c.sendall(line)
    finally:
        c.close()


def _udp(port: int) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", port))
    while True:
        data, addr = s.recvfrom(65535)
        s.sendto(data, addr)


def main(argv: list[str]) -> int:
    who = os.environ.get("POD_NAME") or socket.gethostname()
    threads = []
    for spec in argv:
        port_s, _, proto = spec.partition("/")
        target = _udp if proto.upper() == "UDP" else _tcp
        args = (int(port_s),) if target is _udp else (int(port_s), who)
        t = threading.Thread(target=target, args=args, daemon=True)
        t.start()
        threads.append(t)
        print(f"listening on {port_s}/{(proto or 'TCP').upper()}", flush=True)
    threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
