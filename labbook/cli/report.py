"""``labbook report``: a thin command over :mod:`labbook.render.report`."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any

import click

from labbook.cli.complete import complete_run
from labbook.cli.options import filter_options, run_filter
from labbook.errors import LabbookError, UsageError

REPORT_FORMATS = ("md", "html")


def _format_of(fmt: str | None, output: str | None) -> str:
    """``--format``, else what ``-o``'s suffix says (``.html``/``.htm``), else md."""
    if fmt is not None:
        return fmt
    if output and Path(output).suffix.lower() in (".html", ".htm"):
        return "html"
    return "md"


def _write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` whole or not at all (a temporary file, then renamed)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise LabbookError(f"cannot write {path}: {exc.strerror or exc}") from exc


@click.command("report")
@click.argument("runs", nargs=-1, shell_complete=complete_run)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(REPORT_FORMATS),
    default=None,
    help="md (GitHub-flavoured Markdown for a pull-request comment, at most 65,536 "
    "characters) or html (one self-contained page: inline SVG charts, no script, nothing "
    "fetched). Default: html when -o names a .html file, else md.",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, writable=True),
    help="Write the report to this file (default: stdout).",
)
@click.option(
    "--metric",
    "-m",
    "metrics",
    multiple=True,
    help="A metric for the runs table and the charts (repeatable; default: the key "
    "metrics in the table, every metric the runs share as a chart).",
)
@filter_options
@click.pass_context
def report_cmd(
    ctx: click.Context,
    runs: tuple[str, ...],
    status: tuple[str, ...],
    framework: tuple[str, ...],
    tag: tuple[str, ...],
    where: tuple[str, ...],
    since: str | None,
    limit: int,
    fmt: str | None,
    output: str | None,
    metrics: tuple[str, ...],
) -> None:
    """Write a report of RUNS: Markdown for a pull request, or HTML.

    It has a table of the runs (status, seed, key metrics, duration, commit,
    host), the config keys that differ, a chart of each metric the runs share,
    their notes, lessons and failures, and their code (commit, patch) and
    environment. RUNS are named one by one, or chosen with the filters of
    `labbook ls` (--where, --tag, …; newest first, at most --limit), or both.
    """
    from labbook.render.report import build_report, render_html, render_markdown
    from labbook.store import Store
    from labbook.store.query import resolve

    out_format = _format_of(fmt, output)
    filtered = bool(status or framework or tag or where or since)
    if not runs and not filtered:
        raise UsageError(
            "report needs runs",
            hint="labbook report RUN [RUN…], or choose them: labbook report --where KEY=VALUE",
        )
    with Store.open(ctx.obj["db"], create=False) as store:
        ids = [resolve(store, r) for r in runs]
        if filtered:
            from labbook.store.query import select_runs

            rows = select_runs(store, run_filter(status, framework, tag, where, since, limit))
            ids += [r for r in (row["id"] for row in rows) if r not in ids]
        ids = list(dict.fromkeys(ids))
        if not ids:
            raise UsageError(
                "no run matches", hint="labbook ls with the same filters lists the runs"
            )
        report = build_report(store, ids, list(metrics) or None)
    text = render_html(report) if out_format == "html" else render_markdown(report)
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    path = Path(output)
    _write(path, text)
    click.echo(
        f"labbook: wrote {_shown(path)} ({len(ids)} run{'s' if len(ids) != 1 else ''}, "
        f"{_size(len(text.encode('utf-8')))})",
        err=True,
    )


def _shown(path: Path) -> Any:
    from labbook.textsafe import printable

    return printable(str(path))


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.0f} KiB"
    return f"{n / 1024 / 1024:.1f} MiB"
