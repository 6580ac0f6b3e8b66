"""The local tile server keeps connections open (HTTP/1.1, a length on every answer): one
connection serves many tiles, a client that goes away early ends only its own connection, and
``stop()`` and the idle timeout close the connections left open."""

from __future__ import annotations

import http.client
import socket
import struct
import time

import pytest

from looking_glass.local import tileserver
from looking_glass.local.tileserver import SyntheticTileServer

BODY = b"tile-bytes" * 100


def _server(**kwargs) -> SyntheticTileServer:
    # One small fixed body for every tile: the connections are tested, not rendering.
    return SyntheticTileServer(tile_source=lambda z, x, y: BODY, **kwargs)


def _get(conn: http.client.HTTPConnection, x: int) -> http.client.HTTPResponse:
    conn.request("GET", f"/18/{152900 + x}/132400.png")
    resp = conn.getresponse()
    resp.body = resp.read()
    return resp


def test_one_connection_serves_several_tiles():
    with _server() as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.httpd.server_address[1], timeout=10)
        first = _get(conn, 0)
        sock = conn.sock
        replies = [first] + [_get(conn, x) for x in range(1, 6)]
        assert [(r.status, r.version, r.body) for r in replies] == [(200, 11, BODY)] * 6
        assert all(r.getheader("Content-Length") == str(len(BODY)) for r in replies)
        assert conn.sock is sock, "http.client reconnected: the server closed the connection"
        assert len(server.httpd.open_connections) == 1
        conn.close()


def test_a_client_closing_early_ends_only_its_own_connection(capfd):
    with _server() as server:
        port = server.httpd.server_address[1]
        kept = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        assert _get(kept, 0).status == 200
        # One client goes away half-way through a request line, one right after sending its
        # request (a reset, not a clean close: SO_LINGER 0), one after the first bytes of the answer.
        partial = socket.create_connection(("127.0.0.1", port), timeout=10)
        partial.sendall(b"GET /18/152900/13")
        partial.close()
        for read_first in (False, True):
            early = socket.create_connection(("127.0.0.1", port), timeout=10)
            early.sendall(b"GET /18/152901/132400.png HTTP/1.1\r\nHost: x\r\n\r\n")
            if read_first:
                assert early.recv(12).startswith(b"HTTP/1.1 200")
            early.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            early.close()
        time.sleep(0.2)
        assert [_get(kept, x).body for x in range(1, 4)] == [BODY] * 3  # the other connection is served
        fresh = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        assert _get(fresh, 5).status == 200  # and new ones too
        kept.close()
        fresh.close()
    assert "Traceback" not in capfd.readouterr().err  # the server took the early ends quietly


def test_stop_closes_the_connections_left_open():
    server = _server().start()
    conn = http.client.HTTPConnection("127.0.0.1", server.httpd.server_address[1], timeout=10)
    assert _get(conn, 0).status == 200
    server.stop()
    conn.sock.settimeout(5)
    with pytest.raises((http.client.HTTPException, ConnectionError)):
        conn.auto_open = 0  # the same connection, not a new one
        _get(conn, 1)
    conn.close()


def test_an_idle_connection_is_closed_after_the_keep_alive_time(monkeypatch):
    monkeypatch.setattr(tileserver._Handler, "timeout", 0.3)
    with _server() as server:
        sock = socket.create_connection(("127.0.0.1", server.httpd.server_address[1]), timeout=5)
        sock.sendall(b"GET /18/152900/132400.png HTTP/1.1\r\nHost: x\r\n\r\n")
        reply = b""
        while len(reply) < len(BODY) or not reply.endswith(BODY):
            reply += sock.recv(65536)
        started = time.monotonic()
        assert sock.recv(1) == b""  # closed by the server, idle
        assert 0.2 < time.monotonic() - started < 3
        sock.close()
        assert not server.httpd.open_connections
