"""Formatting of run fields for the TUI: pure functions, no Textual, no I/O.

Times are stored as UTC ISO strings and formatted only here, at the edge; the
time zone is a parameter so that tests and snapshots do not depend on the machine.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone, tzinfo
from typing import Any

# One look for a run in the CLI and the TUI: the core's formatting, reused here.
from labbook.analysis.metrics import key_columns, metric_column
from labbook.model import RunRecord
from labbook.render.runs import STATUS_STYLE, fmt_seconds, fmt_value, key_metrics, seed_text
from labbook.textsafe import printable, printable_lines

__all__ = [
    "STATUS_STYLE",
    "column_value",
    "duration_seconds",
    "fmt_duration",
    "fmt_seconds",
    "fmt_time",
    "fmt_value",
    "key_columns",
    "key_metrics",
    "metric_order",
    "parse_iso",
    "printable",
    "printable_lines",
    "safe",
    "safe_lines",
    "seed_missing",
    "seed_text",
    "short",
    "short_middle",
]


def seed_missing(rec: RunRecord) -> bool:
    """Whether the run has no seed value: ``seed_text`` says "not set" or "unknown"."""
    return (rec.get("seed") or {}).get("value") is None


#: Metric tags worth a column first: validation, then loss, then accuracy.
_KEY_HINTS = ("val", "eval", "test", "loss", "acc")


def parse_iso(iso: str | None) -> datetime | None:
    if not iso:
        return None
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return None


def fmt_time(iso: str | None, tz: tzinfo | None = None, *, short: bool = False) -> str:
    """``2026-11-22T10:13:28Z`` → ``2026-11-22 10:13`` in ``tz`` (local time when None).

    ``short`` drops the century (``26-11-22 10:13``): two columns matter at 80 wide.
    """
    dt = parse_iso(iso)
    if dt is None:
        return iso or "—"
    return dt.astimezone(tz).strftime("%y-%m-%d %H:%M" if short else "%Y-%m-%d %H:%M")


def duration_seconds(rec: RunRecord, now: float | None = None) -> float | None:
    """Wall time of a run; a running run counts up to ``now`` (an injected clock)."""
    start = parse_iso(rec.get("started_at"))
    end = parse_iso(rec.get("ended_at"))
    if start is None:
        return None
    if end is None:
        if rec.get("status") != "running" or now is None:
            return None
        end = datetime.fromtimestamp(now, tz=timezone.utc)
    return (end - start).total_seconds()


def fmt_duration(rec: RunRecord, now: float | None = None) -> str:
    secs = duration_seconds(rec, now)
    return "—" if secs is None else fmt_seconds(secs)


def metric_order(tags: Sequence[str]) -> list[str]:
    """Tags in the order worth looking at: validation, loss, accuracy first; system metrics last."""

    def score(tag: str) -> tuple[int, str]:
        low = tag.lower()
        if low.startswith(("gpu", "sys", "system")):
            return (len(_KEY_HINTS) + 1, tag)
        return (next((i for i, h in enumerate(_KEY_HINTS) if h in low), len(_KEY_HINTS)), tag)

    return sorted(tags, key=score)


def column_value(rec: RunRecord, key: str) -> Any:
    """The value of a column: ``metrics.NAME`` (the last value of the run's tag for a
    canonical metric name such as ``train_loss``, or of the tag NAME), or a config key."""
    if key.startswith(("metrics.", "metric.")):
        found = metric_column(rec.get("metrics") or {}, key.split(".", 1)[1])
        return found[1]["last"] if found else None
    if key in (rec.get("metrics") or {}) and key not in (rec.get("config") or {}):
        return rec["metrics"][key].get("last")
    return (rec.get("config") or {}).get(key)


def short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def short_middle(text: str, width: int) -> str:
    """``text`` in at most ``width`` terminal cells, cut in the MIDDLE: names of one
    sweep share their start and differ at the end (``seeds/lig…r0.1_seed3``), so the
    end is kept (it gets the odd cell). Wide characters count as two cells."""
    from rich.cells import cell_len

    if cell_len(text) <= width:
        return text
    if width <= 1:
        return "…"[:width]
    room = width - 1
    head_room = room // 2
    tail_room = room - head_room
    head, used = "", 0
    for ch in text:
        w = cell_len(ch)
        if used + w > head_room:
            break
        head, used = head + ch, used + w
    tail, used = "", 0
    for ch in reversed(text):
        w = cell_len(ch)
        if used + w > tail_room:
            break
        tail, used = ch + tail, used + w
    return f"{head}…{tail}"


def safe(text: Any, style: str = "") -> Any:
    """Recorded text as a rich ``Text`` on one line: control characters and bidi
    overrides escaped (:func:`labbook.textsafe.printable`), and never read as markup
    (a run named ``[red]x`` shows its brackets)."""
    from rich.text import Text

    return Text(printable("" if text is None else text), style=style)


def safe_lines(text: Any, style: str = "") -> Any:
    """Like :func:`safe` for text of several lines (a note): newlines kept."""
    from rich.text import Text

    return Text(printable_lines("" if text is None else text), style=style)


def log_text(log: str) -> Any:
    """A run's log as it looked on a terminal: colours kept, other escape sequences
    dropped, a progress bar's ``\r`` redraws shown as their last state; anything a
    terminal would still act on (C1 controls, bidi overrides) shown escaped."""
    from rich.text import Text

    text = Text.from_ansi(log)
    plain = text.plain
    if printable_lines(plain) != plain:
        return Text(printable_lines(plain))
    return text
