"""Text for seed groups and sweeps: ``ls --group``, ``ls --sweep``, ``compare --group``.

A folded group is one line as ``ls`` lays out a run: its id (``g…``), ``n``, the
status breakdown, the name of its newest member, each metric as ``mean ± std``
(``--wide``: and ``min–max``), the best member; fitted to the terminal's width
the way ``ls`` fits its columns (:func:`labbook.render.runs.fit_columns`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from labbook.render.runs import (
    GAP,
    SHORT_ID,
    STATUS_STYLE,
    Column,
    cell_style,
    cells,
    fit_columns,
    fmt_number,
    pad_cell,
    runs_table_lines,
    shorten_middle,
)
from labbook.textsafe import printable

_COUNTS = ("finished", "failed", "diverged", "killed", "running", "unknown")


def _g(x: float | None, digits: int = 4) -> str:
    if x is None:
        return "—"
    return fmt_number(float(x), digits)


def mean_std(stat: Mapping[str, Any], *, wide: bool = False) -> str:
    """``0.3121 ± 0.004`` (``wide``: and ``(0.3080–0.3170)``); ``—`` without values."""
    if not stat or not stat.get("n"):
        return "—"
    text = _g(stat["mean"])
    if stat.get("std") is not None:
        text += f" ± {_g(stat['std'], 2)}"
    if wide and stat["n"] > 1:
        text += f" ({_g(stat['min'])}–{_g(stat['max'])})"
    return text


def status_cell(counts: Mapping[str, int]) -> str:
    """``3 finished, 2 diverged``."""
    return ", ".join(f"{n} {s}" for s, n in counts.items())


def _best_cell(row: Mapping[str, Any], *, short: bool = False) -> str:
    best = row.get("best")
    if not best:
        return "—"
    return str(best["id"])[:SHORT_ID] if short else str(best["id"])


def group_cells(
    row: Mapping[str, Any], metrics: Sequence[str], *, wide: bool, short_ids: bool = False
) -> list[str]:
    """The cells of one folded group: id, n, status, name, metrics…, best (``short_ids``:
    its id as the terminal's ``ls`` shows ids)."""
    return [
        printable(row["id"]),
        str(row["size"]),
        status_cell(row["statuses"]),
        printable(row.get("name") or ""),
        *[mean_std(row["metrics"].get(m) or {}, wide=wide) for m in metrics],
        _best_cell(row, short=short_ids),
    ]


def _columns(metrics: Sequence[str], extra: Sequence[str] = ()) -> list[Column]:
    return [
        *[Column("run", k) for k in extra],
        Column("run", "group"),
        Column("run", "n"),
        Column("run", "status"),
        Column("run", "name"),
        *[Column("metric", m) for m in metrics],
        Column("run", "best"),
    ]


def _lines(
    header: list[Column],
    table: list[list[str]],
    *,
    width: int | None,
    color: bool,
    after: Mapping[int, list[str]] | None = None,
) -> list[str]:
    import click

    natural = {
        c: max([cells(c.header), *(cells(row[i]) for row in table)]) for i, c in enumerate(header)
    }
    if width is None:
        kept, widths = list(header), natural
    else:
        kept, widths = fit_columns(header, natural, width, chosen=True)
    index = [header.index(c) for c in kept]

    def line(values: Sequence[str], bold: bool = False) -> str:
        parts = []
        for c, v in zip(kept, values, strict=True):
            text = pad_cell(shorten_middle(v, widths[c]), widths[c], right=c.kind == "metric")
            if color and bold:
                text = click.style(text, bold=True)
            elif color and c.key == "status":
                worst = next((s for s in ("diverged", "failed", "killed") if s in v), None)
                look = STATUS_STYLE.get(worst or v.rpartition(" ")[2], "")
                text = click.style(text, **cell_style(look)) if look else text
            parts.append(text)
        return GAP.join(parts).rstrip()

    out = [line([header[i].header for i in index], bold=True)]
    for n, row in enumerate(table):
        out.append(line([row[i] for i in index]))
        out += (after or {}).get(n, [])
    return out


def group_lines(
    rows: Sequence[Mapping[str, Any]],
    metrics: Sequence[str],
    *,
    width: int | None,
    wide: bool = False,
    color: bool = False,
    members: Mapping[str, Sequence[Any]] | None = None,
) -> list[str]:
    """``ls --group``: a line per group; ``members`` (group id -> records): each group's
    runs under it, indented, as ``ls`` lists runs."""
    header = _columns(metrics)
    table = [group_cells(r, metrics, wide=wide, short_ids=width is not None) for r in rows]
    after: dict[int, list[str]] = {}
    if members:
        for n, r in enumerate(rows):
            recs = members.get(r["id"]) or []
            if not recs:
                continue
            cols = [
                Column("run", "id"),
                Column("run", "status"),
                Column("run", "name"),
                Column("run", "seed"),
                *[Column("metric", m) for m in metrics],
            ]
            inner = None if width is None else max(20, width - 4)
            lines, _ = runs_table_lines(
                recs, cols, width=inner, color=color, chosen=True, short_ids=inner is not None
            )
            after[n] = ["    " + ln for ln in lines[1:]]
    return _lines(header, table, width=width, color=color, after=after)


def print_groups(
    rows: Sequence[Mapping[str, Any]],
    metrics: Sequence[str],
    *,
    wide: bool = False,
    color: bool | None = None,
    style: str | None = None,
    members: Mapping[str, Sequence[Any]] | None = None,
) -> None:
    """Print ``ls --group``: fitted to the terminal (``table``), or plain and whole when
    piped (``plain``; ``wide`` adds min–max either way)."""
    import shutil
    import sys

    if not rows:
        print("no runs match", file=sys.stderr)
        return
    tty = sys.stdout.isatty()
    plain = (style == "plain") if style else (not tty and not color)
    width = None if (wide or plain) else shutil.get_terminal_size().columns
    lines = group_lines(
        rows,
        metrics,
        width=width,
        wide=wide,
        color=bool(tty if color is None else color) and not plain,
        members=members,
    )
    sys.stdout.write("\n".join(lines) + "\n")


def group_row(row: Mapping[str, Any], metrics: Sequence[str]) -> dict[str, Any]:
    """A folded group as a flat row (``--format csv|tsv|md``): id, name, n, a column per
    status, per metric ``M.n``/``M.mean``/``M.std``/``M.min``/``M.max``, best."""
    out: dict[str, Any] = {
        "id": row["id"],
        "kind": row["kind"],
        "name": row.get("name"),
        "n": row["size"],
    }
    for s in _COUNTS:
        out[s] = row["statuses"].get(s, 0)
    for key, value in (row.get("params") or {}).items():
        out[f"config.{key}"] = value
    for m in metrics:
        stat = row["metrics"].get(m) or {}
        for k in ("n", "mean", "std", "min", "max"):
            out[f"{m}.{k}"] = stat.get(k)
    best = row.get("best") or {}
    out["best"] = best.get("id")
    out["best.value"] = best.get("value")
    return out


def group_row_columns(metrics: Sequence[str], params: Sequence[str] = ()) -> list[str]:
    return [
        "id",
        "kind",
        "name",
        "n",
        *_COUNTS,
        *[f"config.{k}" for k in params],
        *[f"{m}.{k}" for m in metrics for k in ("n", "mean", "std", "min", "max")],
        "best",
        "best.value",
    ]


# -- sweeps --------------------------------------------------------------------------------


def _value(v: Any) -> str:
    from labbook.render.runs import fmt_value

    return printable(fmt_value(v))


def sweep_lines(
    view: Mapping[str, Any], *, width: int | None, wide: bool = False, color: bool = False
) -> list[str]:
    """``ls --sweep``: a title line, then a line per point: the swept keys, n, status,
    each metric as mean ± std over the point's seeds, its best run."""
    import click

    metrics = list(view["metrics"])
    keys = list(view["swept"])
    points = view["points"]
    title = (
        f"sweep {view['id']} ({view['kind']}: {printable(view['source'])}) · "
        f"{len(points)} point{'s' if len(points) != 1 else ''}, {view['size']} run"
        f"{'s' if view['size'] != 1 else ''}"
    )
    if keys:
        title += " · swept: " + ", ".join(printable(k) for k in keys)
    else:
        title += " · no key varies but the seed"
    header = [Column("config", k) for k in keys] + [
        Column("run", "n"),
        Column("run", "status"),
        *[Column("metric", m) for m in metrics],
        Column("run", "best"),
    ]
    table = []
    for p in points:
        table.append(
            [
                *[_value(p["params"].get(k)) for k in keys],
                str(p["size"]),
                status_cell(p["statuses"]),
                *[mean_std(p["metrics"].get(m) or {}, wide=wide) for m in metrics],
                _best_cell(p, short=width is not None),
            ]
        )
    lines = _lines(header, table, width=width, color=color)
    if view.get("best_point") and len(points) > 1 and view.get("primary"):
        best = next(p for p in points if p["id"] == view["best_point"])
        where = ", ".join(f"{k}={_value(best['params'].get(k))}" for k in keys) or best["id"]
        lines.append(
            f"best {printable(view['primary'])}: {where} "
            f"({mean_std(best['metrics'][view['primary']])}, n {best['metrics'][view['primary']]['n']})"
        )
    head = click.style(title, bold=True) if color else title
    return [shorten_middle(head, width) if width and not color else head, *lines]


def print_sweeps(
    views: Sequence[Mapping[str, Any]],
    *,
    wide: bool = False,
    color: bool | None = None,
    style: str | None = None,
) -> None:
    import shutil
    import sys

    if not views:
        print("no sweep matches", file=sys.stderr)
        return
    tty = sys.stdout.isatty()
    plain = (style == "plain") if style else (not tty and not color)
    width = None if (wide or plain) else shutil.get_terminal_size().columns
    blocks = [
        "\n".join(
            sweep_lines(
                v, width=width, wide=wide, color=bool(tty if color is None else color) and not plain
            )
        )
        for v in views
    ]
    sys.stdout.write("\n\n".join(blocks) + "\n")


# -- two groups compared ----------------------------------------------------------------------


def _signed(x: float) -> str:
    return f"{x:+.2g}" if abs(x) < 1e-3 or abs(x) >= 1e4 else f"{x:+.3g}"


def _p(p: float | None) -> str:
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "—"
    return "< 0.001" if p < 0.001 else f"{p:.2g}"


def verdict_text(name: str, entry: Mapping[str, Any], *, a: str = "A", b: str = "B") -> str:
    """One metric of two groups in plain words: ``B is better on val_acc: +0.8 ± 0.5,
    p 0.01, n 5 vs 5``, or ``not distinguishable from seed noise with n 2 vs 2 —
    labbook replicate A --seeds 3``. ``entry``: a metric of
    :func:`labbook.analysis.groups.compare_groups` (or a diff's Welch seed noise)."""
    na, nb = _ns(entry)
    counts = f"n {na} vs {nb}"
    v = entry.get("verdict")
    hint = list(entry.get("hint") or [])
    tail = (" — " + " and ".join(f"`{h}`" for h in hint)) if hint else ""
    name = printable(name)
    if v == "constant":
        return f"{name} is constant across seeds ({counts})"
    if v == "too_few":
        return f"no verdict on {name} with {counts}: each side needs 2 values{tail}"
    diff = entry.get("difference")
    short = (
        f"{_signed(diff)} ± {entry['interval']:.2g}, p {_p(entry.get('p'))}"
        if diff is not None and entry.get("interval") is not None
        else ""
    )
    stats = f"{short}, {counts}" if short else counts
    if v == "noise":
        more = f" ({short})" if short else ""
        return f"{name}: not distinguishable from seed noise with {counts}{more}{tail}"
    if v in ("a", "b"):
        who = a if v == "a" else b
        return f"{who} is better on {name}: {stats}"
    if v in ("higher", "lower"):
        return f"{b} is {v} on {name}: {stats}"
    return f"{name}: {stats}"


def _ns(entry: Mapping[str, Any]) -> tuple[int, int]:
    if "groups" in entry:  # a diff's seed noise
        return entry["groups"]["a"]["n"], entry["groups"]["b"]["n"]
    return entry["a"]["n"], entry["b"]["n"]


def render_compare_groups(result: Mapping[str, Any], *, color: bool = False) -> str:
    """``labbook compare --group A B``: who each group is, a row per metric (both groups'
    n and mean ± std, B - A with its 95% interval, p), then the verdicts."""
    import click

    def style(text: str, **kw: Any) -> str:
        return click.style(text, **kw) if color else text

    a, b = result["a"], result["b"]
    out = []
    for label, g in (("A", a), ("B", b)):
        out.append(
            style(f"{label}  {g['id']}", bold=True)
            + f"  {printable(g.get('name') or '')}  n {g['size']} ({status_cell(g['statuses'])})"
        )
    metrics = result["metrics"]
    if not metrics:
        out.append("no metric that both groups have")
        return "\n".join(out) + "\n"
    rows = [("metric", "A n", "A mean ± std", "B n", "B mean ± std", "B − A (95%)", "p")]
    for name, e in metrics.items():
        d = e.get("difference")
        iv = e.get("interval")
        rows.append(
            (
                printable(name),
                str(e["a"]["n"]),
                mean_std(e["a"]),
                str(e["b"]["n"]),
                mean_std(e["b"]),
                (_signed(d) + (f" ± {iv:.2g}" if iv is not None else "")) if d is not None else "—",
                _p(e.get("p")),
            )
        )
    widths = [max(cells(r[i]) for r in rows) for i in range(len(rows[0]))]
    out.append("")
    for n, r in enumerate(rows):
        text = "  ".join(
            pad_cell(c, w, right=i > 0) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ).rstrip()
        out.append(style(text, dim=True) if n == 0 else text)
    out.append("")
    for name, e in metrics.items():
        line = verdict_text(name, e)
        v = e.get("verdict")
        colour = {"a": "green", "b": "green", "noise": "yellow", "too_few": "yellow"}.get(str(v))
        out.append(style(line, fg=colour) if colour else line)
    return "\n".join(out) + "\n"


__all__ = [
    "group_lines",
    "group_row",
    "group_row_columns",
    "mean_std",
    "print_groups",
    "print_sweeps",
    "render_compare_groups",
    "status_cell",
    "sweep_lines",
    "verdict_text",
]
