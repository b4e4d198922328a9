"""Terminal rendering of runs for the CLI (rich). Only formatting: no queries here.

Every name, path, tag, note and value passes through :func:`labbook.textsafe.printable`
(control characters, escapes and bidi overrides shown escaped), and rich gets
:class:`rich.text.Text` for them, never markup, so ``[red]`` in a name is just text.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from labbook.analysis.metrics import key_metrics
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


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


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


def seed_text(rec: RunRecord) -> str:
    seed = rec.get("seed") or {}
    return "not set" if seed.get("value") is None else str(seed["value"])


def _run_rows(records: Sequence[RunRecord], metrics: list[str]) -> Iterator[list[str]]:
    for r in records:
        yield [
            r["id"],
            r.get("name") or "",
            r["status"],
            r.get("framework") or "",
            fmt_time(r.get("started_at")),
            duration(r),
            seed_text(r),
            *[fmt_value(s["last"] if (s := r["metrics"].get(m)) else None) for m in metrics],
        ]


def print_plain_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Aligned columns without colour or wrapping, for pipes, grep and awk (no rich import)."""
    import sys

    lines = [[printable(c) for c in row] for row in (header, *rows)]
    widths = [max(len(c) for c in col) for col in zip(*lines, strict=False)]
    out = sys.stdout
    for cells in lines:
        out.write(
            "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=False)).rstrip() + "\n"
        )


def print_runs(records: Sequence[RunRecord]) -> None:
    import sys

    if not records:
        print("no runs match", file=sys.stderr)
        return
    metrics = key_metrics(records)
    header = ["id", "name", "status", "framework", "started", "time", "seed", *metrics]
    if not sys.stdout.isatty():
        print_plain_table(header, list(_run_rows(records, metrics)))
        return
    from rich.table import Table
    from rich.text import Text

    console = _console()
    table = Table(box=None, header_style="bold", pad_edge=False)
    for col in header:
        table.add_column(
            Text(printable(col)), no_wrap=col in ("id", "status", "started"), overflow="fold"
        )
    for row in _run_rows(records, metrics):
        styles = [""] * len(row)
        styles[2] = STATUS_STYLE.get(row[2], "")
        styles[6] = "yellow" if row[6] == "not set" else ""
        table.add_row(*[Text(printable(c), style=st) for c, st in zip(row, styles, strict=True)])
    console.print(table)


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
    if seed.get("value") is None:
        rows.append(("seed", "not set", "yellow"))
    else:
        rows.append(("seed", f"{seed['value']}  ({seed.get('source')})", ""))
    if rec.get("command"):
        import shlex

        rows.append(("command", shlex.join(rec["command"] or []), ""))
    if rec.get("pid"):
        rows.append(("pid", str(rec["pid"]), ""))
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
    return f"uncommitted changes ({git['diff'].count(chr(10))} diff lines; `labbook show --json` has them)"


def print_run(rec: RunRecord) -> None:
    """``labbook show``: sections on a terminal (rich), plain aligned text when piped."""
    import sys

    if not sys.stdout.isatty():
        _print_run_plain(rec, sys.stdout)
        return
    from rich.table import Table
    from rich.text import Text

    def text(value: Any, style: str = "") -> Text:
        return Text(printable(value), style=style)

    console = _console()
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
                    text(f"{fmt_time(n['at'])} {n.get('author') or ''}", "dim"),
                    " ",
                    text(f"[{n['kind']}] "),
                    Text(note_text(n["text"])),
                )
            )


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
            head = printable(f"{fmt_time(n['at'])} {n.get('author') or ''} [{n['kind']}]")
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
