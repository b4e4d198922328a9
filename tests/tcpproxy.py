"""A small TCP proxy for partition tests, with its mode switchable while it runs.

Put it between a client (a pushing node) and a server (PostgreSQL)::

    with TcpProxy("127.0.0.1", pg_port) as proxy:
        url = f"postgresql://postgres@127.0.0.1:{proxy.port}/db"
        proxy.set_mode("blackhole")      # or "pass", "reset", ("delay", 50)
        ...

Modes (they apply to the connections already open as well as to new ones):

- ``pass``: bytes are forwarded both ways as they come.
- ``delay``: each chunk waits ``delay_ms`` before it is forwarded (either way).
- ``reset``: every open connection is reset (SO_LINGER 0, then close: the peers
  see ECONNRESET, not an orderly end) and each new one is accepted and reset at once.
- ``blackhole``: connections are accepted and read, nothing is forwarded and
  nothing answered; a new connection does not reach the server. What was read is
  held, as a network holds what it will retransmit: back in ``pass`` or ``delay``
  it is delivered (a connection made during the partition reaches the server then).

Threads in the test's own process (one accept loop, two pumps per connection);
``python -m tests.tcpproxy LISTEN_PORT HOST:PORT`` runs one by hand and reads
modes from stdin (``pass``, ``delay 50``, ``reset``, ``blackhole``).
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import sys
import threading
import time
from typing import Any

MODES = ("pass", "delay", "reset", "blackhole")
_POLL_S = 0.02  # how often an idle pump looks at the mode
_CHUNK = 65536


def _rst(sock: socket.socket | None) -> None:
    """Close with SO_LINGER 0: the kernel sends RST instead of FIN."""
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


class _Conn:
    """One client connection and (once the mode lets it through) its upstream."""

    def __init__(self, proxy: TcpProxy, client: socket.socket) -> None:
        self.proxy = proxy
        self.client = client
        self.upstream: socket.socket | None = None
        self.held = {"up": bytearray(), "down": bytearray()}  # blackholed bytes
        self.lock = threading.Lock()
        self.connecting = threading.Lock()
        self.closed = False

    def start(self) -> None:
        threading.Thread(target=self._pump, args=("up",), daemon=True).start()
        threading.Thread(target=self._pump, args=("down",), daemon=True).start()

    def reset(self) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed = True
            _rst(self.client)
            _rst(self.upstream)
        self.proxy._forget(self)

    def _close(self) -> None:
        """An orderly end (one side closed): close both, normally."""
        with self.lock:
            if self.closed:
                return
            self.closed = True
            for s in (self.client, self.upstream):
                if s is not None:
                    with contextlib.suppress(OSError):
                        s.close()
        self.proxy._forget(self)

    def _ensure_upstream(self) -> bool:
        with self.connecting:  # both pumps come here: one upstream connection
            with self.lock:
                if self.closed:
                    return False
                if self.upstream is not None:
                    return True
            try:
                up = socket.create_connection(self.proxy.upstream, timeout=5)
            except OSError:
                self.reset()  # the server is not there: the client sees a reset
                return False
            up.settimeout(None)
            up.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                if self.closed:
                    up.close()
                    return False
                self.upstream = up
            return True

    def _pump(self, direction: str) -> None:
        proxy = self.proxy
        try:
            while not self.closed and not proxy._stopping:
                mode, delay_ms = proxy.mode, proxy.delay_ms
                if mode == "reset":
                    self.reset()
                    return
                forwarding = mode in ("pass", "delay")
                if forwarding and not self._ensure_upstream():
                    return
                src = self.client if direction == "up" else self.upstream
                dst = self.upstream if direction == "up" else self.client
                held = self.held[direction]
                if forwarding and held and dst is not None:
                    data, held[:] = bytes(held), b""
                    dst.sendall(data)
                    continue
                if src is None:  # blackholed before any upstream: nothing to read yet
                    time.sleep(_POLL_S)
                    continue
                ready, _, _ = select.select([src], [], [], _POLL_S)
                if not ready:
                    continue
                data = src.recv(_CHUNK)
                if not data:
                    self._close()
                    return
                mode, delay_ms = proxy.mode, proxy.delay_ms  # it may have changed meanwhile
                if mode == "reset":
                    self.reset()
                    return
                if mode == "blackhole" or dst is None:
                    held.extend(data)
                    continue
                if mode == "delay" and delay_ms > 0:
                    time.sleep(delay_ms / 1000)
                dst.sendall(data)
                with proxy._lock:
                    proxy.bytes_forwarded += len(data)
        except (OSError, ValueError):
            # a socket closed under us (the other pump reset it, or a peer went away)
            self._close()


class TcpProxy:
    """Listen on 127.0.0.1:<free port> and forward to ``host:port`` by the current mode."""

    def __init__(
        self, host: str, port: int, *, mode: str = "pass", delay_ms: int = 0, listen_port: int = 0
    ) -> None:
        self.upstream = (host, port)
        self.mode = "pass"
        self.delay_ms = 0
        self.set_mode(mode, delay_ms)
        self.accepted = 0
        self.bytes_forwarded = 0
        self._lock = threading.Lock()
        self._conns: set[_Conn] = set()
        self._stopping = False
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", listen_port))
        self._listener.listen(64)
        self.host = "127.0.0.1"
        self.port: int = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def set_mode(self, mode: str, delay_ms: int | None = None) -> None:
        """Switch to ``mode`` (one of MODES); ``delay_ms`` is the per-chunk delay of "delay"."""
        if mode not in MODES:
            raise ValueError(f"unknown proxy mode {mode!r}: one of {', '.join(MODES)}")
        if delay_ms is not None:
            self.delay_ms = int(delay_ms)
        self.mode = mode
        if mode == "reset":
            for conn in self.connections():
                conn.reset()

    def connections(self) -> list[_Conn]:
        with self._lock:
            return list(self._conns)

    @property
    def open_connections(self) -> int:
        return len(self.connections())

    def _forget(self, conn: _Conn) -> None:
        with self._lock:
            self._conns.discard(conn)

    def _accept_loop(self) -> None:
        while not self._stopping:
            try:
                ready, _, _ = select.select([self._listener], [], [], 0.1)
                if not ready:
                    continue
                client, _ = self._listener.accept()
            except (OSError, ValueError):
                return
            with self._lock:
                self.accepted += 1
            if self.mode == "reset":
                _rst(client)
                continue
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Conn(self, client)
            with self._lock:
                self._conns.add(conn)
            conn.start()

    def close(self) -> None:
        self._stopping = True
        with contextlib.suppress(OSError):
            self._listener.close()
        for conn in self.connections():
            conn.reset()
        self._thread.join(timeout=2)


def main(argv: list[str]) -> int:  # pragma: no cover - a tool for trying modes by hand
    if len(argv) != 2:
        print("usage: python -m tests.tcpproxy LISTEN_PORT HOST:PORT", file=sys.stderr)
        return 2
    host, _, port = argv[1].rpartition(":")
    proxy = TcpProxy(host or "127.0.0.1", int(port), listen_port=int(argv[0]))
    print(f"proxy on 127.0.0.1:{proxy.port} -> {argv[1]}")
    for line in sys.stdin:
        words = line.split()
        if words:
            try:
                proxy.set_mode(words[0], int(words[1]) if len(words) > 1 else None)
                print(f"mode {proxy.mode}")
            except ValueError as exc:
                print(exc)
    proxy.close()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
