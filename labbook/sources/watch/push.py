"""The push thread of ``labbook watch``: this node's runs into the lab's notebook.

Every ``push_interval_s`` (10 s) a round pushes what changed
(:func:`labbook.store.remote.push.push_round`), with the curves of live runs every
``curves_interval_s`` (60 s; runs that ended always send theirs). The thread has
its own connection to the local store, so ingest never waits on it, and nothing
of it blocks the daemon: while the server is unreachable a round fails fast
(``connect_timeout_s``) and the next waits 5 s, 10 s, … up to 5 min. One line on
stderr says when pushing starts failing, and one when it recovers.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

from labbook.errors import LabbookError
from labbook.warn import warn_exception

BACKOFF_FIRST_S = 5.0
BACKOFF_MAX_S = 300.0


class Pusher:
    def __init__(self, db_path: Path, cfg: Any, *, stderr: Any = None) -> None:
        self.db_path = db_path
        self.cfg = cfg
        self.stderr = stderr
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.failing: str | None = None
        self.rounds = 0
        self.pushed = 0
        self.backoff = 0.0
        self._last_curves = 0.0

    def _say(self, text: str) -> None:
        out = self.stderr or sys.stderr
        try:
            out.write(f"labbook: {text}\n")
            out.flush()
        except (OSError, ValueError):
            pass

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="labbook-watch-push", daemon=True)
        self._thread.start()

    def stop(self, *, final: bool = True) -> None:
        """Stop; with ``final``, one last round (curves included) if the server answers."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=max(30.0, 3 * self.cfg.connect_timeout_s))
            self._thread = None
        if final and (self.failing is not None or not self.round(curves=True)):
            self._spool()  # faults: the last round did not reach the server

    def _spool(self) -> None:
        """What this node has not pushed goes to the spool under the (shared) home, for
        any later push on any node to ingest (labbook.store.remote.lastpush; issue #13
        item 6, helper "faults"): a node may never run labbook again."""
        from labbook.store import Store
        from labbook.store.remote.lastpush import write_batch

        try:
            with Store.open(self.db_path) as store:
                path = write_batch(store, self.cfg)
        except Exception as exc:  # the runs stay dirty here all the same
            warn_exception(None, "cannot spool the runs not pushed", exc)
            return
        if path is not None:
            self._say(f"runs not pushed to the lab's notebook are spooled to {path}")

    def _run(self) -> None:
        wait = 0.0
        while not self._stop.wait(wait):
            due = time.monotonic() - self._last_curves >= self.cfg.curves_interval_s
            ok = self.round(curves=due)
            if ok:
                wait = self.cfg.push_interval_s
            else:
                self.backoff = (
                    BACKOFF_FIRST_S if self.backoff == 0 else min(self.backoff * 2, BACKOFF_MAX_S)
                )
                wait = self.backoff

    def round(self, *, curves: bool) -> bool:
        """One push round; False when it failed (the reason is remembered)."""
        from labbook.store import Store
        from labbook.store.remote.config import describe_url
        from labbook.store.remote.push import push_round

        where = describe_url(self.cfg.url or "")
        try:
            with Store.open(self.db_path) as store:
                result = push_round(store, self.cfg, curves=curves, lazy=True)
        except LabbookError as exc:
            if self.failing is None:
                self._say(
                    f"push to the lab's notebook failing: {exc.message}; retrying from"
                    f" {BACKOFF_FIRST_S:g} s up to every {BACKOFF_MAX_S / 60:g} min"
                    " (recording goes on locally)"
                )
            self.failing = exc.message
            return False
        except Exception as exc:  # a bug or an unexpected server error: never stop watch
            warn_exception(None, f"push to {where} failed", exc)
            if self.failing is None:
                self._say(f"push to the lab's notebook failing: {type(exc).__name__}: {exc}")
            self.failing = str(exc)
            return False
        if curves:
            self._last_curves = time.monotonic()
        self.rounds += 1
        self.pushed += result.pushed
        if self.failing is not None:
            self._say(
                f"push to the lab's notebook at {where} recovered:"
                f" {result.pushed} run{'s' if result.pushed != 1 else ''} caught up"
            )
        self.failing = None
        self.backoff = 0.0
        return True
