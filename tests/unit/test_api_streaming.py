"""The streaming pieces without a lab: WebSocket framing, SPDY/3.1 framing and its header dictionary, the attach
holder's frames, log tails and stamps, exec's Status messages, and the pod phase of terminated containers."""
from __future__ import annotations

import hashlib
import json
import os
import socket
import struct
import zlib

from emulator.agent.pods import pod_phase
from emulator.apiserver import exec as pexec, logs, spdy, stream_ws
from emulator.images import attachable


def test_websocket_accept_key_and_protocol_choice() -> None:
    # RFC 6455's own example
    hs = stream_ws.handshake({"sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ=="}, "v5.channel.k8s.io").decode()
    assert "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in hs and hs.startswith("HTTP/1.1 101 ")
    h = {"sec-websocket-protocol": "v5.channel.k8s.io, v4.channel.k8s.io"}
    assert stream_ws.choose(h, ("v4.channel.k8s.io", "v5.channel.k8s.io")) == "v5.channel.k8s.io"
    assert stream_ws.choose({"sec-websocket-protocol": "base64.channel.k8s.io"}, pexec.PROTOCOLS) is None


def _client_frame(op: int, payload: bytes, fin: bool = True) -> bytes:
    key = os.urandom(4)
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | op])
    head += bytes([0x80 | n]) if n < 126 else (bytes([0x80 | 126]) + struct.pack("!H", n) if n < 65536 else
                                               bytes([0x80 | 127]) + struct.pack("!Q", n))
    return head + key + stream_ws.unmask(payload, key)


def test_websocket_frames_masked_fragmented_ping_and_close() -> None:
    a, b = socket.socketpair()
    try:
        ws = stream_ws.WebSocket(a)
        big = os.urandom(70000)
        b.sendall(_client_frame(stream_ws.OP_BINARY, b"\x00he", fin=False) + _client_frame(stream_ws.OP_CONT, b"llo")
                  + _client_frame(stream_ws.OP_PING, b"p") + _client_frame(stream_ws.OP_BINARY, big)
                  + _client_frame(stream_ws.OP_CLOSE, struct.pack("!H", 1000)))
        got = []
        while len(got) < 3:
            ws.fill()
            got += list(ws.messages())
        assert got[0] == (stream_ws.OP_BINARY, b"\x00hello") and got[1] == (stream_ws.OP_BINARY, big)
        assert got[2][0] == stream_ws.OP_CLOSE and ws.closed
        ws.send_binary(b"\x01" + big)
        b.settimeout(5)
        data = b""
        while len(data) < 4 + 2 + len(big) + 1 + 10:
            data += b.recv(1 << 20)
        assert data[:3] == b"\x8a\x01p"        # the pong
        assert data[3:5] == b"\x88\x02"        # our close answer
        assert data[7:9] == b"\x82\x7f" and struct.unpack("!Q", data[9:17])[0] == len(big) + 1
        assert data[17:] == b"\x01" + big
    finally:
        a.close()
        b.close()


def test_spdy_dictionary_is_the_draft_3_one() -> None:
    assert len(spdy.DICTIONARY) == 1423
    assert hashlib.sha256(spdy.DICTIONARY).hexdigest() == \
        "51d27341373f923f3cd88e1eb7162aeaa3723d7585ff2399201dc06498407f02"
    assert zlib.adler32(spdy.DICTIONARY) == 0xE3C6A7C2  # the dictionary id a SPDY/3 zlib stream names


def test_spdy_frames_round_trip_with_one_compression_context() -> None:
    client, server = spdy.Framer(), spdy.Framer()
    wire = client.syn_stream(1, {"streamType": "error", "port": "80", "requestID": "0"}) + \
        client.data(1, fin=True) + client.syn_stream(3, {"streamType": "data", "port": "80", "requestID": "0"})
    frames = []
    for i in range(0, len(wire), 7):  # any split of the byte stream
        frames += server.feed(wire[i:i + 7])
    assert [f.type for f in frames] == [spdy.SYN_STREAM, 0, spdy.SYN_STREAM]
    assert frames[0].headers == {"streamtype": "error", "port": "80", "requestid": "0"}
    assert frames[1].fin and frames[2].headers["streamtype"] == "data" and frames[2].stream == 3
    back = client.feed(server.syn_reply(3) + server.data(3, b"abc") + server.ping(7) + server.rst(3))
    assert [(f.type, f.stream) for f in back] == [(spdy.SYN_REPLY, 3), (0, 3), (spdy.PING, 0), (spdy.RST_STREAM, 3)]
    assert back[1].data == b"abc" and back[2].value == 7


def test_exec_status_messages() -> None:
    assert json.loads(pexec.exit_status(0)) == {"metadata": {}, "status": "Success"}
    st = json.loads(pexec.exit_status(3))
    assert st["reason"] == "NonZeroExitCode" and st["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]


def test_attach_holder_frames() -> None:
    buf = bytearray(attachable.pack(0, b"ls\n") + attachable.pack(4, b'{"Width":80,"Height":24}') +
                    attachable.pack(255)[:3])
    assert attachable.unpack(buf) == [(0, b"ls\n"), (4, b'{"Width":80,"Height":24}')]
    assert len(buf) == 3
    buf += attachable.pack(255)[3:]
    assert attachable.unpack(buf) == [(255, b"")] and not buf


def test_log_tail_and_stamps(tmp_path) -> None:
    f = tmp_path / "c.log"
    f.write_bytes(b"".join(b"line %d\n" % i for i in range(100000)) + b"partial")
    assert logs.tail(f, 2) == b"line 99999\npartial"
    assert logs.tail(f, 0) == b""
    f.write_bytes(b"a\nb\n")
    assert logs.tail(f, 10) == b"a\nb\n"
    assert logs.stamp(0.5) == b"1970-01-01T00:00:00.500000000Z "
    assert logs.previous_log(f).name == "c.previous.log"


def test_pod_phase_of_terminated_containers() -> None:
    run = {"state": {"running": {}}}
    ok, bad = {"state": {"terminated": {"exitCode": 0}}}, {"state": {"terminated": {"exitCode": 2}}}
    assert pod_phase([run, ok]) == "Running"
    assert pod_phase([ok, ok]) == "Succeeded" and pod_phase([ok, bad]) == "Failed"
