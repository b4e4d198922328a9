"""The partition proxy (tests/tcpproxy.py) against a real local echo server."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from tests.tcpproxy import TcpProxy


class EchoServer:
    """Echoes what each connection sends; counts the connections it saw."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.resets = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    def _echo(self, conn: socket.socket) -> None:
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except ConnectionResetError:
                    self.resets += 1
                    return
                except OSError:
                    return
                if not data:
                    return
                conn.sendall(data)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() blocked in _serve
        self.sock.close()


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    yield server
    server.close()


@pytest.fixture
def proxy(echo: EchoServer) -> Iterator[TcpProxy]:
    with TcpProxy("127.0.0.1", echo.port) as p:
        yield p


def client(proxy: TcpProxy, timeout: float = 5) -> socket.socket:
    return socket.create_connection(("127.0.0.1", proxy.port), timeout=timeout)


def roundtrip(sock: socket.socket, payload: bytes) -> bytes:
    sock.sendall(payload)
    got = b""
    while len(got) < len(payload):
        chunk = sock.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


def wait_for(cond, timeout: float = 5) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


def test_pass_forwards_both_ways(proxy: TcpProxy, echo: EchoServer) -> None:
    with client(proxy) as s:
        assert roundtrip(s, b"hello") == b"hello"
        big = bytes(range(256)) * 4096  # 1 MiB, many chunks
        assert roundtrip(s, big) == big
    assert echo.connections == 1
    assert proxy.bytes_forwarded >= 2 * (5 + len(big))


def test_delay_holds_each_chunk(proxy: TcpProxy) -> None:
    with client(proxy) as s:
        assert roundtrip(s, b"warm") == b"warm"
        proxy.set_mode("delay", 150)
        start = time.monotonic()
        assert roundtrip(s, b"slow") == b"slow"
        # one chunk each way, each held 150 ms: a lower bound, not a speed goal
        assert time.monotonic() - start >= 0.28
        proxy.set_mode("pass")
        assert roundtrip(s, b"fast") == b"fast"


def test_reset_resets_open_and_new_connections(proxy: TcpProxy, echo: EchoServer) -> None:
    s = client(proxy)
    assert roundtrip(s, b"before") == b"before"
    proxy.set_mode("reset")
    with pytest.raises(ConnectionResetError):
        # the first read after a RST fails (a send may still be buffered)
        s.sendall(b"x")
        s.recv(10)
    s.close()
    assert wait_for(lambda: echo.resets == 1)  # the server side saw a reset, not an end

    start = time.monotonic()
    with pytest.raises((ConnectionResetError, BrokenPipeError)), client(proxy) as s2:
        s2.sendall(b"y")
        if s2.recv(10) == b"":
            raise ConnectionResetError("closed")
    assert time.monotonic() - start < 2  # at once, not after a timeout
    assert echo.connections == 1  # the new connection never reached the server

    proxy.set_mode("pass")
    with client(proxy) as s3:
        assert roundtrip(s3, b"after") == b"after"


def test_blackhole_accepts_reads_never_answers_then_heals(
    proxy: TcpProxy, echo: EchoServer
) -> None:
    open_before = client(proxy)
    assert roundtrip(open_before, b"one") == b"one"
    proxy.set_mode("blackhole")

    open_before.settimeout(0.3)
    open_before.sendall(b"two")
    with pytest.raises(socket.timeout):
        open_before.recv(10)

    # a new connection is accepted (connect succeeds) but never reaches the server
    fresh = client(proxy, timeout=0.3)
    fresh.sendall(b"three")
    with pytest.raises(socket.timeout):
        fresh.recv(10)
    assert echo.connections == 1
    assert proxy.accepted == 2

    # the partition heals: what was held is delivered
    proxy.set_mode("pass")
    open_before.settimeout(5)
    fresh.settimeout(5)
    assert open_before.recv(10) == b"two"
    assert fresh.recv(10) == b"three"
    assert echo.connections == 2
    open_before.close()
    fresh.close()


def test_upstream_down_is_a_reset(echo: EchoServer) -> None:
    with TcpProxy("127.0.0.1", echo.port) as p:
        echo.close()
        time.sleep(0.05)
        with client(p) as s:
            s.sendall(b"z")
            try:
                data = s.recv(10)
            except ConnectionResetError:
                data = b""
            assert data == b""


def test_unknown_mode_is_refused(proxy: TcpProxy) -> None:
    with pytest.raises(ValueError, match="unknown proxy mode"):
        proxy.set_mode("drop")
    assert proxy.mode == "pass"


def test_close_resets_what_is_open(echo: EchoServer) -> None:
    p = TcpProxy("127.0.0.1", echo.port)
    s = client(p)
    assert roundtrip(s, b"a") == b"a"
    p.close()
    s.settimeout(2)
    with contextlib.suppress(ConnectionResetError):
        assert s.recv(10) == b""
    s.close()
    assert p.open_connections == 0
