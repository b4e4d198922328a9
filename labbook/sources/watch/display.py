"""What ``labbook watch`` shows: a live Rich pane on a terminal, or plain lines (``--log``).

Both are driven only from the daemon's consumer thread: ``event()`` for the
feed (run started / finished / diverged / failed, with the reason), ``refresh()``
once per tick with the runs being followed and the latest GPU readings.

Run names, paths and failure reasons come from the watched directories: they are
shown through :func:`labbook.textsafe.printable` (no newline, escape sequence or bidi
override reaches the terminal), and the live pane gives rich plain ``Text``, never
markup.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any, TextIO

from labbook.render.runs import fmt_seconds
from labbook.sources.watch.ingest import RunState
from labbook.textsafe import printable


def _clock(ts: float | None = None) -> str:
    return datetime.fromtimestamp(ts or time.time(), tz=timezone.utc).strftime("%H:%M:%SZ")


def _elapsed(seconds: float | None) -> str:
    return "-" if seconds is None or seconds < 0 else fmt_seconds(seconds)


def _num(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.4g}"


def _gpu_text(st: RunState) -> str:
    g = st.gpu
    if not g:
        return "-"
    mem = g.get("memory_mib")
    util = g.get("util_pct")
    parts = []
    if mem is not None:
        parts.append(f"{mem / 1024:.1f} GiB")
    if util is not None:
        parts.append(f"{util:.0f}%")
    return " ".join(parts) or "-"


class LogDisplay:
    """One plain line per event (for pipes, systemd, journald)."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout

    def start(self) -> None:
        pass

    def stop(self) -> None:
        self.out.flush()

    def message(self, text: str) -> None:
        print(f"{_clock()} {printable(text)}", file=self.out, flush=True)

    def event(self, kind: str, st: RunState, detail: str) -> None:
        tail = f": {detail}" if detail else ""
        self.message(f"{kind} {st.run_id} {st.name}{tail}")

    def refresh(self, states: Sequence[RunState], gpus: Sequence[str]) -> None:
        pass


class LiveDisplay:
    """A Rich Live pane: active runs, a feed of events, a line per GPU."""

    def __init__(self, console: Any = None, feed_size: int = 8) -> None:
        from rich.console import Console

        self.console = console or Console()
        self.feed: deque[str] = deque(maxlen=feed_size)
        self._live: Any = None
        self._states: Sequence[RunState] = ()
        self._gpus: Sequence[str] = ()

    def start(self) -> None:
        from rich.live import Live

        self._live = Live(self._render(), console=self.console, auto_refresh=False)
        self._live.start()

    def stop(self) -> None:
        if self._live is not None:
            self._live.update(self._render(), refresh=True)
            self._live.stop()
            self._live = None

    def message(self, text: str) -> None:
        self.feed.append(f"{_clock()} {printable(text)}")
        self._update()

    def event(self, kind: str, st: RunState, detail: str) -> None:
        tail = f": {detail}" if detail else ""
        self.feed.append(f"{_clock()} {printable(f'{kind} {st.name}{tail}')}")
        self._update()

    def refresh(self, states: Sequence[RunState], gpus: Sequence[str]) -> None:
        self._states, self._gpus = states, gpus
        self._update()

    def _update(self) -> None:
        if self._live is not None:
            self._live.update(self._render(), refresh=True)

    def _render(self) -> Any:
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        table = Table(title="labbook watch — active runs", expand=True, title_justify="left")
        for col in ("run", "name", "framework", "status", "step", "loss", "elapsed", "GPU"):
            table.add_column(col, no_wrap=col != "name", overflow="fold")
        now = time.time()
        for st in self._states:
            cells = (
                st.run_id,
                st.name,
                st.framework,
                st.status,
                str(st.step) if st.step is not None else "-",
                _num(st.last_loss),
                _elapsed(now - st.started_at if st.started_at else None),
                _gpu_text(st),
            )
            table.add_row(*[Text(printable(c or "")) for c in cells])
        parts: list[Any] = [table]
        if self._gpus:
            parts.append(Text("\n".join(printable(g) for g in self._gpus)))
        parts.append(Text("\n".join(self.feed) if self.feed else "waiting for runs…", style="dim"))
        return Group(*parts)
