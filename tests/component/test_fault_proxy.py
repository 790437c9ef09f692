"""The ARI socket-cut proxy: forwards both ways, cut() drops every connection, new ones work."""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterator

import pytest
from support.faults import AriProxy


class Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(4096):
            self.request.sendall(data)


@pytest.fixture
def echo_port() -> Iterator[int]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Echo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


def roundtrip(sock: socket.socket, data: bytes) -> bytes:
    sock.sendall(data)
    return sock.recv(4096)


def test_cut_drops_every_open_connection_and_the_next_one_is_accepted(echo_port: int) -> None:
    with AriProxy(upstream_port=echo_port) as proxy:
        first = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
        second = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
        assert roundtrip(first, b"ping") == b"ping"
        assert roundtrip(second, b"pong") == b"pong"

        assert proxy.cut() == 2

        for sock in (first, second):
            with pytest.raises(OSError):  # reset by the proxy (or EOF -> empty read)
                if not roundtrip(sock, b"again"):
                    raise ConnectionResetError
            sock.close()
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as third:
            assert roundtrip(third, b"back") == b"back"
        assert proxy.open_connections <= 1
