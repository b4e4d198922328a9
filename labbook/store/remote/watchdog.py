"""A deadline on a remote exchange: a server that stops answering fails it, never hangs it.

``connect_timeout_s`` bounds making a connection. Once connected, psycopg (libpq)
waits for the server's answer for as long as it takes: a server that hangs (stopped
by a signal, stuck on its disk) or a partition that swallows what is sent while the
peer's kernel still acknowledges it would hold a push round — and with it the
daemon's push thread, or the end of a ``labbook run`` — forever. TCP keepalives and
``tcp_user_timeout`` do not help there (the bytes *are* acknowledged).

:class:`Watchdog` is armed before each exchange (a push batch: apply and commit; a
spool file) and fires when one lasts longer than its deadline: it shuts the
connection's socket down, so the blocked call returns with an error
(``psycopg.OperationalError``) that the round turns into one line. Re-arming moves
the deadline on: a long push of many batches is bounded per batch, not in total.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from typing import Any

#: Seconds one remote exchange (a batch of up to a few hundred runs) may take.
DEFAULT_S = 60.0


class Watchdog:
    def __init__(self, conn: Any, seconds: float | None = None) -> None:
        self.conn = conn
        self.seconds = float(seconds or DEFAULT_S)
        self.fired = False
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()

    def arm(self) -> None:
        """(Re)start the deadline: ``seconds`` from now."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = threading.Timer(self.seconds, self._fire)
            self._timer.daemon = True
            self._timer.name = "labbook-remote-watchdog"
            self._timer.start()

    def stop(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    def __enter__(self) -> Watchdog:
        self.arm()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _fire(self) -> None:
        self.fired = True
        with contextlib.suppress(Exception):
            fd = self.conn.pgconn.socket
            # a second socket object on a duplicate of the descriptor: shutting it down
            # shuts the connection down (one socket underneath), closing it does not
            s = socket.socket(fileno=os.dup(fd))
            try:
                s.shutdown(socket.SHUT_RDWR)
            finally:
                s.close()

    def message(self) -> str:
        return f"the lab's notebook stopped answering (no reply in {self.seconds:g} s)"
