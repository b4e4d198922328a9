"""``labbook usage`` as text (a table that fits the terminal) and as data rows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from labbook.analysis.usage import IDLE_PCT, TOP_IDLE, Group, Usage
from labbook.render.runs import cells, shorten_middle
from labbook.textsafe import printable

#: The data columns after the group's key (csv, tsv, md, jsonl), in order.
DATA_FIELDS = (
    "runs",
    "runs_without_gpu_samples",
    "gpu_hours",
    "lost_gpu_hours",
    "median_util_pct",
    "peak_memory_mib",
    "memory_total_mib",
    "energy_kwh",
    "idle_runs",
    "idle_run_ids",
)

_GAP = "  "
_KEY_MIN = 10


def key_field(u: Usage) -> str:
    """The first column's name: what the rows are grouped by (``group`` when not)."""
    return u.by or "group"


def data_rows(u: Usage) -> list[dict[str, Any]]:
    """A flat row per group, then the total (its key ``(total)``)."""
    out = []
    for g in [*u.groups, u.total]:
        d = g.as_dict()
        row: dict[str, Any] = {key_field(u): d["key"]}
        row.update({k: d[k] for k in DATA_FIELDS})
        out.append(row)
    return out


def as_json(u: Usage) -> dict[str, Any]:
    """``labbook usage --json``: ``{by, since, groups: [...], total: {...}}``."""
    return {
        "by": u.by,
        "since": u.since,
        "groups": [g.as_dict() for g in u.groups],
        "total": u.total.as_dict(),
    }


def hours(h: float) -> str:
    if h == 0:
        return "0"
    if h < 0.01:
        return "<0.01"
    if h < 10:
        return f"{h:.2f}"
    if h < 100:
        return f"{h:.1f}"
    return f"{h:,.0f}"


def gib(mib: float) -> str:
    v = mib / 1024.0
    return f"{v:.1f}" if v < 10 else f"{v:.0f}"


def memory(g: Group) -> str:
    """``peak 31 of 80 GiB`` without the word: ``31 of 80 GiB``."""
    if g.peak_memory_mib is None:
        return "—"
    if g.memory_total_mib is None:
        return f"{gib(g.peak_memory_mib)} GiB"
    return f"{gib(g.peak_memory_mib)} of {gib(g.memory_total_mib)} GiB"


def _cells(g: Group) -> list[str]:
    util = g.median_util_pct
    lost = hours(g.lost_gpu_hours)
    if g.lost_gpu_hours and g.gpu_hours:
        lost += f" ({100 * g.lost_gpu_hours / g.gpu_hours:.0f}%)"
    return [
        printable(g.key),
        str(len(g.run_ids)),
        hours(g.gpu_hours),
        lost,
        f"{util:.0f}%" if util is not None else "—",
        memory(g),
        hours(g.energy_kwh) if g.energy_kwh is not None else "—",
        str(len(g.idle)),
    ]


#: The table's headers; columns are dropped from the right, but the first three
#: stay, when the terminal is too narrow even with the first one shortened.
HEADERS = (
    "",
    "GPU runs",
    "GPU-h",
    "lost GPU-h",
    "util p50",
    "peak memory",
    "kWh",
    f"idle<{IDLE_PCT:.0f}%",
)


def table_lines(u: Usage, *, width: int | None = None) -> list[str]:
    """The table: a row per group, the total, then what does not fit a column: runs
    without GPU samples, the idle runs by id. ``width``: fit it (None: no limit)."""
    headers = list(HEADERS)
    headers[0] = u.by or ""
    groups: Sequence[Group] = [*u.groups, u.total] if u.by else [u.total]
    rows = [_cells(g) for g in groups]
    rows[-1][0] = "total"
    keep = len(headers)
    while True:
        table = [headers[:keep], *[r[:keep] for r in rows]]
        widths = [max(cells(row[i]) for row in table) for i in range(keep)]
        used = sum(widths) + len(_GAP) * (keep - 1)
        if width is None or used <= width:
            break
        room = width - (used - widths[0])
        if room >= _KEY_MIN and widths[0] > room:
            widths[0] = room
            break
        if keep <= 3:
            widths[0] = max(1, room)
            break
        keep -= 1
    lines = []
    for n, row in enumerate(table):
        parts = []
        for i, text in enumerate(row[:keep]):
            if i == 0:
                text = shorten_middle(text, widths[0])
                parts.append(text + " " * (widths[0] - cells(text)))
            else:
                parts.append(" " * (widths[i] - cells(text)) + text)
        line = _GAP.join(parts).rstrip()
        lines.append(line)
        if n == len(table) - 2 and u.by:  # a rule above the total
            lines.append("─" * min(cells(line), width or cells(line)))
    lines += footer(u, width=width)
    return lines


def footer(u: Usage, *, width: int | None = None) -> list[str]:
    t = u.total
    out = []
    if t.without_gpu:
        n = t.without_gpu
        out.append(f"{n} run{'s' if n != 1 else ''} without GPU samples")
    if t.idle:
        out.append(_idle_line(t, width))
    if not t.run_ids and not t.without_gpu:
        out.append("no runs match")
    return out


def _idle_line(t: Group, width: int | None) -> str:
    """The idle runs: as many ids as fit ``width`` (at least one), the most GPU-hours first."""
    n = len(t.idle)
    ids = t.idle_ids(TOP_IDLE)
    lead = f"{n} run{'s' if n != 1 else ''} held a GPU under {IDLE_PCT:.0f}% utilisation: "
    line = ""
    for detail in (True, False):
        for k in range(len(ids), 0, -1):
            shown = [
                f"{printable(r)} ({hours(t.idle[r][0])} GPU-h at {t.idle[r][1]:.0f}%)"
                if detail
                else printable(r)
                for r in ids[:k]
            ]
            more = f", … {n - k} more" if n > k else ""
            line = lead + ", ".join(shown) + more
            if width is None or cells(line) <= width:
                return line
    return shorten_middle(f"idle<{IDLE_PCT:.0f}%: " + ", ".join(ids), width or len(line))
