"""podlab's built-in echo server, modelled on Kubernetes' ``agnhost netexec``.

The e2e "Networking Granular Checks" probe ``agnhost netexec`` pods over HTTP and UDP; this module answers the
same requests the same way (behaviour read from agnhost's source) so those checks can be replayed in a lab::

    python3 -m emulator.images.netexec [netexec] --http-port=8080 --udp-port=8081

Standard library only, nothing heavy imported: a pod's "container" starts in a few tens of milliseconds. Flags
take agnhost's spellings (``--http-port``, ``--udp-port``, ``--udp-listen-addresses``, ``--http-override``,
``--tls-cert-file``, ``--tls-private-key-file``; ``--sctp-port`` is accepted, SCTP is not served); unknown flags
are ignored with a warning on stderr; a leading ``netexec`` word (agnhost's sub-command) is accepted. podlab adds
``--bind-address`` (default 0.0.0.0) for HTTP, and for UDP unless ``--udp-listen-addresses`` is given.

HTTP: ``/hostname`` and ``/hostName`` (``$POD_NAME`` when set, since lab pods share their node's UTS namespace,
else the host name), ``/clientip`` ("ip:port" of the peer), ``/echo?msg=&code=``, ``/healthz`` (200 once UDP
listens, else 412), ``/dial?host=&port=&protocol=http|udp&request=&tries=`` (JSON ``{"errors":[...],
"responses":[...]}``, each key only when it has content, as agnhost), ``/redirect?location=&code=``,
``/exit?code=&timeout=&wait=``, ``/shutdown``. Differences: ``/`` and unknown paths (which Go's mux sends to
``/``) answer the host name, where agnhost prints a timestamp; ``/shell`` and ``/upload`` answer 501;
``/healthz`` says "ok", and is ready at once when UDP is off; ``/exit`` answers before exiting.

UDP, one datagram in and one out, up to 65507 bytes: the text is trimmed and lower-cased as agnhost does, then
``hostname`` -> the name, ``echo <msg>`` -> msg, ``clientip`` -> "ip:port"; anything else gets no answer.
Every request is logged on stdout, one flushed line each.
"""
from __future__ import annotations

import json
import os
import re
import socket
import sys
import threading
import time
from http.client import HTTPConnection
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

MAX_UDP = 65535
DIAL_TIMEOUT = 5.0  # agnhost's per-try timeout for /dial, both protocols
_DURATION = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_log_lock = threading.Lock()


def log(message: str) -> None:
    """One line on stdout, stamped like Go's log package, flushed at once."""
    line = f"{time.strftime('%Y/%m/%d %H:%M:%S')} {message}\n"
    with _log_lock:
        sys.stdout.write(line)
        sys.stdout.flush()


def hostname() -> str:
    return os.environ.get("POD_NAME") or socket.gethostname()


def join_host_port(host: str, port: int | str) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_duration(text: str) -> float:
    """Seconds in a Go duration ("1.5s", "300ms", "1m30s", "0"; "" counts as 0); ValueError if not one."""
    body = text.lstrip("+-")
    if body in ("", "0") and text in ("", "0", "+0", "-0"):
        return 0.0
    if not body or _DURATION.sub("", body) != "":
        raise ValueError(f"time: invalid duration {text!r}")
    total = sum(float(n) * _UNITS[u] for n, u in _DURATION.findall(body))
    return -total if text.startswith("-") else total


class Options:
    """The flags, named as agnhost's with "-" -> "_", and their defaults (bind_address is podlab's)."""

    http_port, udp_port, sctp_port = 8080, 8081, -1
    bind_address, http_override, tls_cert_file, tls_private_key_file = "0.0.0.0", "", "", ""
    udp_listen_addresses: list[str] = []  # replaced, never mutated


_INT_FLAGS = {"http-port", "udp-port", "sctp-port"}
_STR_FLAGS = {"bind-address", "udp-listen-addresses", "http-override", "tls-cert-file", "tls-private-key-file"}


def parse_args(argv: list[str]) -> Options:
    """agnhost-style flags (``--name=value`` or ``--name value``); SystemExit(2) on a bad value."""
    opts, args = Options(), list(argv)
    if args and args[0] == "netexec":
        args.pop(0)
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if not arg.startswith("-") or arg in ("-", "--"):
            sys.exit(f"netexec: unexpected argument {arg!r} (netexec takes flags only)")
        name, eq, value = arg.lstrip("-").partition("=")
        known = name in _INT_FLAGS or name in _STR_FLAGS
        if not eq and i < len(args) and (known or not args[i].startswith("-")):
            value = args[i]  # "--flag value"; an unknown flag swallows a following non-flag word
            i += 1
        if not known:
            print(f"netexec: warning: ignoring unknown flag {arg!r}", file=sys.stderr, flush=True)
            continue
        attr = name.replace("-", "_")
        if name in _INT_FLAGS:
            try:
                setattr(opts, attr, int(value))
            except ValueError:
                sys.exit(f"netexec: invalid value {value!r} for flag --{name}: not an integer")
        elif name == "udp-listen-addresses":
            opts.udp_listen_addresses = [a.strip() for a in value.split(",") if a.strip()]
        else:
            setattr(opts, attr, value)
    return opts


def dial_http(request: str, addr: tuple[str, int]) -> str:
    """GET http://host:port/<request> as agnhost's dialHTTP, returning the body whatever the status."""
    hp = join_host_port(*addr)
    url = f"http://{hp}/{request}"
    conn = HTTPConnection(addr[0], addr[1], timeout=DIAL_TIMEOUT)
    try:
        try:
            conn.connect()
        except OSError as exc:
            raise RuntimeError(f'Get "{url}": dial tcp {hp}: connect: {_reason(exc)}') from None
        conn.request("GET", "/" + request)
        return conn.getresponse().read().decode("utf-8", "replace")
    except TimeoutError:
        raise RuntimeError(f'Get "{url}": context deadline exceeded (Client.Timeout exceeded while awaiting '
                           "headers)") from None
    except (OSError, ValueError) as exc:  # http.client's errors derive from these
        raise RuntimeError(f'Get "{url}": {_reason(exc)}') from None
    finally:
        conn.close()


def dial_udp(request: str, addr: tuple[str, int]) -> str:
    """Send ``request`` in one datagram and read one reply, as agnhost's dialUDP."""
    family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(addr)
        except OSError as exc:
            raise RuntimeError(f"udp dial failed. err:{_reason(exc)}") from None
        try:
            sock.send(request.encode())
        except OSError as exc:
            raise RuntimeError(f"udp connection write failed. err:{_reason(exc)}") from None
        sock.settimeout(DIAL_TIMEOUT)
        local = join_host_port(*sock.getsockname()[:2])
        try:
            data = sock.recv(MAX_UDP)
        except OSError as exc:
            what = f"read udp {local}->{join_host_port(*addr)}: {_reason(exc)}"
            raise RuntimeError(f"reading from udp connection failed. err:'{what}'") from None
        if not data:
            raise RuntimeError("reading from udp connection failed. err:'<nil>'")
        return data.decode("utf-8", "replace")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return "i/o timeout"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__


def go_json(value: object) -> str:
    """json.Marshal's output: compact, map keys sorted, <, > and & escaped."""
    text = json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


class NetexecServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, opts: Options) -> None:
        self.opts, self.ready, self.active, self.active_lock = opts, threading.Event(), 0, threading.Lock()
        self.exit_request: tuple[int, float] | None = None  # (code, seconds to let connections finish)
        super().__init__((opts.bind_address, opts.http_port), Handler)

    def handle_error(self, request: object, client_address: tuple[str, int]) -> None:
        log(f"{join_host_port(*client_address[:2])} connection failed: {sys.exc_info()[1]!r}")  # no traceback


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: NetexecServer

    def handle(self) -> None:
        with self.server.active_lock:
            self.server.active += 1
        try:
            super().handle()
        finally:
            with self.server.active_lock:
                self.server.active -= 1

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base class's name)
        log(f"{self.peer()} {format % args}")

    def peer(self) -> str:
        return join_host_port(*self.client_address[:2])

    def do_GET(self) -> None:
        parts = urlsplit(self.server.opts.http_override or self.path)
        params: dict[str, str] = {}
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        if body and self.headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded"):
            params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            params.setdefault(key, value)  # as Go's FormValue: the body wins, then the first query value
        ROUTES.get(parts.path, Handler.hostname)(self, params)

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_GET

    def send(self, code: int, body: str, headers: dict[str, str] | None = None) -> None:
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        self.wfile.flush()

    def error(self, code: int, message: str) -> None:  # as Go's http.Error
        self.send(code, message + "\n", {"X-Content-Type-Options": "nosniff"})

    def hostname(self, params: dict[str, str]) -> None:
        self.send(200, hostname())

    def clientip(self, params: dict[str, str]) -> None:
        self.send(200, self.peer())

    def status_param(self, params: dict[str, str], default: int) -> int | None:
        """The ``code`` parameter; None once agnhost's complaint (with a 200) has been sent."""
        code = params.get("code", "")
        if code.isdigit() and 100 <= int(code) <= 999:
            return int(code)
        if code:
            self.send(200, f"argument 'code' must be an integer or empty, got {json.dumps(code)}\n")
            return None
        return default

    def echo(self, params: dict[str, str]) -> None:
        if (status := self.status_param(params, 200)) is not None:
            self.send(status, params.get("msg", ""))

    def healthz(self, params: dict[str, str]) -> None:
        self.send(*((200, "ok") if self.server.ready.is_set() else (412, "")))

    def redirect(self, params: dict[str, str]) -> None:
        location = params.get("location", "")
        if (status := self.status_param(params, 302)) is not None:
            body = f'<a href="{location}">{self.responses.get(status, ("",))[0]}</a>.\n\n'
            self.send(status, body, {"Location": location})

    def exit(self, params: dict[str, str]) -> None:
        code, durations = params.get("code", ""), {}
        for name in ("timeout", "wait"):
            try:
                durations[name] = parse_duration(params.get(name, ""))
            except ValueError:
                got = json.dumps(params[name])
                return self.send(200, f"argument '{name}' must be a valid golang duration or empty, got {got}\n")
        timeout, wait = durations["timeout"], durations["wait"]
        if code and not code.isdigit():
            return self.send(200, f"argument 'code' must be an integer [0-127] or empty, got {json.dumps(code)}\n")
        status = int(code or 0)
        log(f"Will begin shutdown in {wait}s, allowing {timeout}s for connections to close, then will exit "
            f"with {status}")
        time.sleep(max(wait, 0.0))
        self.send(200, "", {"Connection": "close"})
        if timeout <= 0:
            os._exit(status & 0xFF)
        self.server.exit_request = (status, timeout)
        threading.Thread(target=self.server.shutdown, daemon=True).start()

    def unsupported(self, params: dict[str, str]) -> None:
        self.error(501, f"{urlsplit(self.path).path} is not supported by podlab's netexec")

    def dial(self, params: dict[str, str]) -> None:
        host, port, request = params.get("host", ""), params.get("port", ""), params.get("request", "")
        protocol, tries_text = params.get("protocol", "").lower(), params.get("tries", "")
        try:
            tries = int(tries_text) if tries_text else 1
        except ValueError:
            return self.error(400, f'tries parameter is invalid. strconv.Atoi: parsing "{tries_text}": '
                                   "invalid syntax")
        if not request:
            return self.error(400, "request parameter not specified. <nil>")
        if protocol not in ("", "http", "udp"):
            return self.error(400, f"unsupported protocol. {protocol}")
        kind = socket.SOCK_DGRAM if protocol == "udp" else socket.SOCK_STREAM
        try:
            info = socket.getaddrinfo(host or None, int(port), type=kind)
            addr = (info[0][4][0], int(info[0][4][1]))
        except (OSError, ValueError, OverflowError) as exc:
            return self.error(400, f"host and/or port param are invalid. {_reason(exc)}")
        dialer = dial_udp if protocol == "udp" else dial_http
        responses: list[str] = []
        errors: list[str] = []
        response = ""  # the last try's
        for _ in range(tries):
            try:
                response = dialer(request, addr)
                responses.append(response)
            except RuntimeError as exc:
                response = ""
                errors.append(str(exc))
        output: dict[str, list[str]] = {}
        if response:  # agnhost's quirk: responses are reported when the last try answered
            output["responses"] = responses
        if errors:
            output["errors"] = errors
        self.send(200, go_json(output))


ROUTES = {
    "/": Handler.hostname, "/hostname": Handler.hostname, "/hostName": Handler.hostname,
    "/clientip": Handler.clientip, "/echo": Handler.echo, "/healthz": Handler.healthz, "/dial": Handler.dial,
    "/redirect": Handler.redirect, "/exit": Handler.exit, "/shutdown": Handler.exit,
    "/shell": Handler.unsupported, "/upload": Handler.unsupported,
}


def udp_reply(data: bytes, peer: str) -> bytes | None:
    """agnhost's UDP protocol: the answer to one datagram, or None for no answer."""
    text = data.decode("utf-8", "replace").strip().lower()
    if text == "hostname":
        log(f"Sending udp hostName response to {peer}")
        return hostname().encode()
    if text.startswith("echo "):
        msg = text.split(" ", 1)[1]
        log(f"Echoing {len(msg)} characters to UDP client {peer}")
        return msg.encode()
    if text == "clientip":
        log(f"Sending clientip back to UDP client {peer}")
        return peer.encode()
    if text:
        log(f"Unknown UDP command received from {peer}: {text[:80]!r}")
    return None


def serve_udp(sock: socket.socket) -> None:
    while True:
        data, addr = sock.recvfrom(MAX_UDP)
        peer = join_host_port(*addr[:2])
        reply = udp_reply(data, peer)
        try:
            if reply is not None:
                sock.sendto(reply, addr)
        except OSError as exc:
            log(f"failed to answer UDP client {peer}: {exc}")


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(sys.argv[1:] if argv is None else argv)
    if opts.sctp_port != -1:
        print("netexec: warning: SCTP is not served by podlab's netexec; --sctp-port ignored", file=sys.stderr)
    udp: list[socket.socket] = []
    try:
        for address in (opts.udp_listen_addresses or [opts.bind_address]) if opts.udp_port != -1 else []:
            udp.append(socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_DGRAM))
            udp[-1].bind((address, opts.udp_port))
        server = NetexecServer(opts)
    except OSError as exc:
        print(f"netexec: cannot listen: {exc}", file=sys.stderr)
        return 1
    if opts.tls_cert_file:
        import ssl  # only when asked for: it is slow to import

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(opts.tls_cert_file, opts.tls_private_key_file or None)
        server.socket = ctx.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    for sock in udp:
        threading.Thread(target=serve_udp, args=(sock,), daemon=True).start()
        log(f"Started UDP server on port {join_host_port(*sock.getsockname()[:2])}")
    server.ready.set()
    log(f"Started HTTP server on port {opts.http_port}")
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        return 0
    code, timeout = server.exit_request or (0, 0.0)
    server.server_close()
    deadline = time.monotonic() + timeout
    while server.active > 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    log(f"Graceful shutdown completed, exiting with {code}")
    return code & 0xFF


if __name__ == "__main__":
    sys.exit(main())
