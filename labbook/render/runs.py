"""Terminal rendering of runs for the CLI (rich). Only formatting: no queries here.

Every name, path, tag, note and value passes through :func:`labbook.textsafe.printable`
(control characters, escapes and bidi overrides shown escaped), and rich gets
:class:`rich.text.Text` for them, never markup, so ``[red]`` in a name is just text.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from labbook.analysis.metrics import (
    canonical_metrics,
    key_columns,
    key_metrics,  # noqa: F401  (the TUI imports it from here)
    metric_column,
)
from labbook.capture.slurm import from_record as slurm_from_record
from labbook.errors import UsageError
from labbook.model import RunRecord
from labbook.textsafe import printable, printable_lines

STATUS_STYLE = {
    "running": "bold cyan",
    "finished": "green",
    "failed": "bold red",
    "diverged": "bold magenta",
    "killed": "yellow",
    "unknown": "dim",
}

#: Metric tags shown first in listings, in order of preference.


def _console(stderr: bool = False, color: bool | None = None) -> Any:
    """A rich console; ``color`` False: no escape codes at all, True: colour even
    when not a terminal, None: rich decides (a terminal, NO_COLOR)."""
    from rich.console import Console

    if color is None:
        return Console(stderr=stderr, highlight=False)
    if color:
        return Console(stderr=stderr, highlight=False, force_terminal=True)
    return Console(stderr=stderr, highlight=False, color_system=None)


def fmt_time(iso: str | None) -> str:
    if not iso:
        return "—"
    try:
        dt = datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone()
    except ValueError:
        return iso
    return dt.strftime("%Y-%m-%d %H:%M")


def duration(rec: RunRecord) -> str:
    start, end = rec.get("started_at"), rec.get("ended_at")
    if not start or not end:
        return "—"
    try:
        secs = (
            datetime.fromisoformat(end.replace("Z", "+00:00"))
            - datetime.fromisoformat(start.replace("Z", "+00:00"))
        ).total_seconds()
    except ValueError:
        return "—"
    return fmt_seconds(secs)


def fmt_seconds(seconds: float | None) -> str:
    """A duration as ``labbook`` shows it everywhere: ``42s``, ``3m07s``, ``2h05m``
    (whole seconds, rounded down; None: ``—``)."""
    if seconds is None:
        return "—"
    secs = max(0, int(seconds))
    if secs < 60:
        return f"{secs}s"
    if secs < 3600:
        return f"{secs // 60}m{secs % 60:02d}s"
    return f"{secs // 3600}h{(secs % 3600) // 60:02d}m"


def fmt_value(value: Any) -> str:
    """A config or metric value in a table cell: short floats, JSON for containers."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.4g}"
    if value is None:
        return "—"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


#: What ``seed_text`` says of a run without a seed value: none was found in the places
#: that were read, or a place that could hold it could not be read.
SEED_NOT_SET, SEED_UNKNOWN = "not set", "unknown"


def seed_text(rec: RunRecord) -> str:
    seed = rec.get("seed") or {}
    if seed.get("value") is None:
        return SEED_NOT_SET if seed.get("known", True) else SEED_UNKNOWN
    return str(seed["value"])


def print_plain_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Aligned columns without colour or wrapping, for pipes, grep and awk (no rich import)."""
    lines = [[printable(c) for c in row] for row in (header, *rows)]
    widths = [max(len(c) for c in col) for col in zip(*lines, strict=False)]
    _write_plain(lines, widths)


def _write_plain(lines: Sequence[Sequence[str]], widths: Sequence[int]) -> None:
    import sys

    out = sys.stdout
    for cells in lines:
        out.write(
            "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=False)).rstrip() + "\n"
        )
    out.flush()


#: The run columns of ``ls`` besides metrics, in the order they are shown.
RUN_COLUMNS = ("id", "name", "status", "framework", "started", "time", "seed")
#: Run fields that ``--columns`` also takes (not shown by default): where and by whom
#: a run ran, which tell the lab notebook's nodes apart (``ls --remote``).
EXTRA_RUN_COLUMNS = ("host", "user")
#: Metric columns ``ls`` shows when piped, and at most on a terminal (or ``--wide``).
PIPED_METRICS, MAX_METRICS = 3, 6
#: Below this many cells a name is not shortened further to make room for other columns.
_NAME_MIN = 28
GAP = "  "


@dataclass(frozen=True)
class Column:
    """One ``ls`` column: a run field, a metric (canonical name or tag) or a config key."""

    kind: str  # "run", "metric" or "config"
    key: str

    @property
    def header(self) -> str:
        return self.key


def default_columns(records: Sequence[RunRecord], metrics: int = PIPED_METRICS) -> list[Column]:
    """The run columns and the ``metrics`` key metric columns (by canonical name)."""
    return [Column("run", c) for c in RUN_COLUMNS] + [
        Column("metric", m) for m in key_columns(records, limit=metrics)
    ]


def parse_columns(text: str, records: Sequence[RunRecord]) -> list[Column]:
    """``--columns id,name,val_loss,optimizer.lr``: run fields (``time`` is the
    duration), ``metrics.TAG`` or a metric name any run has, ``config.KEY`` or a
    config key. Raises UsageError for a name no run has, with the nearest ones."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise UsageError("--columns needs at least one column, e.g. --columns id,name,val_loss")
    metric_names: set[str] = set()
    config_keys: set[str] = set()
    for r in records:
        metric_names.update(r.get("metrics") or {})
        metric_names.update(canonical_metrics(r.get("metrics") or {}))
        config_keys.update(r.get("config") or {})
    out = []
    for name in names:
        if name in RUN_COLUMNS or name in EXTRA_RUN_COLUMNS:
            out.append(Column("run", name))
        elif name.startswith(("metrics.", "metric.")):
            out.append(Column("metric", name.split(".", 1)[1]))
        elif name.startswith("config.") and name[7:] in config_keys:
            out.append(Column("config", name[7:]))
        elif name in config_keys:
            out.append(Column("config", name))
        elif name in metric_names or not records:
            out.append(Column("metric", name))
        else:
            import difflib

            close = difflib.get_close_matches(
                name,
                [*RUN_COLUMNS, *EXTRA_RUN_COLUMNS, *sorted(metric_names), *sorted(config_keys)],
                n=3,
            )
            quoted = [f"'{c}'" for c in close]
            alternatives = ", ".join(quoted[:-1]) + " or " + quoted[-1] if len(quoted) > 1 else ""
            hint = f"; did you mean {alternatives or quoted[0]}?" if close else ""
            raise UsageError(f"--columns: no run has '{name}'{hint}")
    return out


def fmt_number(value: Any, digits: int = 4) -> str:
    """A number in a narrow cell: ``digits`` significant digits, never more than
    ``digits + 6`` characters (``-1.235e+07``); other values as :func:`fmt_value`."""
    if isinstance(value, float) or (
        isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**digits * 100
    ):
        return f"{value:.{digits}g}"
    return fmt_value(value)


#: Hex digits of a run id in the terminal's ``ls`` table (ids have 12; see store.codec).
SHORT_ID = 8


def _cell(rec: RunRecord, col: Column, *, narrow: bool = False) -> str:
    fmt = fmt_number if narrow else fmt_value
    if col.kind == "metric":
        found = metric_column(rec.get("metrics") or {}, col.key)
        return fmt(found[1].get("last") if found else None)
    if col.kind == "config":
        config = rec.get("config") or {}
        return fmt(config[col.key]) if col.key in config else "—"
    if col.key == "id":
        # the terminal's table shows the first 8 hex of a 12-hex id (a prefix resolves
        # like the whole id, or is reported ambiguous); piped output keeps the whole id
        return rec["id"][:SHORT_ID] if narrow else rec["id"]
    if col.key == "name":
        return rec.get("name") or ""
    if col.key == "status":
        return rec["status"]
    if col.key in ("framework", "host", "user"):
        return str(rec.get(col.key) or "")
    if col.key == "started":
        return fmt_time(rec.get("started_at"))
    if col.key == "time":
        return duration(rec)
    return seed_text(rec)


def _run_rows(records: Sequence[RunRecord], columns: Sequence[Column]) -> Iterator[list[str]]:
    for r in records:
        yield [_cell(r, c) for c in columns]


def cells(text: str) -> int:
    """How many terminal cells ``text`` takes (wide East Asian characters two,
    combining marks none)."""
    if text.isascii():
        return len(text)
    import unicodedata

    return sum(
        0 if unicodedata.combining(ch) else 2 if unicodedata.east_asian_width(ch) in "WF" else 1
        for ch in text
    )


def _take(text: str, width: int, *, from_end: bool = False) -> str:
    """The first (or last) characters of ``text`` that fit in ``width`` cells."""
    chars = reversed(text) if from_end else iter(text)
    out: list[str] = []
    used = 0
    for ch in chars:
        w = cells(ch)
        if used + w > width:
            break
        out.append(ch)
        used += w
    return "".join(reversed(out) if from_end else out)


def shorten_middle(text: str, width: int) -> str:
    """``text`` in at most ``width`` cells, cut in the middle (``exp/resn…lr0.1-seed3``):
    the end of a run's name is what tells it from its siblings, so it keeps two thirds."""
    if cells(text) <= width:
        return text
    if width <= 1:
        return "…"[:width]
    head = (width - 1) // 3
    tail = _take(text, width - 1 - head, from_end=True)
    head_text = _take(text, width - 1 - cells(tail))
    return f"{head_text}…{tail}"


def pad_cell(text: str, width: int, *, right: bool = False) -> str:
    space = " " * max(0, width - cells(text))
    return space + text if right else text + space


def _natural(col: Column, values: Sequence[str]) -> int:
    widest = max((cells(v) for v in values), default=0)
    if col.kind == "run":
        return max(widest, cells(col.header))
    return max(widest, min(cells(col.header), 10), 1)


def fit_columns(
    columns: Sequence[Column], natural: dict[Column, int], width: int, *, chosen: bool
) -> tuple[list[Column], dict[Column, int]]:
    """The columns that fit in ``width`` cells and their widths.

    Chosen columns (``--columns``) are kept from the first while they fit (a name
    shrinks first). Otherwise id and status always, the name (at least
    :data:`_NAME_MIN` cells when it is that long), then the first three metric
    columns, started, time, seed, framework, the other metric columns, each while
    it fits; room left widens the name up to its full length.
    """
    gap = len(GAP)
    name = next((c for c in columns if c.kind == "run" and c.key == "name"), None)

    def need(cols: Sequence[Column], name_width: int) -> int:
        total = sum(name_width if c == name else natural[c] for c in cols)
        return total + gap * max(0, len(cols) - 1)

    if chosen:
        floor = min(natural[name], 8) if name else 0
        kept: list[Column] = []
        for c in columns:
            if need([*kept, c], floor) <= width or not kept:
                kept.append(c)
    else:
        floor = min(natural[name], _NAME_MIN) if name else 0
        metrics = [c for c in columns if c.kind == "metric"]
        runs = {c.key: c for c in columns if c.kind == "run"}
        first = [runs[k] for k in ("id", "status", "name") if k in runs]
        rest = [
            *metrics[:3],
            *[runs[k] for k in ("started", "time", "seed", "framework") if k in runs],
            *metrics[3:],
            *[c for c in columns if c.kind == "config"],
        ]
        picked = set(first)
        for c in rest:
            if need([*picked, c], floor) <= width:
                picked.add(c)
        kept = [c for c in columns if c in picked]
    widths = {c: natural[c] for c in kept}
    if name in widths:
        others = need([c for c in kept if c != name], 0) + (gap if len(kept) > 1 else 0)
        widths[name] = max(1, min(natural[name], width - others))
    return kept, widths


def cell_style(style: str) -> dict[str, Any]:
    """A rich style string (``bold cyan``) as click.style arguments."""
    kw: dict[str, Any] = {}
    for word in style.split():
        if word in ("bold", "dim"):
            kw[word] = True
        else:
            kw["fg"] = word
    return kw


Layout = tuple[list[Column], dict[Column, int]]


def _table(
    records: Sequence[RunRecord], columns: Sequence[Column], *, short_ids: bool = True
) -> list[list[str]]:
    def cell(r: RunRecord, c: Column) -> str:
        if c.key == "id" and c.kind == "run" and not short_ids:
            return str(r["id"])
        return _cell(r, c, narrow=True)

    return [[printable(cell(r, c)) for c in columns] for r in records]


def table_layout(
    records: Sequence[RunRecord],
    columns: Sequence[Column],
    *,
    width: int | None,
    chosen: bool = False,
    table: list[list[str]] | None = None,
) -> Layout:
    """The columns of :func:`runs_table_lines` that fit ``width`` and their widths,
    as the values of ``records`` need them."""
    table = _table(records, columns) if table is None else table
    natural = {c: _natural(c, [row[i] for row in table]) for i, c in enumerate(columns)}
    if width is None:
        return list(columns), natural
    return fit_columns(columns, natural, width, chosen=chosen)


def runs_table_lines(
    records: Sequence[RunRecord],
    columns: Sequence[Column],
    *,
    width: int | None,
    color: bool,
    chosen: bool = False,
    layout: Layout | None = None,
    header: bool = True,
    short_ids: bool = True,
) -> tuple[list[str], list[Column]]:
    """``ls`` on a terminal: one line per run, at most ``width`` cells (None: no
    limit); names shortened in the middle, numbers to 4 significant digits, other
    cells never cut. Returns the lines and the columns that did not fit.
    ``layout``: these columns and widths (a later window of a streamed listing, laid
    out as the first), not the ones ``records`` need; ``header`` False: rows only;
    ``short_ids`` False: whole run ids (output without a width limit)."""
    import click

    table = _table(records, columns, short_ids=short_ids)
    if layout is None:
        layout = table_layout(records, columns, width=width, chosen=chosen, table=table)
    kept, widths = layout
    index = [columns.index(c) for c in kept]

    def line(values: Sequence[str], styles: Sequence[str]) -> str:
        parts = []
        for c, value, style in zip(kept, values, styles, strict=True):
            w = widths[c]
            text = shorten_middle(value, w)
            text = pad_cell(text, w, right=c.kind != "run")
            parts.append(click.style(text, **cell_style(style)) if color and style else text)
        return GAP.join(parts).rstrip()

    titles = [shorten_middle(printable(c.header), widths[c]) for c in kept]
    lines = [line(titles, ["bold"] * len(kept))] if header else []
    for row in table:
        values = [row[i] for i in index]
        styles = []
        for c, v in zip(kept, values, strict=True):
            if c.kind == "run" and c.key == "status":
                styles.append(STATUS_STYLE.get(v, ""))
            elif c.kind == "run" and c.key == "seed" and v in ("not set", "unknown"):
                styles.append("yellow")
            else:
                styles.append("")
        lines.append(line(values, styles))
    return lines, [c for c in columns if c not in widths]


def print_runs(
    records: Sequence[RunRecord],
    *,
    columns: Sequence[Column] | None = None,
    wide: bool = False,
    color: bool | None = None,
    width: int | None = None,
    more: Iterable[Sequence[RunRecord]] = (),
    style: str | None = None,
) -> None:
    """``labbook ls``. Piped: plain aligned columns, no width limit (for grep, awk).
    On a terminal (or ``color``): one line per run that fits ``width`` (default: the
    terminal's; ``wide``: no limit). ``style`` ``"plain"`` or ``"table"`` chooses
    one of them whatever stdout is (``--format``).

    ``more``: further windows of records (``ls -n 0`` streams), each printed as it
    comes, in the columns and widths that ``records`` (the first window) chose; a
    wider cell further down makes its line longer, as ``--wide`` would."""
    import shutil
    import sys

    if not records:
        print("no runs match", file=sys.stderr)
        return
    tty = sys.stdout.isatty()
    plain_text = (style == "plain") if style else (not tty and not color)
    chosen = columns is not None
    if columns is None:
        many = wide or style == "table" or (tty and style != "plain")
        columns = default_columns(records, MAX_METRICS if many else PIPED_METRICS)
    if plain_text:
        header = [c.header for c in columns]
        first = [[printable(c) for c in row] for row in (header, *_run_rows(records, columns))]
        plain = [max(len(c) for c in col) for col in zip(*first, strict=False)]
        _write_plain(first, plain)
        for window in more:
            _write_plain([[printable(c) for c in row] for row in _run_rows(window, columns)], plain)
        return
    if width is None and tty and not wide:
        width = shutil.get_terminal_size().columns
    table_width = None if wide else width
    layout = table_layout(records, columns, width=table_width, chosen=chosen)
    lines, dropped = runs_table_lines(
        records,
        columns,
        width=table_width,
        color=tty if color is None else color,
        chosen=chosen,
        layout=layout,
    )
    sys.stdout.write("\n".join(lines) + "\n")
    for window in more:
        sys.stdout.flush()
        lines, _ = runs_table_lines(
            window,
            columns,
            width=table_width,
            color=tty if color is None else color,
            layout=layout,
            header=False,
        )
        sys.stdout.write("\n".join(lines) + "\n")
    if dropped and chosen:
        names = ", ".join(printable(c.header) for c in dropped)
        print(
            f"labbook: {len(dropped)} column{'s' if len(dropped) != 1 else ''} did not fit in "
            f"{width} columns ({names}); --wide shows them",
            file=sys.stderr,
        )


#: ``ls`` counts the runs its limit left out only this far ("50 of 10,000+ runs").
COUNT_CAP = 10_000


def limit_note(shown: int, total: int, *, cap: int | None = None) -> str | None:
    """``showing 50 of 1,234 runs (-n 0 for all)`` when a limit cut the list (None
    when nothing was cut); ``total`` above ``cap``: ``10,000+``."""
    if total <= shown:
        return None
    of = f"{cap:,}+" if cap is not None and total > cap else f"{total:,}"
    return f"showing {shown:,} of {of} runs (-n 0 for all)"


def print_limit_note(shown: int, total: int, *, cap: int | None = None) -> None:
    """:func:`limit_note` on stderr, when stderr is a terminal (a person reads it)."""
    import sys

    note = limit_note(shown, total, cap=cap)
    if note is not None and sys.stderr.isatty():
        print(note, file=sys.stderr)


def status_text(rec: RunRecord) -> str:
    """A run's status and why it has it: ``finished (reached epochs=5)``."""
    reason = rec.get("status_reason")
    return f"{rec['status']} ({reason})" if reason else rec["status"]


def _info_rows(rec: RunRecord) -> list[tuple[str, str, str]]:
    """(field, value, rich style of a dim suffix) rows of ``show``'s header block."""
    rows: list[tuple[str, str, str]] = [
        ("status", status_text(rec), ""),
        ("path", rec.get("path") or "—", ""),
        ("framework", rec.get("framework") or "—", ""),
        ("host", f"{rec.get('user') or '?'}@{rec.get('host') or '?'}", ""),
        ("started", fmt_time(rec.get("started_at")), ""),
        ("ended", fmt_time(rec.get("ended_at")) + f"  ({duration(rec)})", ""),
    ]
    seed = rec.get("seed") or {}
    if seed.get("value") is None and not seed.get("known", True):
        rows.append(("seed", "unknown (a file that could hold it could not be read)", "yellow"))
    elif seed.get("value") is None:
        rows.append(("seed", SEED_NOT_SET, "yellow"))
    else:
        rows.append(("seed", f"{seed['value']}  ({seed.get('source')})", ""))
    if rec.get("command"):
        import shlex

        rows.append(("command", shlex.join(rec["command"] or []), ""))
    if rec.get("pid"):
        rows.append(("pid", str(rec["pid"]), ""))
    job = slurm_from_record(rec.get("slurm"))
    if job is not None:
        rows.append(("slurm", job.describe(), ""))
    if rec.get("tags"):
        rows.append(("tags", ", ".join(rec["tags"]), ""))
    git = rec.get("git")
    if git:
        dirty = " (dirty)" if git.get("dirty") else ""
        where = git.get("branch") or "detached"
        rows.append(("git", f"{(git.get('commit') or 'no commit')[:12]} on {where}{dirty}", ""))
        if git.get("remote"):
            rows.append(("remote", git["remote"], ""))
        untracked = git.get("untracked") or []
        if untracked:
            more = " …" if len(untracked) > 10 else ""
            rows.append(("untracked", ", ".join(untracked[:10]) + more, ""))
    env = rec.get("env")
    if env:
        pkgs = env.get("packages") or {}
        bits = [f"python {env.get('python') or '?'}"]
        bits += [
            f"{n} {pkgs[n]}"
            for n in ("torch", "lightning", "transformers", "jax", "tensorflow")
            if n in pkgs
        ]
        if env.get("gpus"):
            bits.append(", ".join(env["gpus"]))
        note = (
            "  (the importing interpreter's, not the run's)"
            if env.get("source") == "importer"
            else ""
        )
        rows.append(("env", "  ".join(bits) + note, ""))
    gpu = rec.get("gpu")
    if gpu:
        rows.append(
            (
                "gpu",
                f"peak {fmt_value(gpu.get('peak_memory_mib'))} MiB, "
                f"mean util {fmt_value(gpu.get('mean_util_pct'))} %",
                "",
            )
        )
    return rows


def _metric_rows(rec: RunRecord) -> list[list[str]]:
    rows = []
    for tag, m in rec.get("metrics", {}).items():
        nf = m.get("nonfinite_step")
        rows.append(
            [
                tag,
                fmt_value(m.get("last")),
                fmt_value(m.get("min")),
                fmt_value(m.get("max")),
                "final" if m.get("step") == -1 else fmt_value(m.get("step")),
                str(m.get("count")),
                "" if nf is None else str(nf),
            ]
        )
    return rows


_METRIC_HEADER = ["tag", "last", "min", "max", "step", "count", "non-finite at"]


def _headline(rec: RunRecord) -> tuple[str, str | None]:
    failure = rec.get("failure")
    reason = None
    if failure:
        step = f" at step {failure['step']}" if failure.get("step") is not None else ""
        reason = f"{failure['kind']}{step}: {failure['message']}"
    return f"{rec.get('name') or rec['id']}  {rec['id']}  {rec['status']}", reason


def _diff_hint(rec: RunRecord) -> str | None:
    git = rec.get("git") or {}
    if not git.get("diff"):
        return None
    return f"uncommitted changes ({git['diff'].count(chr(10))} diff lines; `labbook show --patch` shows them)"


def render_patch(diff: str, *, color: bool) -> str:
    """``show --patch``: the run's uncommitted patch as ``git diff`` shows it (file
    headers bold, hunks cyan, added lines green, removed red), control characters
    escaped; plain without ``color``."""
    import click

    styles: list[tuple[tuple[str, ...], dict[str, Any]]] = [
        (("diff --git", "index ", "+++", "---", "new file", "deleted file"), {"bold": True}),
        (("@@",), {"fg": "cyan"}),
        (("+",), {"fg": "green"}),
        (("-",), {"fg": "red"}),
    ]
    out = []
    for line in diff.splitlines():
        text = printable(line, tabs=True)
        if color:
            for prefixes, kw in styles:
                if line.startswith(prefixes):
                    text = click.style(text, **kw)
                    break
        out.append(text)
    return "\n".join(out)


def print_run(rec: RunRecord, *, color: bool | None = None, style: str | None = None) -> None:
    """``labbook show``: sections on a terminal (rich), plain aligned text when piped
    (``color`` True: the sections, coloured, also when piped; False: no colour);
    ``style`` ``"plain"`` or ``"table"`` chooses one whatever stdout is."""
    import sys

    if (style == "plain") if style else (not sys.stdout.isatty() and not color):
        _print_run_plain(rec, sys.stdout)
        return
    from rich.table import Table
    from rich.text import Text

    def text(value: Any, style: str = "") -> Text:
        return Text(printable(value), style=style)

    console = _console(color=color)
    status = rec["status"]
    console.print(
        Text.assemble(
            text(rec.get("name") or rec["id"], "bold"),
            "  ",
            text(rec["id"], "dim"),
            "  ",
            text(status, STATUS_STYLE.get(status, "")),
        )
    )
    reason = _headline(rec)[1]
    if reason:
        console.print(text(f"  {reason}", "red"))
    info = Table.grid(padding=(0, 2))
    info.add_column(style="bold")
    info.add_column(overflow="fold")
    for field, value, style in _info_rows(rec):
        info.add_row(field, text(value, style))
    console.print(info)
    if rec.get("config"):
        console.print("\n[bold]config[/]")
        cfg = Table.grid(padding=(0, 2))
        cfg.add_column(style="cyan")
        cfg.add_column(overflow="fold")
        for k, v in rec["config"].items():
            cfg.add_row(text(k), text(fmt_value(v)))
        console.print(cfg)
    if rec.get("metrics"):
        console.print("\n[bold]metrics[/]")
        mt = Table(box=None, header_style="dim", pad_edge=False)
        for col in _METRIC_HEADER:
            mt.add_column(col, justify="left" if col == "tag" else "right")
        for row in _metric_rows(rec):
            mt.add_row(*[text(c) for c in row[:-1]], text(row[-1], "red"))
        console.print(mt)
    hint = _diff_hint(rec)
    if hint:
        console.print(f"\n[bold]{hint.split(' (')[0]}[/] [dim]({hint.split(' (', 1)[1]}[/]")
    if rec.get("notes"):
        console.print("\n[bold]notes[/]")
        for n in rec["notes"]:
            console.print(
                Text.assemble(
                    "  ",
                    text(_note_id(n), "bold"),
                    text(f"{fmt_time(n['at'])} {n.get('author') or ''}", "dim"),
                    " ",
                    text(f"[{n['kind']}] "),
                    Text(note_text(n["text"])),
                )
            )


def _note_id(note: Any) -> str:
    """``#12 `` before a note in ``show``: the id ``labbook note --delete`` takes."""
    return f"#{note['id']} " if note.get("id") is not None else ""


def note_text(text: str) -> str:
    """A note's text: a multi-line note keeps its lines (indented under the first), escaped."""
    return printable_lines(str(text).strip()).replace("\n", "\n    ")


def _print_run_plain(rec: RunRecord, out: Any) -> None:
    """The same sections as text: no colour, no wrapping, no rich import."""
    title, reason = _headline(rec)
    out.write(printable(title) + "\n")
    if reason:
        out.write(f"  {printable(reason)}\n")
    rows = _info_rows(rec)
    width = max(len(f) for f, _, _ in rows)
    for field, value, _ in rows:
        out.write(f"{field.ljust(width)}  {printable(value)}\n")
    if rec.get("config"):
        out.write("\nconfig\n")
        keys = {k: printable(k) for k in rec["config"]}
        kw = max(len(k) for k in keys.values())
        for k, v in rec["config"].items():
            out.write(f"{keys[k].ljust(kw)}  {printable(fmt_value(v))}\n")
    if rec.get("metrics"):
        out.write("\nmetrics\n")
        out.flush()
        print_plain_table(_METRIC_HEADER, _metric_rows(rec))
    hint = _diff_hint(rec)
    if hint:
        out.write(f"\n{hint}\n")
    if rec.get("notes"):
        out.write("\nnotes\n")
        for n in rec["notes"]:
            head = printable(
                f"{_note_id(n)}{fmt_time(n['at'])} {n.get('author') or ''} [{n['kind']}]"
            )
            out.write(f"  {head} {note_text(n['text'])}\n")


@contextmanager
def progress_bar(warnings: Any, *, enabled: bool = True) -> Iterator[Any]:
    """A progress callback for long work, drawn on stderr when it is a terminal."""
    import sys

    if not enabled or not sys.stderr.isatty():
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = _console(stderr=True)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as prog:
        task = prog.add_task("finding runs", total=None)
        warnings.console = console

        def update(stage: str, done: int, total: int) -> None:
            if stage == "read":
                prog.update(task, description="reading runs", completed=done, total=total)

        try:
            yield update
        finally:
            warnings.console = None
