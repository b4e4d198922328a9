"""``labbook import``, ``labbook ls``, ``labbook show``: recording run dirs and reading runs back."""

from __future__ import annotations

from typing import Any

import click

from labbook.cli.complete import complete_run
from labbook.cli.groups import ls_group_options
from labbook.cli.options import (
    DATA_FORMATS,
    WARNINGS,
    color_option,
    echo_data,
    echo_json,
    filter_options,
    format_options,
    json_option,
    no_pager_option,
    open_store,
    output_format,
    remote_option,
    run_filter,
    show_text,
    use_color,
)
from labbook.errors import NothingReadable, StoreError


@click.command("import")
@click.argument("paths", nargs=-1, required=True, type=click.Path(readable=False))
@click.option("--no-git", is_flag=True, help="Do not capture git state.")
@click.option(
    "--full", is_flag=True, help="Read every run dir again, also those unchanged since last time."
)
@click.option(
    "--include-removed",
    is_flag=True,
    help="Also record run dirs whose runs were removed with `labbook rm` (brings them back).",
)
@json_option
@click.pass_context
def import_cmd(
    ctx: click.Context,
    paths: tuple[str, ...],
    no_git: bool,
    full: bool,
    include_removed: bool,
    as_json: bool,
) -> None:
    """Find run directories below PATHS and record them.

    Recognises TensorBoard, PyTorch Lightning, Hugging Face Trainer, Hydra, wandb,
    MLflow and plain config + metrics/log directories. Importing again updates
    runs in place; it never duplicates them, and run dirs whose files have not
    changed since they were recorded are not read again (--full reads them).
    Run dirs of runs removed with `labbook rm` are skipped (--include-removed).
    Exits 1 when a run could not be recorded.
    """
    from labbook.render.runs import progress_bar
    from labbook.sources.importer import import_paths

    with open_store(ctx) as store, progress_bar(WARNINGS, enabled=not as_json) as progress:
        report = import_paths(
            store,
            paths,
            progress=progress,
            git=not no_git,
            full=full,
            include_removed=include_removed,
        )
    if as_json:
        echo_json(
            {
                "created": report.created,
                "updated": report.updated,
                "unchanged": report.unchanged,
                "failed": report.failed,
                "unrecorded": report.unrecorded,
                "missing": report.missing,
                "removed": report.removed,
                "warnings": WARNINGS.count,
            }
        )
    else:
        parts = [f"{len(report.created)} new", f"{len(report.updated)} updated"]
        if report.unchanged:
            parts.append(f"{len(report.unchanged)} unchanged")
        if report.failed:
            parts.append(f"{len(report.failed)} unreadable")
        if report.unrecorded:
            parts.append(f"{len(report.unrecorded)} not recorded")
        if report.removed:
            parts.append(f"{len(report.removed)} skipped as removed (--include-removed)")
        if WARNINGS.count:
            parts.append(f"{WARNINGS.count} warning{'s' if WARNINGS.count != 1 else ''}")
        click.echo(
            f"imported {len(report.ids)} run{'s' if len(report.ids) != 1 else ''} ({', '.join(parts)})"
        )
    if report.unrecorded:
        n = len(report.unrecorded)
        raise StoreError(
            f"{n} run{'s' if n != 1 else ''} could not be recorded",
            hint="run the same import again: what was recorded is kept and not read twice",
        )
    if not report.ids and (report.failed or report.missing):
        raise NothingReadable("nothing could be read from the given paths")


@click.command("ls")
@filter_options
@click.option(
    "--columns",
    "-c",
    metavar="COLS",
    help="Comma-separated columns: id, name, status, framework, started, time, seed, "
    "metric names (val_loss, metrics.TAG) and config keys (optimizer.lr).",
)
@click.option(
    "--sort",
    metavar="KEY",
    help="Sort by a run field (name, status, started, duration, seed), a metric "
    "(val_loss, metrics.TAG) or a config key; ascending, runs without it last.",
)
@click.option("--reverse", "-r", is_flag=True, help="Reverse the order (with --sort: descending).")
@click.option("--wide", is_flag=True, help="No width limit: every column in full.")
@click.option("--quiet", "-q", is_flag=True, help="Only the run ids, one a line (for xargs).")
@click.option("--archived", is_flag=True, help="Only archived runs (see `labbook archive`).")
@click.option("--all-runs", "-a", is_flag=True, help="Archived runs too.")
@remote_option
@color_option
@format_options
@ls_group_options
@click.pass_context
def ls_cmd(
    ctx: click.Context,
    status: tuple[str, ...],
    framework: tuple[str, ...],
    tag: tuple[str, ...],
    where: tuple[str, ...],
    since: str | None,
    limit: int,
    columns: str | None,
    sort: str | None,
    reverse: bool,
    wide: bool,
    quiet: bool,
    archived: bool,
    all_runs: bool,
    color: str,
    fmt: str | None,
    as_json: bool,
) -> None:
    """List runs, newest first.

    On a terminal each run takes one line that fits its width: id and status
    always, the name shortened in the middle, then as many metric columns as fit
    (--wide: no limit). Metric columns are canonical names (train_loss, val_loss,
    val_acc, …) that gather each framework's spelling of them (train/loss,
    Loss/train, loss, eval_loss, train_loss_epoch, …). Archived runs are left
    out (--archived: only them, --all-runs: them too).
    """
    from labbook.errors import UsageError
    from labbook.store.query import select_runs, select_runs_window

    if quiet and (fmt or as_json):
        raise UsageError("-q prints only ids; it takes no --format or --json")
    out = output_format(fmt, as_json)
    data = out in DATA_FORMATS or out == "json"
    flt = run_filter(status, framework, tag, where, since, limit)
    flt.archived = "only" if archived else "include" if all_runs else "hide"
    if not flt.limit and not (sort or reverse or data or quiet):
        _ls_streaming(ctx, flt, columns, wide, color, style=fmt)
        return
    with open_store(ctx, create=False) as store:
        if sort or reverse:
            rows = select_runs_window(
                store,
                flt,
                limit=flt.limit or -1,
                sort=_sort_key(sort),
                descending=bool(sort) and reverse,
            )
            if reverse and not sort:
                rows.reverse()  # the newest N, oldest first
        else:
            rows = select_runs(store, flt)
        records = store.records(rows, heavy=False)
        total = len(rows)
        if flt.limit and len(rows) >= flt.limit and not data:
            from labbook.render.runs import COUNT_CAP
            from labbook.store.query import count_runs

            total = count_runs(store, flt, cap=COUNT_CAP)
    if quiet:
        import sys

        sys.stdout.write("".join(f"{r['id']}\n" for r in records))
        return
    if out == "json":
        echo_json(records)
        return
    if out in DATA_FORMATS:
        from labbook.render.formats import run_row

        echo_data(out, records, [run_row(r) for r in records])
        return
    from labbook.render.runs import COUNT_CAP, parse_columns, print_limit_note, print_runs

    chosen = parse_columns(columns, records) if columns is not None else None
    print_runs(records, columns=chosen, wide=wide, color=use_color(color), style=fmt)
    print_limit_note(len(rows), total, cap=COUNT_CAP)


#: ``ls -n 0`` reads and prints this many runs at a time.
STREAM_WINDOW = 500


def _ls_streaming(
    ctx: click.Context,
    flt: Any,
    columns: str | None,
    wide: bool,
    color: str,
    style: str | None = None,
) -> None:
    """``ls -n 0``: the runs printed a window at a time as they are read, laid out
    as the first window needs (20,000 runs start printing at once, not after all
    are read). One read transaction, so a run written meanwhile neither repeats
    nor shifts a row."""
    from labbook.errors import UsageError
    from labbook.render.runs import parse_columns, print_runs
    from labbook.store.query import select_runs_window

    with open_store(ctx, create=False) as store:
        store.conn.execute("BEGIN")  # a snapshot: the windows page through one state
        try:

            def window(offset: int) -> list[Any]:
                rows = select_runs_window(store, flt, offset=offset, limit=STREAM_WINDOW)
                return store.records(rows, heavy=False)

            def rest() -> Any:
                offset = STREAM_WINDOW
                while True:
                    records = window(offset)
                    if not records:
                        return
                    yield records
                    offset += len(records)

            first = window(0)
            windows = rest() if len(first) == STREAM_WINDOW else iter(())
            chosen = None
            if columns is not None:
                try:
                    chosen = parse_columns(columns, first)
                except UsageError:  # a column only later runs have: judge by all of them
                    first = [r for w in (first, *windows) for r in w]
                    windows = iter(())
                    chosen = parse_columns(columns, first)
            print_runs(
                first,
                columns=chosen,
                wide=wide,
                color=use_color(color),
                more=windows,
                style=style,
            )
        finally:
            store.conn.execute("COMMIT")


def _sort_key(key: str | None) -> str | None:
    """``--sort`` as the store sorts: ls's column names ``time`` (duration) and
    ``started`` are run fields there."""
    if key is None:
        return None
    key = key.strip()
    return {"time": "duration", "duration": "duration", "started": "started"}.get(key, key)


@click.command("show")
@click.argument("run", shell_complete=complete_run)
@click.option(
    "--patch",
    "-p",
    is_flag=True,
    help="Print the run's uncommitted changes (the recorded git diff) instead.",
)
@no_pager_option
@remote_option
@color_option
@format_options
@click.pass_context
def show_cmd(
    ctx: click.Context,
    run: str,
    patch: bool,
    no_pager: bool,
    color: str,
    fmt: str | None,
    as_json: bool,
) -> None:
    """Show everything recorded about RUN.

    RUN is an id or id prefix, a name, a path, @last, or @-N (the N-th newest).
    --patch prints the uncommitted changes recorded with it, as `git diff` does
    (through the pager, in colour, on a terminal).
    """
    from labbook.store.query import resolve

    out = output_format(fmt, as_json)
    with open_store(ctx, create=False) as store:
        record = store.record(resolve(store, run))
    if patch and out not in DATA_FORMATS and out != "json":
        _show_patch(record, color=color, pager=not no_pager)
        return
    if out == "json":
        echo_json(record)
        return
    if out in DATA_FORMATS:
        from labbook.render.formats import run_row

        echo_data(out, [record], [run_row(record)])
        return
    from labbook.render.runs import print_run

    print_run(record, color=use_color(color), style=fmt)


def _show_patch(record: dict[str, Any], *, color: str, pager: bool) -> None:
    """``show --patch``: the diff on stdout (paged and coloured on a terminal), or one
    line on stderr saying why there is none."""
    from labbook.render.runs import render_patch
    from labbook.textsafe import printable

    git = record.get("git")
    diff = (git or {}).get("diff") or ""
    if not diff:
        if git is None:
            why = "no git state was recorded"
        else:
            commit = (git.get("commit") or "")[:12]
            why = f"no uncommitted changes{f' (at commit {commit})' if commit else ''}"
        click.echo(f"labbook: run {printable(record['id'])}: {why}", err=True)
        return
    show_text(lambda c: render_patch(diff, color=c), mode=color, pager=pager)
    if git and git.get("diff_truncated"):
        click.echo("labbook: the recorded patch was cut at its size limit", err=True)
