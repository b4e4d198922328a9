"""``labbook export``: metric curves in long form, or the run table, as csv, jsonl or parquet."""

from __future__ import annotations

import click

from labbook.cli.complete import complete_run
from labbook.cli.options import filter_options, open_store, run_filter
from labbook.errors import UsageError


@click.command("export")
@click.argument("runs", nargs=-1, shell_complete=complete_run)
@click.option(
    "--curves",
    is_flag=True,
    help="Export metric curves, one row per point: run, tag, step, value, wall_time "
    "(without it: the run table, as `ls --format csv` has it).",
)
@click.option(
    "--metric",
    "-m",
    "metrics",
    multiple=True,
    metavar="NAME",
    help="With --curves: only this curve, a tag as recorded (val/loss) or a metric name "
    "(val_loss gathers val/loss, eval_loss, …) (repeatable; default: every curve).",
)
@click.option(
    "--full",
    is_flag=True,
    help="With --curves: every point, read again from each run's files (default: the "
    "stored curves, at most 1,000 points a tag; a run whose files are gone gives those, "
    "with a warning).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(("csv", "jsonl", "parquet")),
    default="csv",
    show_default=True,
    help="csv (non-finite values as nan, inf, -inf), jsonl (one object a line; a "
    'non-finite value is null with "kind": "nan"|"inf"|"-inf"), parquet (needs pyarrow and -o).',
)
@click.option(
    "--output",
    "-o",
    metavar="FILE",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Write to FILE, complete or not at all (default: stdout; parquet needs a file).",
)
@filter_options(limit=0)
@click.pass_context
def export_cmd(
    ctx: click.Context,
    runs: tuple[str, ...],
    curves: bool,
    metrics: tuple[str, ...],
    full: bool,
    fmt: str,
    output: str | None,
    status: tuple[str, ...],
    framework: tuple[str, ...],
    tag: tuple[str, ...],
    where: tuple[str, ...],
    since: str | None,
    limit: int,
) -> None:
    """Export metric curves or the run table as csv, jsonl or parquet.

    RUNS are named one by one (id, id prefix, name, path, @last, @-N), or chosen
    with the filters of `labbook ls` (--where, --tag, --status, …), or both (the
    named ones first); with neither, every run, newest first. --tag is a run's tag,
    as in ls; --metric chooses curves.

    \b
    labbook export --curves -w 'optimizer.lr>=0.01' > curves.csv
    labbook export --curves -m val_loss --full --format parquet -o val.parquet @last
    labbook export --format jsonl -o runs.jsonl     # the run table, one run a line

    Curves are written as they are read, one run at a time.
    """
    from labbook.render.export import iter_curves, write_curves, write_table
    from labbook.store.query import resolve, select_runs

    if not curves and (metrics or full):
        given = "--metric" if metrics else "--full"
        raise UsageError(f"{given} is for curves", hint="add --curves")
    if fmt == "parquet" and output in (None, "-"):
        raise UsageError("parquet is binary: write it to a file", hint="-o FILE.parquet")
    filtered = bool(status or framework or tag or where or since)
    with open_store(ctx, create=False) as store:
        ids = [resolve(store, r) for r in runs]
        if filtered or not runs:
            rows = select_runs(store, run_filter(status, framework, tag, where, since, limit))
            ids += [row["id"] for row in rows]
        ids = list(dict.fromkeys(ids))
        if not ids:
            click.echo("no runs match", err=True)
        if curves:
            chosen = list(metrics) or None
            write_curves(iter_curves(store, ids, chosen, full=full), fmt, output)
        else:
            found = [store.run_row(i) for i in ids]
            records = store.records([r for r in found if r is not None], heavy=False)
            write_table(records, fmt, output)
